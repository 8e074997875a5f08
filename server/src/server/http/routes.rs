//! The HTTPS admin API: one table maps each route to an admin request type (and so to its kind
//! and answer type) and to where its arguments come from. The router and the OpenAPI document
//! are both made from this table, and every route goes through the same service layer as the
//! QUIC endpoint (authorize, then execute), so the API has the same roles, checks and error
//! codes.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use tessera_proto::admin::requests::*;
use tessera_proto::admin::AdminRequest;
use tessera_proto::wire::{code, kind, ErrorBody};
use utoipa::openapi::path::Parameter;
use utoipa::openapi::schema::Schema;
use utoipa::openapi::RefOr;
use utoipa::{IntoParams, PartialSchema, ToSchema};
use zeroize::Zeroizing;

use super::problem::Problem;
use super::HttpState;
use crate::server::service;
use crate::server::shared::Shared;

/// The largest request body taken, in bytes.
pub(crate) const MAX_BODY: usize = 64 * 1024;

/// A schema's name.
pub(crate) type SchemaName = fn() -> Cow<'static, str>;

/// Schemas, each with every schema it refers to, for the OpenAPI document's components.
pub(crate) type Schemas = fn(&mut Vec<(String, RefOr<Schema>)>);

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
    /// One path parameter, the request's only argument (`{name}` in the path), and the request
    /// type's schema, whose field of that name states what the value must be.
    PathParam(&'static str, fn() -> RefOr<Schema>),
    /// A JSON body: the request's arguments object; with its schema.
    Body(SchemaName),
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
    /// A JSON object: the request's answer type, by its schema.
    Json(SchemaName),
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
    /// The schemas of the route's body and answer.
    pub(crate) schemas: Schemas,
}

/// A query string as `T`, then as the JSON arguments the service layer takes.
fn query<T>(q: &str) -> Result<Value, ErrorBody>
where
    T: serde::de::DeserializeOwned + serde::Serialize,
{
    let t: T = serde_urlencoded::from_str(q).map_err(|e| {
        crate::server::reply::err(code::MALFORMED, &format!("bad query string: {e}"))
    })?;
    serde_json::to_value(t).map_err(|_| crate::server::reply::err(code::INTERNAL, "internal error"))
}

fn params<T: IntoParams>() -> Vec<Parameter> {
    T::into_params(|| Some(utoipa::openapi::path::ParameterIn::Query))
}

/// `T`'s schema and every schema it refers to.
fn schemas_of<T: ToSchema>(out: &mut Vec<(String, RefOr<Schema>)>) {
    out.push((T::name().into_owned(), T::schema()));
    T::schemas(out);
}

/// The arguments of `$t` from the query string.
macro_rules! query {
    ($t:ty) => {
        Input::Query {
            parse: query::<$t>,
            params: params::<$t>,
        }
    };
}

/// The route of request type `$req`, answering its answer type as JSON; its arguments from a
/// JSON body of type `$body`, or from `$input`.
macro_rules! route {
    ($method:ident $path:literal, $req:ty, $op:literal, $summary:literal, body $body:ty) => {
        route!(@ $method $path, $req, $op, $summary, Input::Body(<$body as ToSchema>::name), |out| {
            schemas_of::<$body>(out);
            schemas_of::<<$req as AdminRequest>::Answer>(out);
        })
    };
    ($method:ident $path:literal, $req:ty, $op:literal, $summary:literal, $input:expr) => {
        route!(@ $method $path, $req, $op, $summary, $input, |out| {
            schemas_of::<<$req as AdminRequest>::Answer>(out)
        })
    };
    (@ $method:ident $path:literal, $req:ty, $op:literal, $summary:literal, $input:expr, $schemas:expr) => {
        Route {
            method: Verb::$method,
            path: $path,
            kind: <$req as AdminRequest>::KIND,
            operation_id: $op,
            summary: $summary,
            input: $input,
            output: Output::Json(<<$req as AdminRequest>::Answer as ToSchema>::name),
            schemas: $schemas,
        }
    };
}

/// The most PTs one `POST /api/v1/pts/batch` makes (the QUIC admin endpoint takes up to
/// 10,000,000 in one request, streamed; over HTTPS a larger run is several requests).
pub(crate) const HTTPS_BATCH_MAX: u64 = 10_000;

