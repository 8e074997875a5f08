//! The audit log and leak signals.

use tessera_proto::admin::requests::{Audit, Leaks};
use tessera_proto::admin::{AuditPage, LeakPage};
use tessera_proto::wire::ErrorBody;

use super::{blocking, page_limit, Cx, Serve};

impl Serve for Audit {
    async fn serve(self, cx: Cx<'_>) -> Result<AuditPage, ErrorBody> {
        let limit = page_limit(self.limit)?;
        let events = blocking(cx.shared, move |e, _| {
            if self.newest {
                e.audit_newest(self.after, limit)
            } else {
                e.audit(self.after, limit)
            }
        })
        .await?;
        Ok(AuditPage { events })
    }
}

impl Serve for Leaks {
    async fn serve(self, cx: Cx<'_>) -> Result<LeakPage, ErrorBody> {
        let limit = page_limit(self.limit)?;
        let signals = blocking(cx.shared, move |e, _| e.leak_signals(self.after, limit)).await?;
        Ok(LeakPage { signals })
    }
}
