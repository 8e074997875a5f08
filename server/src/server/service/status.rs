//! STATUS: the engine's counters and the server's.

use std::sync::atomic::Ordering;

use tessera_proto::admin::requests::Status;
use tessera_proto::admin::StatusAnswer;
use tessera_proto::wire::ErrorBody;

use super::{blocking, Cx, Serve};

impl Serve for Status {
    async fn serve(self, cx: Cx<'_>) -> Result<StatusAnswer, ErrorBody> {
        let shared = cx.shared;
        let engine = blocking(shared, |e, _| e.status()).await?;
        Ok(StatusAnswer {
            engine,
            open_connections: shared.open_connections.load(Ordering::Relaxed) as u64,
            long_polls: shared.waiters.len() as u64,
            revocation_polls: shared.revocation_polls.load(Ordering::Relaxed) as u64,
            retries_sent: shared.retries_sent.load(Ordering::Relaxed) as u64,
            tls_resumed: shared.device_tickets.resumed.load(Ordering::Relaxed),
            server_time_ms: shared.now().unix_millis(),
        })
    }
}
