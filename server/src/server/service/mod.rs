//! The service layer: every admin request, once, for every front end. The QUIC admin endpoint,
//! the HTTPS API and the console all [`authorize`] a caller, decode the request's arguments into
//! its type from `tessera_proto::admin::requests`, and [`execute`] it here; each request type's
//! [`Serve`] implementation calls the engine, where the business rules live, and returns the
//! request's typed answer.
//!
//! Technician tokens may only handle operations and look at devices; service tokens may only
//! introspect RTs and follow revocations.

use std::future::Future;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;
use tessera_engine::{Actor, AdminRole, Error, InputError, Timestamp};
use tessera_proto::admin::requests::*;
use tessera_proto::admin::AdminRequest;
use tessera_proto::wire::{code, kind, ErrorBody};

use super::body::describe;
use super::reply::{engine_err, err};
use super::shared::{limit, Shared};

mod devices;
mod keys;
mod log;
mod operations;
mod pts;
mod revocations;
mod status;
mod tokens;

pub(crate) use pts::start_batch;

/// Someone whose admin token verified and whose role may make the request at hand.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    /// The token's role.
    pub(crate) role: AdminRole,
    /// The token's name.
    pub(crate) name: String,
    /// Who the audit log names: the token's name and the source address.
    pub(crate) actor: Actor,
}

/// What a request is served with: the server's state and who asks.
#[derive(Clone, Copy)]
pub(crate) struct Cx<'a> {
    pub(crate) shared: &'a Arc<Shared>,
    pub(crate) caller: &'a Caller,
}

impl Cx<'_> {
    /// The caller, for the audit log.
    pub(crate) fn actor(&self) -> Actor {
        self.caller.actor.clone()
    }
}

/// An admin request the server can carry out.
pub(crate) trait Serve: AdminRequest + Send {
    /// Carry out the request for an authorized caller.
    fn serve(self, cx: Cx<'_>) -> impl Future<Output = Result<Self::Answer, ErrorBody>> + Send;
}

/// Check an admin token for a request of kind `kind_code` from `source`, in the documented
/// order: the source has not failed too often ([`Shared::auth_attempt`]); the token verifies
/// and is not revoked (a failure counts against the source); its rate limit; its role may make
/// the request.
/// Every front end calls this, then [`execute`].
pub(crate) async fn authorize(
    shared: &Arc<Shared>,
    token: zeroize::Zeroizing<String>,
    kind_code: u8,
    source: std::net::IpAddr,
) -> Result<Caller, ErrorBody> {
    shared.auth_attempt(source)?;
    let who = blocking(shared, move |e, t| e.verify_admin_token(&token, t))
        .await
        .inspect_err(|e| {
            // A token that is not one, or unknown, or revoked counts against the source; a
            // store that could not be read does not.
            if matches!(
                e.code,
                code::UNAUTHENTICATED | code::REVOKED | code::TOKEN_FORMAT
            ) {
                shared.auth_failed(source);
            }
        })?;
    match who.role {
        // A service (a broker's validator) checks RTs at the rate of CONNECTs: it is held to
        // the per-source INTROSPECT limit, keyed by its token, not to the operators' one.
        AdminRole::Service => {
            limit(shared, &shared.limits.introspect, &who.id.to_string())?;
            if !kind::SERVICE.contains(&kind_code) {
                return Err(err(
                    code::FORBIDDEN,
                    "a service token may only introspect and follow revocations",
                ));
            }
        }
        AdminRole::Technician => {
            limit(shared, &shared.limits.admin, &who.id)?;
            if !kind::TECHNICIAN.contains(&kind_code) {
                return Err(err(code::FORBIDDEN, "this request needs an admin token"));
            }
        }
        AdminRole::Admin => limit(shared, &shared.limits.admin, &who.id)?,
    }
    Ok(Caller {
        role: who.role,
        name: who.name.clone(),
        actor: Actor::operator(&who.name).from_source(source.to_string()),
    })
}

/// Which front end an admin request came through: a log field and a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Front {
    /// The QUIC admin endpoint (the CLI, the admin client, a broker's validator).
    Quic,
    /// The HTTPS API with a bearer token.
    Https,
    /// The console (the HTTPS API with a session).
    Console,
}

impl Front {
    fn label(self) -> &'static str {
        match self {
            Front::Quic => "quic",
            Front::Https => "https",
            Front::Console => "console",
        }
    }
}

