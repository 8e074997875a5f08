//! Devices: list registrations, show a device id, revoke, block, unblock.

use tessera_engine::store::RegistrationQuery;
use tessera_engine::RegistrationId;
use tessera_proto::admin::requests::{
    DeviceBlock, DeviceList, DeviceRevoke, DeviceShow, DeviceUnblock,
};
use tessera_proto::admin::{DeviceShown, RegistrationPage, Revoked, Unblocked};
use tessera_proto::wire::ErrorBody;

use super::{blocking, id, input, page_limit, reason, required_device_id, Cx, Serve};

impl Serve for DeviceList {
    async fn serve(self, cx: Cx<'_>) -> Result<RegistrationPage, ErrorBody> {
        let limit = page_limit(self.limit)?;
        let q = RegistrationQuery {
            device_id: self.device_id.as_deref().map(id).transpose()?,
            pt_id: self.pt_id.as_deref().map(id).transpose()?,
            active_only: self.active_only,
            limit,
            before: self.before.map(RegistrationId::new),
        };
        let registrations = blocking(cx.shared, move |e, _| e.list_registrations(&q)).await?;
        let next = (registrations.len() == limit)
            .then(|| registrations.last().map(|r| r.id.get()))
            .flatten();
        Ok(RegistrationPage {
            registrations,
            next,
        })
    }
}

impl Serve for DeviceShow {
    async fn serve(self, cx: Cx<'_>) -> Result<DeviceShown, ErrorBody> {
        let d = required_device_id(self.device_id.as_deref())?;
        blocking(cx.shared, move |e, _| {
            let registrations = e.list_registrations(&RegistrationQuery {
                device_id: Some(d.clone()),
                ..Default::default()
            })?;
            let blocked = e.list_blocked()?.into_iter().find(|b| b.device_id == d);
            Ok(DeviceShown {
                registrations,
                blocked,
            })
        })
        .await
    }
}

impl Serve for DeviceRevoke {
    async fn serve(self, cx: Cx<'_>) -> Result<Revoked, ErrorBody> {
        let (r, actor) = (reason(self.reason), cx.actor());
        let n = match (self.registration_id, self.device_id) {
            (Some(reg), _) => {
                let reg = RegistrationId::new(reg);
                blocking(cx.shared, move |e, t| {
                    e.revoke_registration(reg, &r, &actor, t).map(|()| 1)
                })
                .await?
            }
            (None, Some(d)) => {
                let d = id(&d)?;
                blocking(cx.shared, move |e, t| e.revoke_device(&d, &r, &actor, t)).await?
            }
            (None, None) => {
                return Err(input(
                    "registration_id",
                    "give registration_id or device_id",
                ))
            }
        };
        Ok(Revoked {
            registrations_revoked: n as u64,
        })
    }
}

impl Serve for DeviceBlock {
    async fn serve(self, cx: Cx<'_>) -> Result<Revoked, ErrorBody> {
        let d = required_device_id(self.device_id.as_deref())?;
        let (r, actor) = (reason(self.reason), cx.actor());
        let n = blocking(cx.shared, move |e, t| e.block_device(&d, &r, &actor, t)).await?;
        Ok(Revoked {
            registrations_revoked: n as u64,
        })
    }
}

impl Serve for DeviceUnblock {
    async fn serve(self, cx: Cx<'_>) -> Result<Unblocked, ErrorBody> {
        let d = required_device_id(self.device_id.as_deref())?;
        let actor = cx.actor();
        let was_blocked = blocking(cx.shared, move |e, t| e.unblock_device(&d, &actor, t)).await?;
        Ok(Unblocked { was_blocked })
    }
}
