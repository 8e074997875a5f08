//! Admin requests. Every request carries an admin token; technician tokens may only handle
//! operations and look at devices.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};
use tessera_engine::model::AttributeRule;
use tessera_engine::store::{OperationQuery, RegistrationQuery};
use tessera_engine::{
    Actor, AdminRole, AdminTokenId, Approval, ApprovalPolicy, DeviceId, DeviceIdPolicy, Error,
    OperationId, OperationState, PtId, PtKind, PtSpec, RegistrationId, Timestamp,
};

pub(crate) mod answers;
pub(crate) mod args;

use args::*;

use super::device::{blocking, parse};
use super::{engine_err, err, Handled, Shared};
use tessera_proto::wire::messages::{AdminReq, PtArgs};
use tessera_proto::wire::{self, code, kind, ErrorBody, Frame};

/// The request's arguments as `T`: absent or `null` is `{}`; anything but a JSON object, and any
/// field `T` does not name, is refused (error 1).
fn args<T: for<'de> Deserialize<'de>>(v: Value) -> Result<T, ErrorBody> {
    let v = if v.is_null() { json!({}) } else { v };
    if !v.is_object() {
        return Err(err(
            code::MALFORMED,
            "bad arguments: args must be a JSON object",
        ));
    }
    serde_json::from_value(v).map_err(|e| {
        err(
            code::MALFORMED,
            &format!(
                "bad arguments: {}",
                e.to_string().split(" at line").next().unwrap_or("")
            ),
        )
    })
}

fn input(field: &'static str, reason: &'static str) -> ErrorBody {
    engine_err(&Error::InvalidInput(tessera_engine::InputError::new(
        field, reason,
    )))
}

fn bad<E: Into<Error>>(e: E) -> ErrorBody {
    engine_err(&e.into())
}

/// The answer of a request that revoked `n` registrations.
fn revoked(n: usize) -> Value {
    answers::json(&answers::Revoked {
        registrations_revoked: n as u64,
    })
}

/// The longest a REVOCATIONS request waits.
const REVOCATIONS_MAX_WAIT: Duration = Duration::from_secs(30);

/// REVOCATIONS: the registrations revoked after the cursor (from the newest change when none
/// is given), waiting up to `wait_ms` for one when there are none yet.
async fn revocations(shared: &Arc<Shared>, a: RevocationsArgs) -> Result<Value, ErrorBody> {
    let limit = a.limit.unwrap_or(1000);
    if limit == 0 || limit > tessera_proto::wire::messages::REVOCATIONS_MAX {
        return Err(input("limit", "must be 1 to 4096"));
    }
    let wait = Duration::from_millis(a.wait_ms);
    if wait > REVOCATIONS_MAX_WAIT {
        return Err(input("wait_ms", "must be at most 30000"));
    }
    // Registered before the read, so a revocation committed between the read and the wait
    // still wakes it.
    let woken = shared.revocations.notified();
    tokio::pin!(woken);
    woken.as_mut().enable();
    let after = match a.after {
        Some(c) => c,
        None => blocking(shared, |e, _| e.revocation_cursor()).await?,
    };
    let read = move || blocking(shared, move |e, _| e.revocations_after(after, limit));
    let (mut ids, mut cursor) = read().await?;
    // A server shutting down answers at once (and wakes the polls already waiting), so that
    // no request outlives it.
    if ids.is_empty() && !wait.is_zero() && !shared.shutting_down.load(Ordering::SeqCst) {
        shared.revocation_polls.fetch_add(1, Ordering::Relaxed);
        let woke = tokio::time::timeout(wait, woken).await.is_ok();
        shared.revocation_polls.fetch_sub(1, Ordering::Relaxed);
        if woke {
            (ids, cursor) = read().await?;
        }
    }
    let ids: Vec<u64> = ids.into_iter().map(|r| r.get()).collect();
    Ok(answers::json(&answers::RevocationPage {
        revocations: ids,
        cursor,
    }))
}

/// A [`PtSpec`] from PT_CREATE arguments (docs/protocol.md), checked exactly as the admin
/// endpoint checks them. Embedders (the Python bindings) use it so that a PT made through a
/// local engine takes the same arguments as one made over the wire.
pub fn pt_spec_from_args(v: Value) -> Result<PtSpec, ErrorBody> {
    pt_spec(&args::<PtArgs>(v)?)
}

