//! The QUIC admin endpoint's requests: authorize the token, then the service layer. PT_BATCH
//! streams its lines as CHUNK frames.

use std::sync::Arc;
use std::time::Duration;

use tessera_proto::admin::requests::PtBatch;
use tessera_proto::wire::messages::AdminReq;
use tessera_proto::wire::{self, kind, ErrorBody, Frame};

use super::body::parse;
use super::registry::ConnState;
use super::reply::Handled;
use super::service::{self, start_batch};
use super::shared::Shared;

/// How long a batch waits for its reader to take the next chunk before abandoning the batch.
const BATCH_READER_TIMEOUT: Duration = Duration::from_secs(60);

/// One request on the admin endpoint, logged and counted (see [`service::record`]).
pub(crate) async fn handle(
    shared: &Arc<Shared>,
    frame: Frame<'_>,
    source: std::net::IpAddr,
    conn: &ConnState,
    send: &mut quinn::SendStream,
) -> Result<Handled, ErrorBody> {
    let started = std::time::Instant::now();
    let kind_code = frame.kind;
    let mut caller = None;
    let r = authorized(shared, frame, source, conn, send, &mut caller).await;
    service::record(
        service::Front::Quic,
        kind_code,
        source,
        caller.as_ref(),
        r.as_ref().map(|_| ()).map_err(|e| e.code),
        started,
    );
    r
}

async fn authorized(
    shared: &Arc<Shared>,
    frame: Frame<'_>,
    source: std::net::IpAddr,
    conn: &ConnState,
    send: &mut quinn::SendStream,
    who: &mut Option<service::Caller>,
) -> Result<Handled, ErrorBody> {
    let mut req: AdminReq = parse(frame.body)?;
    let caller = service::authorize(
        shared,
        zeroize::Zeroizing::new(std::mem::take(&mut req.token)),
        frame.kind,
        source,
    )
    .await?;
    let caller = who.insert(caller).clone();
    conn.authenticated();
    let args = std::mem::take(&mut req.args);
    if frame.kind == kind::PT_BATCH {
        let PtBatch(a) = service::decode(args)?;
        return batch(shared, &a, caller.actor, send).await;
    }
    let v = service::execute(shared, &caller, frame.kind, args).await?;
    Ok(Handled::ok(&v))
}

/// `PT_BATCH` on the QUIC endpoint: stream the `pt_id<TAB>token` lines as CHUNK frames, then a
/// final OK (committed) or ERROR (nothing stored; discard the lines).
async fn batch(
    shared: &Arc<Shared>,
    a: &tessera_proto::admin::requests::PtArgs,
    actor: tessera_engine::Actor,
    send: &mut quinn::SendStream,
) -> Result<Handled, ErrorBody> {
    let mut job = start_batch(shared, a, actor)?;
    while let Some(mut chunk) = job.lines.recv().await {
        let mut frame = wire::encode(kind::CHUNK, &chunk);
        zeroize::Zeroize::zeroize(&mut chunk);
        let sent = tokio::time::timeout(BATCH_READER_TIMEOUT, send.write_all(&frame)).await;
        zeroize::Zeroize::zeroize(&mut frame);
        if !matches!(sent, Ok(Ok(()))) {
            break;
        }
    }
    // A reader that went away (or stalled past the timeout): finishing closes the channel,
    // which makes the engine abandon the batch.
    job.finish().await.map(|b| Handled::ok(&b))
}