/// One line per admin request on every front end, and its metrics: at `info` the token's name,
/// the source address, the kind, the result and the latency (a refused token at `warn`, a
/// service token's introspections and revocation polls at `debug`: a broker makes one per
/// CONNECT); `tessera_admin_requests_total{front,kind,result}` and
/// `tessera_admin_request_seconds{front,kind}`. Never an argument: they may hold secrets.
pub(crate) fn record(
    front: Front,
    kind_code: u8,
    source: std::net::IpAddr,
    caller: Option<&Caller>,
    result: Result<(), u16>,
    started: std::time::Instant,
) {
    let took = started.elapsed();
    let kind = kind::name(kind_code);
    let result_name = match result {
        Ok(()) => "OK",
        Err(c) => code::name(c),
    };
    metrics::counter!("tessera_admin_requests_total", "front" => front.label(), "kind" => kind,
                      "result" => result_name)
    .increment(1);
    metrics::histogram!("tessera_admin_request_seconds", "front" => front.label(), "kind" => kind,
                        "result" => result_name)
    .record(took.as_secs_f64());
    let ms = (took.as_secs_f64() * 1e4).round() / 10.0;
    let token = caller.map_or("-", |c| c.name.as_str());
    match result {
        Err(code::UNAUTHENTICATED | code::REVOKED | code::TOKEN_FORMAT) => tracing::warn!(
            front = front.label(), %source, kind, result = result_name, ms,
            "admin request refused: the token was not accepted"
        ),
        _ if caller.is_some_and(|c| c.role == AdminRole::Service) => tracing::debug!(
            front = front.label(), token, %source, kind, result = result_name, ms, "admin request"
        ),
        _ => tracing::info!(
            front = front.label(), token, %source, kind, result = result_name, ms, "admin request"
        ),
    }
}

/// The request's arguments as `R`: absent or `null` is `{}`; anything but a JSON object, and any
/// field `R` does not name, is refused (error 1).
pub(crate) fn decode<R: for<'de> Deserialize<'de>>(v: Value) -> Result<R, ErrorBody> {
    let v = if v.is_null() {
        Value::Object(Default::default())
    } else {
        v
    };
    if !v.is_object() {
        return Err(err(
            code::MALFORMED,
            "bad arguments: args must be a JSON object",
        ));
    }
    serde_json::from_value(v)
        .map_err(|e| err(code::MALFORMED, &format!("bad arguments: {}", describe(&e))))
}

/// Decode, serve and encode one request of type `R`.
async fn run<R: Serve>(cx: Cx<'_>, raw: Value) -> Result<Value, ErrorBody> {
    let answer = decode::<R>(raw)?.serve(cx).await?;
    serde_json::to_value(&answer).map_err(|_| err(code::INTERNAL, "internal error"))
}

/// Every request but `PT_BATCH` (which streams), by kind.
macro_rules! dispatch {
    ($kind:expr, $cx:expr, $raw:expr; $($req:ty),* $(,)?) => {
        match $kind {
            $(<$req as AdminRequest>::KIND => run::<$req>($cx, $raw).await,)*
            _ => Err(err(code::UNKNOWN_REQUEST, "unknown request on the admin endpoint")),
        }
    };
}

/// Carry out an admin request that `caller` may make (see [`authorize`]) with its JSON
/// arguments, and answer its JSON response. Every request but `PT_BATCH`, which streams.
pub(crate) async fn execute(
    shared: &Arc<Shared>,
    caller: &Caller,
    kind_code: u8,
    raw: Value,
) -> Result<Value, ErrorBody> {
    let cx = Cx { shared, caller };
    dispatch!(kind_code, cx, raw;
        Status, PtCreate, PtList, PtShow, PtRevoke,
        OpList, OpShow, OpApprove, OpReject,
        DeviceList, DeviceShow, DeviceRevoke, DeviceBlock, DeviceUnblock,
        Audit, Leaks, Revocations, Introspect,
        KeysRotate, KeysList, KeysRetire,
        TokenCreate, TokenList, TokenRevoke,
    )
}

/// Run `f` on the engine off the async threads, at the server's time.
pub(crate) use super::shared::blocking;

/// An argument the engine's rules refuse (error 5).
fn input(field: &'static str, reason: &'static str) -> ErrorBody {
    engine_err(&Error::InvalidInput(InputError::new(field, reason)))
}

fn bad<E: Into<Error>>(e: E) -> ErrorBody {
    engine_err(&e.into())
}

/// A page's size: 1 to 1,000, 0 meaning 100.
fn page_limit(limit: usize) -> Result<usize, ErrorBody> {
    match limit {
        0 => Ok(100),
        1..=1000 => Ok(limit),
        _ => Err(input("limit", "must be at most 1000")),
    }
}

/// A list cursor `<created_at ms>.<id>`, as `next` gave it: the time and the id.
fn cursor<I: std::str::FromStr>(s: &str) -> Result<(Timestamp, I), ErrorBody>
where
    Error: From<I::Err>,
{
    let bad_cursor = || input("before", "not a cursor from a previous page");
    let (at, id) = s.split_once('.').ok_or_else(bad_cursor)?;
    let at: u64 = at.parse().map_err(|_| bad_cursor())?;
    Ok((Timestamp::from_unix_millis(at), id.parse().map_err(bad)?))
}

/// The `next` of a page that ended at `(at, id)`.
fn next_cursor(at: Timestamp, id: impl std::fmt::Display) -> String {
    format!("{}.{id}", at.unix_millis())
}

/// A parsed id argument.
fn id<I: std::str::FromStr>(s: &str) -> Result<I, ErrorBody>
where
    Error: From<I::Err>,
{
    s.parse().map_err(bad)
}

/// The `device_id` argument of a request that needs one.
fn required_device_id(d: Option<&str>) -> Result<tessera_engine::DeviceId, ErrorBody> {
    id(d.ok_or_else(|| input("device_id", "required"))?)
}

fn reason(r: Option<String>) -> String {
    r.unwrap_or_else(|| "no reason given".into())
}
