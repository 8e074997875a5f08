//! The HTTPS admin API: one table maps each route to an admin request kind and to where its
//! arguments come from. The router and the OpenAPI document are both made from this table, and
//! every route goes through the same admin layer as the QUIC endpoint (authorize, then execute),
//! so the API has the same roles, checks and error codes.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use tessera_proto::wire::{code, kind, ErrorBody};
use utoipa::openapi::path::Parameter;
use utoipa::IntoParams;
use zeroize::Zeroizing;

use super::problem::Problem;
use super::HttpState;
use crate::server::admin::{self, args::*};
use crate::server::Shared;

/// The largest request body taken, in bytes.
pub(crate) const MAX_BODY: usize = 64 * 1024;

/// Where a route's arguments come from.
#[derive(Clone, Copy)]
pub(crate) enum Input {
    /// None (a request without arguments).
    Nothing,
    /// The query string, parsed into the request's arguments; with their OpenAPI parameters.
    Query {
        parse: fn(&str) -> Result<Value, ErrorBody>,
        params: fn() -> Vec<Parameter>,
    },
    /// One path parameter, the request's only argument (`{name}` in the path).
    PathParam(&'static str),
    /// A JSON body: the request's arguments object; with the name of its schema.
    Body(&'static str),
}

/// The HTTP methods the API uses.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Verb {
    Get,
    Post,
}

/// What a route answers with.
#[derive(Clone, Copy)]
pub(crate) enum Output {
    /// A JSON object, with the name of its schema.
    Json(&'static str),
    /// A file of tab-separated lines.
    Tsv,
}

/// One route of the API.
#[derive(Clone, Copy)]
pub(crate) struct Route {
    pub(crate) method: Verb,
    pub(crate) path: &'static str,
    pub(crate) kind: u8,
    pub(crate) operation_id: &'static str,
    pub(crate) summary: &'static str,
    pub(crate) input: Input,
    pub(crate) output: Output,
}

/// A query string as `T`, then as the JSON arguments the admin layer takes.
fn query<T>(q: &str) -> Result<Value, ErrorBody>
where
    T: serde::de::DeserializeOwned + serde::Serialize,
{
    let t: T = serde_urlencoded::from_str(q)
        .map_err(|e| crate::server::err(code::MALFORMED, &format!("bad query string: {e}")))?;
    serde_json::to_value(t).map_err(|_| crate::server::err(code::INTERNAL, "internal error"))
}

fn params<T: IntoParams>() -> Vec<Parameter> {
    T::into_params(|| Some(utoipa::openapi::path::ParameterIn::Query))
}

macro_rules! q {
    ($t:ty) => {
        Input::Query {
            parse: query::<$t>,
            params: params::<$t>,
        }
    };
}

/// Every route, in the order the OpenAPI document lists them.
pub(crate) fn routes() -> Vec<Route> {
    use Verb as M;
    let r = |method: Verb,
             path: &'static str,
             kind: u8,
             operation_id: &'static str,
             summary: &'static str,
             input: Input,
             output: Output| Route {
        method,
        path,
        kind,
        operation_id,
        summary,
        input,
        output,
    };
    vec![
        r(M::Get, "/api/v1/status", kind::STATUS, "status", "The server's state (technician)", Input::Nothing, Output::Json("StatusAnswer")),
        r(M::Get, "/api/v1/pts", kind::PT_LIST, "pt_list", "List PTs", q!(PtListArgs), Output::Json("PtPage")),
        r(M::Post, "/api/v1/pts", kind::PT_CREATE, "pt_create", "Create a PT (its text is in the answer, once)", Input::Body("PtArgs"), Output::Json("PtCreated")),
        r(M::Get, "/api/v1/pts/{id}", kind::PT_SHOW, "pt_show", "One PT", Input::PathParam("id"), Output::Json("PtShown")),
        r(M::Post, "/api/v1/pts/revoke", kind::PT_REVOKE, "pt_revoke", "Revoke a PT and every registration it produced", Input::Body("IdReasonArgs"), Output::Json("Revoked")),
        r(M::Post, "/api/v1/pts/batch", kind::PT_BATCH, "pt_batch", "Create `count` PTs at once: the answer is the file of `pt_id<TAB>token` lines (all or nothing)", Input::Body("PtArgs"), Output::Tsv),
        r(M::Get, "/api/v1/operations", kind::OP_LIST, "operation_list", "List provisioning operations (technician)", q!(OpListArgs), Output::Json("OperationPage")),
        r(M::Get, "/api/v1/operations/{id}", kind::OP_SHOW, "operation_show", "One operation (technician)", Input::PathParam("id"), Output::Json("OperationShown")),
        r(M::Post, "/api/v1/operations/approve", kind::OP_APPROVE, "operation_approve", "Approve an operation, with the code read off the device (technician)", Input::Body("ApproveArgs"), Output::Json("Approved")),
        r(M::Post, "/api/v1/operations/reject", kind::OP_REJECT, "operation_reject", "Reject an operation (technician)", Input::Body("IdReasonArgs"), Output::Json("Done")),
        r(M::Get, "/api/v1/devices", kind::DEVICE_LIST, "device_list", "List registrations (technician)", q!(DeviceListArgs), Output::Json("RegistrationPage")),
        r(M::Get, "/api/v1/devices/{device_id}", kind::DEVICE_SHOW, "device_show", "A device id's registrations and whether it is blocked (technician)", Input::PathParam("device_id"), Output::Json("DeviceShown")),
        r(M::Post, "/api/v1/devices/revoke", kind::DEVICE_REVOKE, "device_revoke", "Revoke a registration, or every registration of a device id", Input::Body("DeviceRevokeArgs"), Output::Json("Revoked")),
        r(M::Post, "/api/v1/devices/block", kind::DEVICE_BLOCK, "device_block", "Block a device id (and revoke its registrations)", Input::Body("DeviceBlockArgs"), Output::Json("Revoked")),
        r(M::Post, "/api/v1/devices/unblock", kind::DEVICE_UNBLOCK, "device_unblock", "Unblock a device id", Input::Body("DeviceIdArgs"), Output::Json("Unblocked")),
        r(M::Get, "/api/v1/audit", kind::AUDIT, "audit", "The audit log", q!(AuditArgs), Output::Json("AuditPage")),
        r(M::Get, "/api/v1/leaks", kind::LEAKS, "leaks", "Leak signals", q!(LeaksArgs), Output::Json("LeakPage")),
        r(M::Get, "/api/v1/keys", kind::KEYS_LIST, "keys_list", "Key epochs", Input::Nothing, Output::Json("Epochs")),
        r(M::Post, "/api/v1/keys/rotate", kind::KEYS_ROTATE, "keys_rotate", "Start a new key epoch", Input::Body("NoArgs"), Output::Json("Rotated")),
        r(M::Post, "/api/v1/keys/retire", kind::KEYS_RETIRE, "keys_retire", "Retire a key epoch", Input::Body("EpochArgs"), Output::Json("Done")),
        r(M::Get, "/api/v1/tokens", kind::TOKEN_LIST, "token_list", "Admin tokens", Input::Nothing, Output::Json("TokenList")),
        r(M::Post, "/api/v1/tokens", kind::TOKEN_CREATE, "token_create", "Create an admin, technician or service token (its text is in the answer, once)", Input::Body("TokenArgs"), Output::Json("TokenCreated")),
        r(M::Post, "/api/v1/tokens/revoke", kind::TOKEN_REVOKE, "token_revoke", "Revoke an admin token", Input::Body("IdArgs"), Output::Json("TokenRevoked")),
        r(M::Post, "/api/v1/introspect", kind::INTROSPECT, "introspect", "What a valid RT says about its device (service)", Input::Body("RtArgs"), Output::Json("IntrospectResp")),
        r(M::Get, "/api/v1/revocations", kind::REVOCATIONS, "revocations", "Registrations revoked after a cursor, waiting up to `wait_ms` for one (service)", q!(RevocationsArgs), Output::Json("RevocationPage")),
    ]
}

/// The peer's address, put on each request by the connection that carried it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Peer(pub(crate) SocketAddr);

impl Peer {
    /// The source address of a request (loopback for one that came without a connection, as
    /// in-process calls do).
    pub(crate) fn of(req: &Request) -> std::net::IpAddr {
        req.extensions()
            .get::<Peer>()
            .map_or(std::net::IpAddr::from([127, 0, 0, 1]), |p| p.0.ip())
    }
}

/// Answer one API request: authenticate, take its arguments from where the route says, then
/// the admin layer.
pub(crate) async fn call(
    State(st): State<Arc<HttpState>>,
    route: Route,
    path: Option<Path<std::collections::HashMap<String, String>>>,
    RawQuery(q): RawQuery,
    req: Request,
) -> Response {
    match answer(&st, route, path, q, req).await {
        Ok(r) => r,
        Err(p) => p.into_response(),
    }
}

async fn answer(
    st: &HttpState,
    route: Route,
    path: Option<Path<std::collections::HashMap<String, String>>>,
    q: Option<String>,
    req: Request,
) -> Result<Response, Problem> {
    let source = Peer::of(&req);
    let shared = &st.shared;
    // The order of checks is the QUIC endpoint's: the token and its role, then the arguments.
    let token = token(st, route.method, req.headers())?;
    let caller = admin::authorize(shared, token, route.kind, source)
        .await
        .map_err(|e| auth_problem(&e))?;
    let args = match route.input {
        Input::Nothing => {
            no_query(q.as_deref())?;
            Value::Null
        }
        Input::Query { parse, .. } => {
            parse(q.as_deref().unwrap_or("")).map_err(|e| Problem::from_error(&e))?
        }
        Input::PathParam(name) => {
            no_query(q.as_deref())?;
            let v = path
                .and_then(|Path(m)| m.get(name).cloned())
                .ok_or_else(|| malformed("missing path parameter"))?;
            serde_json::json!({ name: v })
        }
        Input::Body(_) => {
            no_query(q.as_deref())?;
            json_body(req).await?
        }
    };
    if route.kind == kind::PT_BATCH {
        return batch(shared, caller, args).await;
    }
    let v = admin::execute(shared, &caller, route.kind, args)
        .await
        .map_err(|e| Problem::from_error(&e))?;
    Ok(axum::Json(v).into_response())
}

/// A token the admin layer did not accept is 401, whatever the wire code; other refusals (the
/// role, the rate limit) keep theirs.
fn auth_problem(e: &ErrorBody) -> Problem {
    match e.code {
        code::UNAUTHENTICATED | code::REVOKED | code::TOKEN_FORMAT => {
            Problem::unauthorized("the admin token was not accepted", e.code)
        }
        _ => Problem::from_error(e),
    }
}

fn malformed(detail: &str) -> Problem {
    Problem::from_error(&crate::server::err(code::MALFORMED, detail))
}

fn no_query(q: Option<&str>) -> Result<(), Problem> {
    match q {
        Some(q) if !q.is_empty() => Err(malformed("this request takes no query string")),
        _ => Ok(()),
    }
}

/// The admin token of a request: its bearer token or, for the console, its session's (a POST
/// must then carry the session's CSRF token and come from this site). 401 without either.
fn token(st: &HttpState, method: Verb, h: &HeaderMap) -> Result<Zeroizing<String>, Problem> {
    if h.contains_key(header::AUTHORIZATION) {
        return bearer(h);
    }
    let from_session = st.sessions.with(h, |s| {
        let allowed = method == Verb::Get
            || (super::session::same_site(h) && super::console::csrf_matches(h, &s.csrf));
        allowed.then(|| s.token.clone())
    });
    match from_session {
        Some(Some(t)) => Ok(t),
        Some(None) => Err(super::console::csrf_refused()),
        None => bearer(h),
    }
}

/// The bearer token, or 401.
fn bearer(h: &HeaderMap) -> Result<Zeroizing<String>, Problem> {
    let v = h
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            Problem::unauthorized(
                "an admin token is needed: Authorization: Bearer tsat_…",
                code::UNAUTHENTICATED,
            )
        })?;
    let (scheme, token) = v.split_once(' ').unwrap_or((v, ""));
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(Problem::unauthorized(
            "the Authorization header must be: Bearer tsat_…",
            code::UNAUTHENTICATED,
        ));
    }
    Ok(Zeroizing::new(token.trim().to_owned()))
}

