//! What services (a broker's validator) ask: INTROSPECT an RT, follow REVOCATIONS.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tessera_proto::admin::requests::{Introspect, Revocations};
use tessera_proto::admin::RevocationPage;
use tessera_proto::wire::messages::{IntrospectResp, REVOCATIONS_MAX};
use tessera_proto::wire::ErrorBody;

use super::{blocking, input, Cx, Serve};

/// The longest a REVOCATIONS request waits.
const REVOCATIONS_MAX_WAIT: Duration = Duration::from_secs(30);

impl Serve for Introspect {
    async fn serve(self, cx: Cx<'_>) -> Result<IntrospectResp, ErrorBody> {
        let i = blocking(cx.shared, move |e, t| e.introspect(self.rt.as_bytes(), t)).await?;
        Ok(crate::server::device::introspection(cx.shared, &i))
    }
}

impl Serve for Revocations {
    /// The registrations revoked after the cursor (from the newest change when none is given),
    /// waiting up to `wait_ms` for one when there are none yet.
    async fn serve(self, cx: Cx<'_>) -> Result<RevocationPage, ErrorBody> {
        let shared = cx.shared;
        let limit = self.limit.unwrap_or(1000);
        if limit == 0 || limit > REVOCATIONS_MAX {
            return Err(input("limit", "must be 1 to 4096"));
        }
        let wait = Duration::from_millis(self.wait_ms);
        if wait > REVOCATIONS_MAX_WAIT {
            return Err(input("wait_ms", "must be at most 30000"));
        }
        // Registered before the read, so a revocation committed between the read and the wait
        // still wakes it.
        let woken = shared.revocations.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let after = match self.after {
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
        Ok(RevocationPage {
            revocations: ids.into_iter().map(|r| r.get()).collect(),
            cursor,
        })
    }
}
