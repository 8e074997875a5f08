//! Key epochs: rotate, list, retire.

use tessera_proto::admin::requests::{KeysList, KeysRetire, KeysRotate};
use tessera_proto::admin::{Done, Epochs, Rotated};
use tessera_proto::wire::ErrorBody;

use super::{blocking, Cx, Serve};

impl Serve for KeysRotate {
    async fn serve(self, cx: Cx<'_>) -> Result<Rotated, ErrorBody> {
        let actor = cx.actor();
        let epoch = blocking(cx.shared, move |e, t| e.rotate_keys(&actor, t)).await?;
        Ok(Rotated { epoch })
    }
}

impl Serve for KeysList {
    async fn serve(self, cx: Cx<'_>) -> Result<Epochs, ErrorBody> {
        let epochs = blocking(cx.shared, |e, _| e.key_epochs()).await?;
        Ok(Epochs { epochs })
    }
}

impl Serve for KeysRetire {
    async fn serve(self, cx: Cx<'_>) -> Result<Done, ErrorBody> {
        let (epoch, actor) = (self.epoch, cx.actor());
        blocking(cx.shared, move |e, t| e.retire_key_epoch(epoch, &actor, t)).await?;
        Ok(Done {})
    }
}