/// The request's JSON body (`application/json`, at most [`MAX_BODY`] bytes, one object or
/// empty).
async fn json_body(req: Request) -> Result<Value, Problem> {
    let json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
    let bytes = axum::body::to_bytes(req.into_body(), MAX_BODY)
        .await
        .map_err(|_| {
            Problem::from_error(&crate::server::err(
                code::TOO_LARGE,
                "the request body is larger than 64 KiB",
            ))
        })?;
    if bytes.is_empty() {
        return Ok(Value::Null);
    }
    if !json {
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            code::MALFORMED,
            "the request body must be application/json",
        ));
    }
    let v: Value = serde_json::from_slice(&bytes).map_err(|e| {
        malformed(&format!(
            "the body is not JSON: {}",
            e.to_string().split(" at line").next().unwrap_or("")
        ))
    })?;
    if !v.is_object() {
        return Err(malformed("the body must be a JSON object"));
    }
    Ok(v)
}

/// PT_BATCH: the whole batch is made first (all or nothing), then sent as a file.
async fn batch(
    shared: &Arc<Shared>,
    caller: admin::Caller,
    args: Value,
) -> Result<Response, Problem> {
    let (lines, record) = admin::batch_to_memory(shared, caller, args)
        .await
        .map_err(|e| Problem::from_error(&e))?;
    let mut r = Response::new(Body::from(lines));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/tab-separated-values; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_DISPOSITION,
        header::HeaderValue::from_static("attachment; filename=\"pt-batch.tsv\""),
    );
    h.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    if let Ok(v) = header::HeaderValue::from_str(&record.to_string()) {
        h.insert("x-tessera-batch", v);
    }
    Ok(r)
}

/// `GET /api/v1/events`: Server-Sent Events for live pages. An event `change` (data: a
/// counter) follows every operation that begins or changes state, every revocation and every
/// commit that writes the audit log or a leak signal, coalesced; a page then asks again for
/// what it shows. The first event comes at once. Needs a token that
/// may list operations (technician or admin).
pub(crate) async fn events(State(st): State<Arc<HttpState>>, req: Request) -> Response {
    use axum::response::sse::{Event, KeepAlive, Sse};
    let source = Peer::of(&req);
    let token = match token(&st, Verb::Get, req.headers()) {
        Ok(t) => t,
        Err(p) => return p.into_response(),
    };
    if let Err(e) = admin::authorize(&st.shared, token, kind::OP_LIST, source).await {
        return auth_problem(&e).into_response();
    }
    let mut rx = st.shared.changes.subscribe();
    rx.mark_changed();
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.changed().await.ok()?;
        let n = *rx.borrow_and_update();
        Some((
            Ok::<_, std::convert::Infallible>(Event::default().event("change").data(n.to_string())),
            rx,
        ))
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}
