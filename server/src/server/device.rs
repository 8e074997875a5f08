//! Device requests: BEGIN, WAIT, REFRESH, INTROSPECT, CANCEL.

use std::sync::Arc;
use std::time::Duration;

use tessera_engine::{
    Actor, Attributes, BeginRequest, DeviceId, Error, OperationId, OperationStatus, Provisioned,
    ProvisioningToken, RegistrationId,
};

use super::body::parse;
use super::outbox::Deferred;
use super::reply::{engine_err, err, Handled, Reply};
use super::shared::{blocking, limit, Shared};
use tessera_proto::wire::messages::{
    BeginReq, BeginResp, CancelReq, IntrospectResp, RefreshResp, RtBody, RtReq, WaitReq, WaitResp,
};
use tessera_proto::wire::{code, kind, ErrorBody, Frame};

pub(crate) fn rt_body(p: &Provisioned) -> RtBody {
    RtBody {
        rt: p.rt.expose().to_owned(),
        device_id: p.device_id.to_string(),
        registration_id: p.registration_id.get(),
        generation: p.claims.generation,
        issued_at: p.claims.issued_at,
        expires_at: p.claims.expires_at,
    }
}

/// Start a refresh: answered from the outbox once durable (or at once if the RT is refused).
pub(crate) fn refresh_frame(shared: &Shared, frame: Frame<'_>, reply: Reply) {
    match parse(frame.body) {
        Ok(req) => {
            let source = reply_source(&reply);
            refresh(shared, req, Some(source), reply);
        }
        Err(e) => reply.finish(Err(e)),
    }
}

/// Handle a device request and answer it through `reply`. Refreshes are answered from the
/// outbox once durable; everything else here.
pub(crate) async fn handle(shared: &Arc<Shared>, frame: Frame<'_>, reply: Reply) {
    if frame.kind == kind::REFRESH {
        return refresh_frame(shared, frame, reply);
    }
    let source = Some(reply_source(&reply));
    reply.finish(answer(shared, frame, source).await);
}

async fn answer(
    shared: &Arc<Shared>,
    frame: Frame<'_>,
    source: Option<String>,
) -> Result<Handled, ErrorBody> {
    match frame.kind {
        kind::BEGIN => begin(shared, parse(frame.body)?, source).await,
        kind::WAIT => wait(shared, parse(frame.body)?, source).await,
        kind::INTROSPECT => introspect(shared, parse(frame.body)?, source).await,
        kind::CANCEL => cancel(shared, parse(frame.body)?, source).await,
        _ => Err(err(
            code::UNKNOWN_REQUEST,
            "unknown request on the device endpoint",
        )),
    }
}

fn reply_source(reply: &Reply) -> String {
    reply.remote_ip().to_string()
}

fn input(e: tessera_engine::InputError) -> ErrorBody {
    engine_err(&Error::InvalidInput(e))
}

async fn begin(
    shared: &Arc<Shared>,
    req: BeginReq,
    source: Option<String>,
) -> Result<Handled, ErrorBody> {
    let device_id = req
        .device_id
        .map(DeviceId::new)
        .transpose()
        .map_err(input)?;
    let attributes = Attributes::new(req.attributes).map_err(input)?;
    let request = BeginRequest {
        pt: ProvisioningToken::new(req.pt),
        requested_device_id: device_id,
        attributes,
        instance_nonce: req.instance_nonce.into_bytes(),
    };
    let out = blocking(shared, move |e, t| {
        e.begin_operation(request, &Actor::device(source), t)
    })
    .await?;
    Ok(Handled::ok(&BeginResp {
        operation_id: out.operation_id.to_string(),
        secret: out.secret.expose().to_owned(),
        verification_code: out.verification_code.map(|c| c.expose().to_owned()),
        state: out.state.to_string(),
        poll_interval_ms: out.poll_interval.as_millis() as u64,
        expires_at_ms: out.expires_at.unix_millis(),
        resumed: out.resumed,
        server_time_ms: shared.now().unix_millis(),
    }))
}

fn parse_op(id: &str) -> Result<OperationId, ErrorBody> {
    id.parse().map_err(input)
}

