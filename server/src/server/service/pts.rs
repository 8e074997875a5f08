//! PTs: create one, make a batch, list, show, revoke.

use std::sync::Arc;

use tessera_engine::{Actor, Error, PtSpec};
use tessera_proto::admin::requests::{PtArgs, PtCreate, PtList, PtRevoke, PtShow};
use tessera_proto::admin::{PtBatchDone, PtCreated, PtPage, PtShown, Revoked};
use tessera_proto::wire::{code, ErrorBody};

use super::{bad, blocking, cursor, id, input, next_cursor, page_limit, reason, Cx, Serve};
use crate::server::reply::{engine_err, err};
use crate::server::shared::Shared;

fn spec(a: &PtArgs) -> Result<PtSpec, ErrorBody> {
    PtSpec::try_from(a).map_err(bad)
}

impl Serve for PtCreate {
    async fn serve(self, cx: Cx<'_>) -> Result<PtCreated, ErrorBody> {
        if self.0.count.is_some() {
            return Err(input("count", "only PT_BATCH takes a count"));
        }
        let spec = spec(&self.0)?;
        let actor = cx.actor();
        let (pt, tok) = blocking(cx.shared, move |e, t| e.create_pt(&spec, &actor, t)).await?;
        Ok(PtCreated {
            pt,
            token: tok.expose().to_owned(),
        })
    }
}

impl Serve for PtList {
    async fn serve(self, cx: Cx<'_>) -> Result<PtPage, ErrorBody> {
        let limit = page_limit(self.limit)?;
        let before = self.before.as_deref().map(cursor).transpose()?;
        let all = self.include_revoked;
        let pts = blocking(cx.shared, move |e, _| e.list_pts_before(limit, all, before)).await?;
        let next = (pts.len() == limit)
            .then(|| pts.last().map(|p| next_cursor(p.created_at, p.id)))
            .flatten();
        Ok(PtPage { pts, next })
    }
}

impl Serve for PtShow {
    async fn serve(self, cx: Cx<'_>) -> Result<PtShown, ErrorBody> {
        let pt_id = id(&self.id)?;
        let pt = blocking(cx.shared, move |e, _| e.pt(&pt_id)).await?;
        Ok(PtShown { pt })
    }
}

impl Serve for PtRevoke {
    async fn serve(self, cx: Cx<'_>) -> Result<Revoked, ErrorBody> {
        let pt_id = id(&self.id)?;
        let (r, actor) = (reason(self.reason.clone()), cx.actor());
        let n = blocking(cx.shared, move |e, t| e.revoke_pt(&pt_id, &r, &actor, t)).await?;
        Ok(Revoked {
            registrations_revoked: n as u64,
        })
    }
}

/// A batch being made: its `pt_id<TAB>token` lines arrive on the receiver while the engine
/// stages the PTs; the job answers the batch's record (committed) or the error (nothing
/// stored). Dropping the receiver abandons the batch.
pub(crate) struct BatchJob {
    pub(crate) lines: tokio::sync::mpsc::Receiver<Vec<u8>>,
    job: tokio::task::JoinHandle<Result<PtBatchDone, Error>>,
}

impl BatchJob {
    /// The end of the batch: its record, or why nothing was stored.
    pub(crate) async fn finish(self) -> Result<PtBatchDone, ErrorBody> {
        drop(self.lines);
        match self.job.await {
            Ok(Ok(b)) => Ok(b),
            Ok(Err(e)) => Err(engine_err(&e)),
            Err(_) => Err(err(code::INTERNAL, "internal error; nothing was changed")),
        }
    }
}

/// Start `PT_BATCH`. The engine writes to the channel from a blocking thread, never from a
/// store job.
pub(crate) fn start_batch(
    shared: &Arc<Shared>,
    a: &PtArgs,
    actor: Actor,
) -> Result<BatchJob, ErrorBody> {
    let spec = spec(a)?;
    let count = a.count.ok_or_else(|| input("count", "required"))?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(16);
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
    Ok(BatchJob { lines: rx, job })
}

/// The engine's output for a batch: lines gathered into chunks of about 256 KiB, each handed to
/// the front end; wiped when dropped.
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