pub(crate) fn pt_spec(a: &PtArgs) -> Result<PtSpec, ErrorBody> {
    let kind = match a.kind.as_deref().unwrap_or("single") {
        "single" => PtKind::SingleDevice,
        "fleet" => PtKind::Fleet {
            max_registrations: a
                .max_registrations
                .ok_or_else(|| input("max_registrations", "required for fleet PTs"))?,
        },
        _ => return Err(input("kind", "expected single or fleet")),
    };
    let approval = match a.approval.as_deref().unwrap_or("manual") {
        "manual" => ApprovalPolicy::Manual,
        "manual_with_code" | "code" => ApprovalPolicy::ManualWithCode,
        "automatic" => ApprovalPolicy::Automatic,
        "rule" => ApprovalPolicy::AttributeRule(
            a.rule
                .as_deref()
                .ok_or_else(|| input("rule", "required for the rule policy"))?
                .parse::<AttributeRule>()
                .map_err(bad)?,
        ),
        _ => {
            return Err(input(
                "approval",
                "expected manual, manual_with_code, automatic or rule",
            ))
        }
    };
    let device_id_policy = match a.device_id_policy.as_deref().unwrap_or("either") {
        "device" => DeviceIdPolicy::Device,
        "technician" => DeviceIdPolicy::Technician,
        "either" => DeviceIdPolicy::Either,
        _ => {
            return Err(input(
                "device_id_policy",
                "expected device, technician or either",
            ))
        }
    };
    Ok(PtSpec {
        label: a.label.clone(),
        kind,
        approval,
        rt_lifetime: Duration::from_secs(a.rt_lifetime_secs.unwrap_or(30 * 86_400)),
        device_id_policy,
        expires_at: a.expires_at_ms.map(Timestamp::from_unix_millis),
    })
}

fn pt_id(s: &str) -> Result<PtId, ErrorBody> {
    s.parse().map_err(bad)
}

fn op_id(s: &str) -> Result<OperationId, ErrorBody> {
    s.parse().map_err(bad)
}

fn device_id(s: &str) -> Result<DeviceId, ErrorBody> {
    DeviceId::new(s).map_err(bad)
}

/// A page's size: 1 to 1,000, 0 meaning 100.
fn page_limit(limit: usize) -> Result<usize, ErrorBody> {
    match limit {
        0 => Ok(100),
        1..=1000 => Ok(limit),
        _ => Err(input("limit", "must be at most 1000")),
    }
}

/// A list cursor `<created_at ms>.<id>`, as `next` gave it: the time and the id's text.
fn cursor(s: &str) -> Result<(Timestamp, &str), ErrorBody> {
    let bad = || input("before", "not a cursor from a previous page");
    let (at, id) = s.split_once('.').ok_or_else(bad)?;
    let at: u64 = at.parse().map_err(|_| bad())?;
    Ok((Timestamp::from_unix_millis(at), id))
}

/// An OP_LIST cursor.
fn op_cursor(s: &str) -> Result<(Timestamp, OperationId), ErrorBody> {
    let (at, id) = cursor(s)?;
    Ok((at, op_id(id)?))
}

/// A PT_LIST cursor.
fn pt_cursor(s: &str) -> Result<(Timestamp, PtId), ErrorBody> {
    let (at, id) = cursor(s)?;
    Ok((at, pt_id(id)?))
}

/// The `device_id` argument of a request that needs one.
fn required_device_id(d: Option<&str>) -> Result<DeviceId, ErrorBody> {
    device_id(d.ok_or_else(|| input("device_id", "required"))?)
}

fn reason(r: Option<String>) -> String {
    r.unwrap_or_else(|| "no reason given".into())
}

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

/// Check an admin token for a request of kind `kind_code` from `source`, in the documented
/// order: the token verifies and is not revoked; its rate limit; its role may make the request.
/// Both front ends (QUIC and HTTPS) call this, then [`execute`].
pub(crate) async fn authorize(
    shared: &Arc<Shared>,
    token: zeroize::Zeroizing<String>,
    kind_code: u8,
    source: std::net::IpAddr,
) -> Result<Caller, ErrorBody> {
    let who = blocking(shared, move |e, t| e.verify_admin_token(&token, t)).await?;
    match who.role {
        // A service (a broker's validator) checks RTs at the rate of CONNECTs: it is held to
        // the per-source INTROSPECT limit, keyed by its token, not to the operators' one.
        AdminRole::Service => {
            super::limit(shared, &shared.limits.introspect, &who.id.to_string())?;
            if !kind::SERVICE.contains(&kind_code) {
                return Err(err(
                    code::FORBIDDEN,
                    "a service token may only introspect and follow revocations",
                ));
            }
        }
        AdminRole::Technician => {
            super::limit(shared, &shared.limits.admin, &who.id)?;
            if !kind::TECHNICIAN.contains(&kind_code) {
                return Err(err(code::FORBIDDEN, "this request needs an admin token"));
            }
        }
        AdminRole::Admin => super::limit(shared, &shared.limits.admin, &who.id)?,
    }
    Ok(Caller {
        role: who.role,
        name: who.name.clone(),
        actor: Actor::operator(&who.name).from_source(source.to_string()),
    })
}