async fn wait(
    shared: &Arc<Shared>,
    req: WaitReq,
    source: Option<String>,
) -> Result<Handled, ErrorBody> {
    if let Some(s) = &source {
        limit(shared, &shared.limits.wait, s)?;
    }
    let id = parse_op(&req.operation_id)?;
    let hold = Duration::from_millis(req.timeout_ms.min(shared.config.max_wait_ms));
    let deadline = tokio::time::Instant::now() + hold;
    let notify = shared.waiters.get(id);
    let result = loop {
        // Register interest before looking, so an approval between the two is not missed.
        let notified = notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let secret = req.secret.clone();
        let collector = Actor::device(source.clone());
        let status = blocking(shared, move |e, t| {
            e.poll_operation(&id, &secret, &collector, t)
        })
        .await;
        match status {
            Ok(OperationStatus::Pending { .. }) if tokio::time::Instant::now() < deadline => {
                tokio::select! {
                    () = &mut notified => continue,
                    () = tokio::time::sleep_until(deadline) => continue,
                }
            }
            other => break other,
        }
    };
    shared.waiters.release(id, notify);
    let server_time_ms = shared.now().unix_millis();
    let (resp, attach) = match result? {
        OperationStatus::Pending {
            poll_interval,
            expires_at,
        } => (
            WaitResp {
                state: "pending".into(),
                poll_interval_ms: Some(poll_interval.as_millis() as u64),
                expires_at_ms: Some(expires_at.unix_millis()),
                server_time_ms,
                ..WaitResp::default()
            },
            None,
        ),
        OperationStatus::Provisioned(p) => (
            WaitResp {
                state: "provisioned".into(),
                registration: Some(rt_body(&p)),
                server_time_ms,
                ..WaitResp::default()
            },
            Some(p.registration_id),
        ),
        OperationStatus::Rejected { reason } => (
            WaitResp {
                state: "rejected".into(),
                reason,
                server_time_ms,
                ..WaitResp::default()
            },
            None,
        ),
        OperationStatus::Expired => (
            WaitResp {
                state: "expired".into(),
                server_time_ms,
                ..WaitResp::default()
            },
            None,
        ),
        OperationStatus::Cancelled { reason } => (
            WaitResp {
                state: "cancelled".into(),
                reason,
                server_time_ms,
                ..WaitResp::default()
            },
            None,
        ),
    };
    Ok(Handled {
        frames: tessera_proto::wire::ok_frame(&resp),
        attach,
    })
}

fn refresh(shared: &Shared, req: RtReq, source: Option<String>, reply: Reply) {
    // The RT is checked here (parse, MAC, expiry: well under a microsecond) and the rotation
    // runs on the store's writer, which hands the result to the outbox once it is durable: no
    // thread or task waits per refresh.
    let outbox = shared.outbox.clone();
    let clock = shared.clock.clone();
    shared
        .engine
        .refresh_then(&req.rt, &Actor::device(source), shared.now(), move |r| {
            outbox.push(Deferred {
                reply,
                refreshed: r,
                at_ms: clock.now().unix_millis(),
            });
        });
}

/// The answer to a refresh, once its result is known.
pub(crate) fn refresh_answer(
    r: Result<tessera_engine::Refreshed, Error>,
    at_ms: u64,
) -> Result<Handled, ErrorBody> {
    let r = r.map_err(|e| engine_err(&e))?;
    let body = RtBody {
        rt: r.rt.expose().to_owned(),
        device_id: r.device_id.to_string(),
        registration_id: r.claims.registration_id.get(),
        generation: r.claims.generation,
        issued_at: r.claims.issued_at,
        expires_at: r.claims.expires_at,
    };
    Ok(Handled {
        frames: tessera_proto::wire::ok_frame(&RefreshResp {
            registration: body,
            retried: r.retried,
            server_time_ms: at_ms,
        }),
        attach: Some(r.claims.registration_id),
    })
}

/// The INTROSPECT answer for a valid RT (device and admin endpoints).
pub(crate) fn introspection(shared: &Shared, i: &tessera_engine::Introspection) -> IntrospectResp {
    IntrospectResp {
        active: true,
        device_id: i.device_id.to_string(),
        registration_id: i.registration_id.get(),
        pt_id: i.pt_id.to_string(),
        generation: i.generation,
        expires_at: i.expires_at,
        server_time_ms: shared.now().unix_millis(),
    }
}

async fn introspect(
    shared: &Arc<Shared>,
    req: RtReq,
    source: Option<String>,
) -> Result<Handled, ErrorBody> {
    if let Some(s) = &source {
        limit(shared, &shared.limits.introspect, s)?;
    }
    let req = Arc::new(req);
    let out = blocking(shared, {
        let req = req.clone();
        move |e, t| e.introspect(req.rt.as_bytes(), t)
    })
    .await;
    let rt = &req.rt;
    match out {
        Ok(i) => Ok(Handled::ok(&introspection(shared, &i))),
        Err(e) => {
            if e.code == code::REVOKED {
                report_revoked(shared, rt, source);
            }
            Err(e)
        }
    }
}

/// A revoked RT was presented: record a leak signal, at most once a minute per registration.
fn report_revoked(shared: &Arc<Shared>, rt: &str, source: Option<String>) {
    // The error said "revoked", so the MAC verified and the registration id is authentic.
    let Ok(parsed) = tessera_proto::token::UntrustedRt::parse(rt.as_bytes()) else {
        return;
    };
    let reg: RegistrationId = parsed.untrusted_claims().registration_id;
    let t = shared.now();
    {
        let mut m = shared
            .revoked_reports
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if m.get(&reg.get())
            .is_some_and(|last| t.saturating_duration_since(*last) < Duration::from_secs(60))
        {
            return;
        }
        if m.len() > 100_000 {
            m.clear();
        }
        m.insert(reg.get(), t);
    }
    let engine = shared.engine.clone();
    tokio::task::spawn_blocking(move || {
        let _ = engine.report_revoked_rt_use(reg, source, t);
    });
}

async fn cancel(
    shared: &Arc<Shared>,
    req: CancelReq,
    source: Option<String>,
) -> Result<Handled, ErrorBody> {
    let id = parse_op(&req.operation_id)?;
    blocking(shared, move |e, t| {
        e.cancel_operation(&id, &req.secret, &Actor::device(source), t)
    })
    .await?;
    Ok(Handled::ok(
        &serde_json::json!({ "server_time_ms": shared.now().unix_millis() }),
    ))
}
