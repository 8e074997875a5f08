//! Provisioning operations: list, show, approve, reject.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tessera_engine::store::OperationQuery;
use tessera_engine::{Approval, OperationState, PtId, PtKind};
use tessera_proto::admin::requests::{OpApprove, OpList, OpReject, OpShow};
use tessera_proto::admin::{Approved, Done, OperationPage, OperationShown, PtFill};
use tessera_proto::wire::ErrorBody;

use super::{blocking, cursor, id, input, next_cursor, page_limit, reason, Cx, Serve};

impl Serve for OpList {
    async fn serve(self, cx: Cx<'_>) -> Result<OperationPage, ErrorBody> {
        let state = self
            .state
            .as_deref()
            .map(|s| OperationState::parse(s).ok_or_else(|| input("state", "unknown state")))
            .transpose()?;
        let q = OperationQuery {
            state,
            pt_id: self.pt_id.as_deref().map(id).transpose()?,
            limit: page_limit(self.limit)?,
            before: self.before.as_deref().map(cursor).transpose()?,
            ..OperationQuery::default()
        };
        let (operations, next) = blocking(cx.shared, move |e, t| e.operations_page(&q, t)).await?;
        // What a technician weighs before approving: how full each operation's PT is.
        let pt_ids: BTreeSet<PtId> = operations.iter().map(|o| o.pt_id).collect();
        let pts = blocking(cx.shared, move |e, _| {
            Ok(pt_ids
                .into_iter()
                .filter_map(|id| e.pt(&id).ok())
                .map(|p| {
                    let max_registrations = match p.kind {
                        PtKind::Fleet { max_registrations } => Some(max_registrations),
                        PtKind::SingleDevice => None,
                    };
                    let fill = PtFill {
                        label: p.label,
                        registrations_created: p.registrations_created,
                        max_registrations,
                    };
                    (p.id.to_string(), fill)
                })
                .collect::<BTreeMap<_, _>>())
        })
        .await?;
        Ok(OperationPage {
            operations,
            next: next.map(|(at, id)| next_cursor(at, id)),
            pts,
        })
    }
}

impl Serve for OpShow {
    async fn serve(self, cx: Cx<'_>) -> Result<OperationShown, ErrorBody> {
        let op_id = id(&self.id)?;
        let operation = blocking(cx.shared, move |e, t| {
            let mut op = e.operation(&op_id)?;
            op.state = op.effective_state(t);
            Ok(op)
        })
        .await?;
        Ok(OperationShown { operation })
    }
}

impl Serve for OpApprove {
    async fn serve(mut self, cx: Cx<'_>) -> Result<Approved, ErrorBody> {
        let op_id = id(&self.id)?;
        let approval = Approval {
            verification_code: self.code.take(),
            device_id: self.device_id.as_deref().map(id).transpose()?,
            rt_lifetime: self.rt_lifetime_secs.map(Duration::from_secs),
            reassign: self.reassign,
        };
        let actor = cx.actor();
        let registration = blocking(cx.shared, move |e, t| {
            e.approve_operation(&op_id, approval, &actor, t)
        })
        .await?;
        Ok(Approved { registration })
    }
}

impl Serve for OpReject {
    async fn serve(self, cx: Cx<'_>) -> Result<Done, ErrorBody> {
        let op_id = id(&self.id)?;
        let (r, actor) = (reason(self.reason), cx.actor());
        blocking(cx.shared, move |e, t| {
            e.reject_operation(&op_id, &r, &actor, t)
        })
        .await?;
        Ok(Done {})
    }
}