/// The QUIC admin endpoint's request: authorize, then execute (PT_BATCH streams its lines as
/// CHUNK frames).
pub(crate) async fn handle(
    shared: &Arc<Shared>,
    frame: Frame<'_>,
    source: std::net::IpAddr,
    send: &mut quinn::SendStream,
) -> Result<Handled, ErrorBody> {
    let mut req: AdminReq = parse(frame.body)?;
    let caller = authorize(
        shared,
        zeroize::Zeroizing::new(std::mem::take(&mut req.token)),
        frame.kind,
        source,
    )
    .await?;
    let a = std::mem::take(&mut req.args);
    if frame.kind == kind::PT_BATCH {
        return batch(shared, args::<PtArgs>(a)?, caller.actor, send).await;
    }
    let v = execute(shared, &caller, frame.kind, a).await?;
    Ok(Handled::ok(&v))
}

/// Carry out an admin request that `caller` may make (see [`authorize`]) with its JSON
/// arguments, and answer its JSON response. Every request but PT_BATCH, which streams.
pub(crate) async fn execute(
    shared: &Arc<Shared>,
    caller: &Caller,
    kind_code: u8,
    raw: Value,
) -> Result<Value, ErrorBody> {
    let actor = caller.actor.clone();
    let v: Value = match kind_code {
        kind::STATUS => {
            args::<NoArgs>(raw)?;
            let st = blocking(shared, |e, _| e.status()).await?;
            answers::json(&answers::StatusAnswer {
                engine: st,
                open_connections: shared.open_connections.load(Ordering::Relaxed) as u64,
                long_polls: shared.waiters.len() as u64,
                revocation_polls: shared.revocation_polls.load(Ordering::Relaxed) as u64,
                retries_sent: shared.retries_sent.load(Ordering::Relaxed) as u64,
                tls_resumed: shared.device_tickets.resumed.load(Ordering::Relaxed),
                server_time_ms: shared.now().unix_millis(),
            })
        }
        kind::PT_CREATE => {
            let spec = pt_spec(&args::<PtArgs>(raw)?)?;
            let (rec, tok) = blocking(shared, move |e, t| e.create_pt(&spec, &actor, t)).await?;
            answers::json(&answers::PtCreated {
                pt: rec,
                token: tok.expose(),
            })
        }
        kind::PT_LIST => {
            let a: PtListArgs = args(raw)?;
            let limit = page_limit(a.limit)?;
            let before = a.before.as_deref().map(pt_cursor).transpose()?;
            let pts = blocking(shared, move |e, _| {
                e.list_pts_before(limit, a.include_revoked, before)
            })
            .await?;
            let next = (pts.len() == limit)
                .then(|| {
                    pts.last()
                        .map(|p| format!("{}.{}", p.created_at.unix_millis(), p.id))
                })
                .flatten();
            answers::json(&answers::PtPage { pts, next })
        }
        kind::PT_SHOW => {
            let id = pt_id(&args::<IdArgs>(raw)?.id)?;
            answers::json(&answers::PtShown {
                pt: blocking(shared, move |e, _| e.pt(&id)).await?,
            })
        }
        kind::PT_REVOKE => {
            let a: IdReasonArgs = args(raw)?;
            let id = pt_id(&a.id)?;
            let r = reason(a.reason);
            let n = blocking(shared, move |e, t| e.revoke_pt(&id, &r, &actor, t)).await?;
            revoked(n)
        }
        kind::OP_LIST => {
            let a: OpListArgs = args(raw)?;
            let wanted = a
                .state
                .as_deref()
                .map(|s| OperationState::parse(s).ok_or_else(|| input("state", "unknown state")))
                .transpose()?;
            let limit = page_limit(a.limit)?;
            let q = OperationQuery {
                state: wanted,
                pt_id: a.pt_id.as_deref().map(pt_id).transpose()?,
                limit,
                before: a.before.as_deref().map(op_cursor).transpose()?,
            };
            // An operation past its expiry is shown expired before the sweep has stored that:
            // asking for expired ones also looks at those stored as pending. Pages follow the
            // stored order; one may hold fewer than `limit` (an operation that turned out to
            // be expired is left out of a page of pending ones) and `next` still leads on.
            let (ops, next) = blocking(shared, move |e, t| {
                let mut pages = vec![e.list_operations(&q)?];
                if wanted == Some(OperationState::Expired) {
                    pages.push(e.list_operations(&OperationQuery {
                        state: Some(OperationState::Pending),
                        ..q.clone()
                    })?);
                }
                // Every operation newer than the newest of the full pages' last rows was read.
                let next = pages
                    .iter()
                    .filter(|p| p.len() == limit)
                    .filter_map(|p| p.last().map(|o| (o.created_at, o.id)))
                    .max();
                let mut ops: Vec<_> = pages.into_iter().flatten().collect();
                ops.retain(|o| next.is_none_or(|n| (o.created_at, o.id) >= n));
                for op in &mut ops {
                    op.state = op.effective_state(t);
                }
                ops.retain(|op| wanted.is_none_or(|w| op.state == w));
                ops.sort_by_key(|op| std::cmp::Reverse((op.created_at, op.id)));
                Ok((ops, next))
            })
            .await?;
            let next = next.map(|(at, id)| format!("{}.{id}", at.unix_millis()));
            // What a technician weighs before approving: how full each operation's PT is.
            let pt_ids: std::collections::BTreeSet<PtId> = ops.iter().map(|o| o.pt_id).collect();
            let pts = blocking(shared, move |e, _| {
                Ok(pt_ids
                    .into_iter()
                    .filter_map(|id| e.pt(&id).ok())
                    .map(|p| {
                        let max = match p.kind {
                            PtKind::Fleet { max_registrations } => Some(max_registrations),
                            PtKind::SingleDevice => None,
                        };
                        let fill = answers::PtFill {
                            label: p.label,
                            registrations_created: p.registrations_created,
                            max_registrations: max,
                        };
                        (p.id.to_string(), fill)
                    })
                    .collect())
            })
            .await?;
            answers::json(&answers::OperationPage {
                operations: ops,
                next,
                pts,
            })
        }
        kind::OP_SHOW => {
            let id = op_id(&args::<IdArgs>(raw)?.id)?;
            let op = blocking(shared, move |e, t| {
                let mut op = e.operation(&id)?;
                op.state = op.effective_state(t);
                Ok(op)
            })
            .await?;
            answers::json(&answers::OperationShown { operation: op })
        }
        kind::OP_APPROVE => {
            let a: ApproveArgs = args(raw)?;
            let id = op_id(&a.id)?;
            let approval = Approval {
                verification_code: a.code,
                device_id: a.device_id.as_deref().map(device_id).transpose()?,
                rt_lifetime: a.rt_lifetime_secs.map(Duration::from_secs),
                reassign: a.reassign,
            };
            let registration = blocking(shared, move |e, t| {
                e.approve_operation(&id, approval, &actor, t)
            })
            .await?;
            answers::json(&answers::Approved { registration })
        }
        kind::OP_REJECT => {
            let a: IdReasonArgs = args(raw)?;
            let id = op_id(&a.id)?;
            let r = reason(a.reason);
            blocking(shared, move |e, t| e.reject_operation(&id, &r, &actor, t)).await?;
            answers::json(&answers::Done {})
        }
        kind::DEVICE_LIST => {
            let a: DeviceListArgs = args(raw)?;
            let limit = page_limit(a.limit)?;
            let q = RegistrationQuery {
                device_id: a.device_id.as_deref().map(device_id).transpose()?,
                pt_id: a.pt_id.as_deref().map(pt_id).transpose()?,
                active_only: a.active_only,
                limit,
                before: a.before.map(RegistrationId::new),
            };
            let regs = blocking(shared, move |e, _| e.list_registrations(&q)).await?;
            let next = (regs.len() == limit)
                .then(|| regs.last().map(|r| r.id.get()))
                .flatten();
            answers::json(&answers::RegistrationPage {
                registrations: regs,
                next,
            })
        }
        kind::DEVICE_SHOW => {
            let a: DeviceIdArgs = args(raw)?;
            let d = required_device_id(a.device_id.as_deref())?;
            let d2 = d.clone();
            let regs = blocking(shared, move |e, _| {
                e.list_registrations(&RegistrationQuery {
                    device_id: Some(d2),
                    ..Default::default()
                })
            })
            .await?;
            let blocked = blocking(shared, move |e, _| e.list_blocked())
                .await?
                .into_iter()
                .find(|b| b.device_id == d);
            answers::json(&answers::DeviceShown {
                registrations: regs,
                blocked,
            })
        }
        kind::DEVICE_REVOKE => {
            let a: DeviceRevokeArgs = args(raw)?;
            let r = reason(a.reason);
            let ids: Vec<RegistrationId> = match (a.registration_id, a.device_id) {
                (Some(id), _) => vec![RegistrationId::new(id)],
                (None, Some(d)) => {
                    let d = device_id(&d)?;
                    blocking(shared, move |e, _| {
                        e.list_registrations(&RegistrationQuery {
                            device_id: Some(d),
                            active_only: true,
                            limit: 10_000,
                            ..Default::default()
                        })
                    })
                    .await?
                    .into_iter()
                    .map(|r| r.id)
                    .collect()
                }
                (None, None) => {
                    return Err(input(
                        "registration_id",
                        "give registration_id or device_id",
                    ))
                }
            };
            let n = ids.len();
            blocking(shared, move |e, t| {
                ids.iter()
                    .try_for_each(|id| e.revoke_registration(*id, &r, &actor, t))
            })
            .await?;
            revoked(n)
        }
        kind::DEVICE_BLOCK => {
            let a: DeviceBlockArgs = args(raw)?;
            let d = required_device_id(a.device_id.as_deref())?;
            let r = reason(a.reason);
            revoked(blocking(shared, move |e, t| e.block_device(&d, &r, &actor, t)).await?)
        }
        kind::DEVICE_UNBLOCK => {
            let a: DeviceIdArgs = args(raw)?;
            let d = required_device_id(a.device_id.as_deref())?;
            answers::json(&answers::Unblocked {
                was_blocked: blocking(shared, move |e, t| e.unblock_device(&d, &actor, t)).await?,
            })
        }
        kind::AUDIT => {
            let a: AuditArgs = args(raw)?;
            let events = blocking(shared, move |e, _| {
                if a.newest {
                    e.audit_newest(a.after, a.limit)
                } else {
                    e.audit(a.after, a.limit)
                }
            })
            .await?;
            answers::json(&answers::AuditPage { events })
        }
        kind::INTROSPECT => {
            let a: RtArgs = args(raw)?;
            let i = blocking(shared, move |e, t| e.introspect(a.rt.as_bytes(), t)).await?;
            answers::json(&super::device::introspection(shared, &i))
        }
        kind::REVOCATIONS => revocations(shared, args(raw)?).await?,
        kind::LEAKS => {
            let a: LeaksArgs = args(raw)?;
            answers::json(&answers::LeakPage {
                signals: blocking(shared, move |e, _| e.leak_signals(a.after, a.limit)).await?,
            })
        }
        kind::KEYS_ROTATE => {
            args::<NoArgs>(raw)?;
            answers::json(&answers::Rotated {
                epoch: blocking(shared, move |e, t| e.rotate_keys(&actor, t)).await?,
            })
        }
        kind::KEYS_LIST => {
            args::<NoArgs>(raw)?;
            answers::json(&answers::Epochs {
                epochs: blocking(shared, |e, _| e.key_epochs()).await?,
            })
        }
        kind::KEYS_RETIRE => {
            let a: EpochArgs = args(raw)?;
            blocking(shared, move |e, t| e.retire_key_epoch(a.epoch, &actor, t)).await?;
            answers::json(&answers::Done {})
        }
        kind::TOKEN_CREATE => {
            let a: TokenArgs = args(raw)?;
            let role: AdminRole = a.role.parse().map_err(bad)?;
            let (rec, tok) = blocking(shared, move |e, t| {
                e.create_admin_token(&a.name, role, &actor, t)
            })
            .await?;
            answers::json(&answers::TokenCreated {
                admin_token: rec,
                token: tok.expose(),
            })
        }
        kind::TOKEN_LIST => {
            args::<NoArgs>(raw)?;
            answers::json(&answers::TokenList {
                admin_tokens: blocking(shared, |e, _| e.list_admin_tokens()).await?,
            })
        }
        kind::TOKEN_REVOKE => {
            let id: AdminTokenId = args::<IdArgs>(raw)?.id.parse().map_err(bad)?;
            answers::json(&answers::TokenRevoked {
                revoked: blocking(shared, move |e, t| e.revoke_admin_token(&id, &actor, t)).await?,
            })
        }
        _ => {
            return Err(err(
                code::UNKNOWN_REQUEST,
                "unknown request on the admin endpoint",
            ))
        }
    };
    Ok(v)
}