/// Every route, in the order the OpenAPI document lists them.
pub(crate) fn routes() -> Vec<Route> {
    vec![
        route!(Get "/api/v1/status", Status, "status", "The server's state (technician)", Input::Nothing),
        route!(Get "/api/v1/pts", PtList, "pt_list", "List PTs", query!(PtList)),
        route!(Post "/api/v1/pts", PtCreate, "pt_create", "Create a PT (its text is in the answer, once)", body PtArgs),
        route!(Get "/api/v1/pts/{id}", PtShow, "pt_show", "One PT", Input::PathParam("id", PtShow::schema)),
        route!(Post "/api/v1/pts/revoke", PtRevoke, "pt_revoke", "Revoke a PT and every registration it produced", body PtRevoke),
        Route {
            output: Output::Tsv,
            schemas: schemas_of::<PtArgs>,
            ..route!(Post "/api/v1/pts/batch", PtBatch, "pt_batch", "Create `count` PTs at once: the answer is the file of `pt_id<TAB>token` lines (all or nothing)", body PtArgs)
        },
        route!(Get "/api/v1/operations", OpList, "operation_list", "List provisioning operations (technician)", query!(OpList)),
        route!(Get "/api/v1/operations/{id}", OpShow, "operation_show", "One operation (technician)", Input::PathParam("id", OpShow::schema)),
        route!(Post "/api/v1/operations/approve", OpApprove, "operation_approve", "Approve an operation, with the code read off the device (technician)", body OpApprove),
        route!(Post "/api/v1/operations/reject", OpReject, "operation_reject", "Reject an operation (technician)", body OpReject),
        route!(Get "/api/v1/devices", DeviceList, "device_list", "List registrations (technician)", query!(DeviceList)),
        route!(Get "/api/v1/devices/{device_id}", DeviceShow, "device_show", "A device id's registrations and whether it is blocked (technician)", Input::PathParam("device_id", DeviceShow::schema)),
        route!(Post "/api/v1/devices/revoke", DeviceRevoke, "device_revoke", "Revoke a registration, or every registration of a device id (in one transaction)", body DeviceRevoke),
        route!(Post "/api/v1/devices/block", DeviceBlock, "device_block", "Block a device id (and revoke its registrations)", body DeviceBlock),
        route!(Post "/api/v1/devices/unblock", DeviceUnblock, "device_unblock", "Unblock a device id", body DeviceUnblock),
        route!(Get "/api/v1/audit", Audit, "audit", "The audit log", query!(Audit)),
        route!(Get "/api/v1/leaks", Leaks, "leaks", "Leak signals", query!(Leaks)),
        route!(Get "/api/v1/keys", KeysList, "keys_list", "Key epochs", Input::Nothing),
        route!(Post "/api/v1/keys/rotate", KeysRotate, "keys_rotate", "Start a new key epoch", body KeysRotate),
        route!(Post "/api/v1/keys/retire", KeysRetire, "keys_retire", "Retire a key epoch", body KeysRetire),
        route!(Get "/api/v1/tokens", TokenList, "token_list", "Admin tokens", Input::Nothing),
        route!(Post "/api/v1/tokens", TokenCreate, "token_create", "Create an admin, technician or service token (its text is in the answer, once)", body TokenCreate),
        route!(Post "/api/v1/tokens/revoke", TokenRevoke, "token_revoke", "Revoke an admin token", body TokenRevoke),
        route!(Post "/api/v1/introspect", Introspect, "introspect", "What a valid RT says about its device (service)", body Introspect),
        route!(Get "/api/v1/revocations", Revocations, "revocations", "Registrations revoked after a cursor, waiting up to `wait_ms` for one (service)", query!(Revocations)),
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
    let started = std::time::Instant::now();
    let source = Peer::of(&req);
    // A bearer token is the API's; without one, the console's session.
    let front = if req
        .headers()
        .contains_key(axum::http::header::AUTHORIZATION)
    {
        service::Front::Https
    } else {
        service::Front::Console
    };
    let kind_code = route.kind;
    let mut caller = None;
    let r = answer(&st, route, path, q, req, &mut caller).await;
    service::record(
        front,
        kind_code,
        source,
        caller.as_ref(),
        r.as_ref().map(|_| ()).map_err(|p| p.code),
        started,
    );
    match r {
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
    who: &mut Option<service::Caller>,
) -> Result<Response, Problem> {
    let source = Peer::of(&req);
    let shared = &st.shared;
    // The order of checks is the QUIC endpoint's: the token and its role, then the arguments.
    let token = token(st, route.method, req.headers(), source)?;
    let caller = service::authorize(shared, token, route.kind, source)
        .await
        .map_err(|e| auth_problem(&e))?;
    let caller = who.insert(caller).clone();
    let args = match route.input {
        Input::Nothing => {
            no_query(q.as_deref())?;
            Value::Null
        }
        Input::Query { parse, .. } => {
            parse(q.as_deref().unwrap_or("")).map_err(|e| Problem::from_error(&e))?
        }
        Input::PathParam(name, _) => {
            no_query(q.as_deref())?;
            let v = path
                .and_then(|Path(m)| m.get(name).cloned())
                .ok_or_else(|| malformed("missing path parameter"))?;
            serde_json::json!({ name: v })
        }
        Input::Body(_) => {
            no_query(q.as_deref())?;
            json_body(st, req).await?
        }
    };
    if route.kind == kind::PT_BATCH {
        return batch(shared, caller, args).await;
    }
    let v = service::execute(shared, &caller, route.kind, args)
        .await
        .map_err(|e| Problem::from_error(&e))?;
    // Some answers carry a new PT or admin token: every answer is wiped once sent.
    Ok(super::answer::wiped_json(v))
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
    Problem::from_error(&crate::server::reply::err(code::MALFORMED, detail))
}

fn no_query(q: Option<&str>) -> Result<(), Problem> {
    match q {
        Some(q) if !q.is_empty() => Err(malformed("this request takes no query string")),
        _ => Ok(()),
    }
}

/// The admin token of a request: its bearer token or, for the console, its session's (a POST
/// must then carry the session's CSRF token and come from this site). 401 without either.
fn token(
    st: &HttpState,
    method: Verb,
    h: &HeaderMap,
    source: std::net::IpAddr,
) -> Result<Zeroizing<String>, Problem> {
    if h.contains_key(header::AUTHORIZATION) {
        // An Authorization header that is not a bearer token is a failed authentication too.
        return bearer(h).map_err(|p| match st.shared.auth_attempt(source) {
            Ok(()) => {
                st.shared.auth_failed(source);
                p
            }
            Err(e) => Problem::from_error(&e),
        });
    }
    let from_session = st.sessions.with(h, |s| {
        let allowed = method == Verb::Get
            || (super::session::same_site(h) && super::session::csrf_matches(h, &s.csrf));
        allowed.then(|| s.token.clone())
    });
    match from_session {
        Some(Some(t)) => Ok(t),
        Some(None) => Err(super::session::csrf_refused()),
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

/// Why a request body was not read.
pub(crate) enum BodyError {
    /// Longer than the route takes (or broken off).
    TooLarge,
    /// Not all there within the body timeout.
    Slow,
}

impl BodyError {
    /// The answer to a body that did not arrive in time.
    pub(crate) fn slow() -> Problem {
        Problem::new(
            StatusCode::REQUEST_TIMEOUT,
            "request-timeout",
            code::TIMEOUT,
            "the request body did not arrive in time",
        )
    }
}

/// A request body of at most `limit` bytes, within the body timeout (`[http] body_timeout_ms`):
/// a client that sends its body a byte at a time does not hold a task for long.
pub(crate) async fn read_body(
    st: &HttpState,
    body: Body,
    limit: usize,
) -> Result<axum::body::Bytes, BodyError> {
    let within = std::time::Duration::from_millis(st.shared.config.http.body_timeout_ms);
    match tokio::time::timeout(within, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(b)) => Ok(b),
        Ok(Err(_)) => Err(BodyError::TooLarge),
        Err(_) => Err(BodyError::Slow),
    }
}

/// The request's JSON body (`application/json`, at most [`MAX_BODY`] bytes, one object or
/// empty).
async fn json_body(st: &HttpState, req: Request) -> Result<Value, Problem> {
    let json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
    let bytes = match read_body(st, req.into_body(), MAX_BODY).await {
        Ok(b) => b,
        Err(BodyError::TooLarge) => {
            return Err(Problem::from_error(&crate::server::reply::err(
                code::TOO_LARGE,
                "the request body is larger than 64 KiB",
            )))
        }
        Err(BodyError::Slow) => return Err(BodyError::slow()),
    };
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

/// `POST /api/v1/pts/batch`: the `pt_id<TAB>token` lines, streamed as the engine makes the PTs
/// (at most [`HTTPS_BATCH_MAX`] a request). The batch is all or nothing: when it fails after the
/// first lines were sent, the body ends with an error (an HTTP/1.1 chunked body without its last
/// chunk, an HTTP/2 stream reset) instead of its end, and nothing was stored; a client discards
/// what it read, as on the QUIC endpoint. Every chunk is wiped once sent.
async fn batch(
    shared: &Arc<Shared>,
    caller: service::Caller,
    args: Value,
) -> Result<Response, Problem> {
    let problem = |e: ErrorBody| Problem::from_error(&e);
    let PtBatch(a) = service::decode(args).map_err(problem)?;
    if a.count.is_some_and(|n| n > HTTPS_BATCH_MAX) {
        return Err(problem(crate::server::reply::engine_err(
            &tessera_engine::InputError::new("count", "at most 10000 a request over HTTPS").into(),
        )));
    }
    let mut job = service::start_batch(shared, &a, caller.actor).map_err(problem)?;
    // The engine checks the batch's arguments before it makes the first PT: wait for the first
    // lines (or the end) before answering, so that a refusal is still a problem document.
    let first = match job.lines.recv().await {
        Some(chunk) => chunk,
        None => {
            job.finish().await.map_err(problem)?;
            return Ok(tsv_file(Body::empty()));
        }
    };
    let first = futures_util::stream::once(async move {
        Ok::<_, std::io::Error>(axum::body::Bytes::from_owner(Zeroizing::new(first)))
    });
    let rest = futures_util::stream::unfold(Some(job), |job| async move {
        let mut job = job?;
        match job.lines.recv().await {
            // The chunk holds PT secrets: the owner wipes it when the body has sent it.
            Some(chunk) => Some((
                Ok(axum::body::Bytes::from_owner(Zeroizing::new(chunk))),
                Some(job),
            )),
            None => match job.finish().await {
                Ok(_) => None,
                Err(e) => Some((
                    Err(std::io::Error::other(format!(
                        "the batch failed and nothing was stored (error {}): {}",
                        e.code, e.message
                    ))),
                    None,
                )),
            },
        }
    });
    Ok(tsv_file(Body::from_stream(futures_util::StreamExt::chain(
        first, rest,
    ))))
}

/// The answer of a batch: a file of tab-separated lines, not to be cached.
fn tsv_file(body: Body) -> Response {
    let mut r = Response::new(body);
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
    r
}

/// `GET /api/v1/events`: Server-Sent Events for live pages. An event `change` (data: a
/// counter) follows every operation that begins or changes state, every revocation and every
/// commit that writes the audit log or a leak signal, coalesced; a page then asks again for
/// what it shows. The first event comes at once. Needs a token that may list operations
/// (technician or admin).
///
/// The stream checks its caller again before every event and every [`EVENTS_RECHECK`]: it ends
/// as soon as the token is revoked (its revocation is itself an event) or the console session
/// it came with has ended. A token holds at most [`EVENTS_PER_TOKEN`] streams at once; another
/// is refused with 429.
pub(crate) async fn events(State(st): State<Arc<HttpState>>, req: Request) -> Response {
    use axum::response::sse::{Event, KeepAlive, Sse};
    let source = Peer::of(&req);
    let headers = req.headers().clone();
    let token = match token(&st, Verb::Get, &headers, source) {
        Ok(t) => t,
        Err(p) => return p.into_response(),
    };
    // With a session cookie and no bearer token, the stream lives as long as the session.
    let session = !headers.contains_key(header::AUTHORIZATION);
    if let Err(e) = service::authorize(&st.shared, token.clone(), kind::OP_LIST, source).await {
        return auth_problem(&e).into_response();
    }
    let Some(slot) = EventSlot::take(&st, &token) else {
        return Problem::from_error(&crate::server::reply::err(
            code::RATE_LIMITED,
            "this token already holds the most live-update streams (16)",
        ))
        .into_response();
    };
    let mut rx = st.shared.changes.subscribe();
    rx.mark_changed();
    let state = (rx, st, token, headers, slot);
    let stream = futures_util::stream::unfold(
        state,
        move |(mut rx, st, token, headers, slot)| async move {
            loop {
                let changed = tokio::select! {
                    r = rx.changed() => { r.ok()?; true }
                    _ = tokio::time::sleep(EVENTS_RECHECK) => false,
                };
                // Still allowed? The session still live, the token still valid.
                if session && st.sessions.with(&headers, |_| ()).is_none() {
                    return None;
                }
                let t = token.clone();
                service::blocking(&st.shared, move |e, now| e.verify_admin_token(&t, now))
                    .await
                    .ok()?;
                if changed {
                    let n = *rx.borrow_and_update();
                    let event = Event::default().event("change").data(n.to_string());
                    return Some((
                        Ok::<_, std::convert::Infallible>(event),
                        (rx, st, token, headers, slot),
                    ));
                }
            }
        },
    );
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// How often an event stream checks its caller when nothing happens.
const EVENTS_RECHECK: std::time::Duration = std::time::Duration::from_secs(5);

/// The most event streams one token holds open at once.
pub(crate) const EVENTS_PER_TOKEN: usize = 16;

/// One open event stream, counted against its token until dropped.
struct EventSlot {
    st: Arc<HttpState>,
    key: [u8; 32],
}

impl EventSlot {
    fn take(st: &Arc<HttpState>, token: &str) -> Option<Self> {
        let d = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
        let mut key = [0u8; 32];
        key.copy_from_slice(d.as_ref());
        let mut m = st.event_streams.lock().unwrap_or_else(|e| e.into_inner());
        let n = m.entry(key).or_insert(0);
        if *n >= EVENTS_PER_TOKEN {
            return None;
        }
        *n += 1;
        Some(Self {
            st: st.clone(),
            key,
        })
    }
}

impl Drop for EventSlot {
    fn drop(&mut self) {
        let mut m = self
            .st
            .event_streams
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(n) = m.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.key);
            }
        }
    }
}