/// How long a batch waits for its reader to take the next chunk before abandoning the batch.
const BATCH_READER_TIMEOUT: Duration = Duration::from_secs(60);

/// A batch being made: its lines arrive on the receiver while the engine stages the PTs; the
/// job answers the batch's record (committed) or the error (nothing stored). Dropping the
/// receiver abandons the batch.
type BatchJob = (
    tokio::sync::mpsc::Receiver<Vec<u8>>,
    tokio::task::JoinHandle<Result<tessera_engine::PtBatch, Error>>,
);

/// Start `PT_BATCH`. The engine writes to the channel from a blocking thread, never from a
/// store job.
fn start_batch(shared: &Arc<Shared>, a: &PtArgs, actor: Actor) -> Result<BatchJob, ErrorBody> {
    let spec = pt_spec(a)?;
    let count = a.count.ok_or_else(|| input("count", "required"))?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(16);
    struct ChunkWriter {
        buf: Vec<u8>,
        tx: tokio::sync::mpsc::Sender<Vec<u8>>,
    }
    impl std::io::Write for ChunkWriter {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.buf.extend_from_slice(b);
            if self.buf.len() >= 256 * 1024 {
                self.flush()?;
            }
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            if !self.buf.is_empty() {
                let chunk = std::mem::take(&mut self.buf);
                self.tx
                    .blocking_send(chunk)
                    .map_err(|_| std::io::Error::other("client went away"))?;
            }
            Ok(())
        }
    }
    impl Drop for ChunkWriter {
        fn drop(&mut self) {
            zeroize::Zeroize::zeroize(&mut self.buf);
        }
    }
    let engine = shared.engine.clone();
    let t = shared.now();
    let job = tokio::task::spawn_blocking(move || {
        engine.create_pt_batch(
            &spec,
            count,
            Box::new(ChunkWriter {
                buf: Vec::new(),
                tx,
            }),
            &actor,
            t,
        )
    });
    Ok((rx, job))
}

/// The end of a batch: its record, or why nothing was stored.
async fn finish_batch(
    job: tokio::task::JoinHandle<Result<tessera_engine::PtBatch, Error>>,
) -> Result<Value, ErrorBody> {
    match job.await {
        Ok(Ok(b)) => Ok(serde_json::to_value(b).unwrap_or_default()),
        Ok(Err(e)) => Err(engine_err(&e)),
        Err(_) => Err(err(code::INTERNAL, "internal error; nothing was changed")),
    }
}

/// `PT_BATCH` on the QUIC endpoint: stream the `pt_id<TAB>token` lines as CHUNK frames, then a
/// final OK (committed) or ERROR (nothing stored; discard the lines).
async fn batch(
    shared: &Arc<Shared>,
    a: PtArgs,
    actor: Actor,
    send: &mut quinn::SendStream,
) -> Result<Handled, ErrorBody> {
    let (mut rx, job) = start_batch(shared, &a, actor)?;
    while let Some(mut chunk) = rx.recv().await {
        let mut frame = wire::encode(kind::CHUNK, &chunk);
        zeroize::Zeroize::zeroize(&mut chunk);
        let sent = tokio::time::timeout(BATCH_READER_TIMEOUT, send.write_all(&frame)).await;
        zeroize::Zeroize::zeroize(&mut frame);
        if !matches!(sent, Ok(Ok(()))) {
            break;
        }
    }
    // A reader that went away (or stalled past the timeout): closing the channel makes the
    // engine abandon the batch.
    drop(rx);
    finish_batch(job).await.map(|b| Handled::ok(&b))
}

/// `PT_BATCH` for the HTTPS API: the whole file of lines (kept in memory, at most the batch's
/// size) once the batch has been committed, with its record; nothing if it failed.
pub(crate) async fn batch_to_memory(
    shared: &Arc<Shared>,
    caller: Caller,
    raw: Value,
) -> Result<(Vec<u8>, Value), ErrorBody> {
    let (mut rx, job) = start_batch(shared, &args::<PtArgs>(raw)?, caller.actor)?;
    let mut lines = zeroize::Zeroizing::new(Vec::new());
    while let Some(mut chunk) = rx.recv().await {
        lines.extend_from_slice(&chunk);
        zeroize::Zeroize::zeroize(&mut chunk);
    }
    let record = finish_batch(job).await?;
    Ok((std::mem::take(&mut *lines), record))
}
