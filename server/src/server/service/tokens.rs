//! Admin tokens: create, list, revoke.

use tessera_engine::{AdminRole, AdminTokenId};
use tessera_proto::admin::requests::{TokenCreate, TokenList, TokenRevoke};
use tessera_proto::admin::{AdminTokens, TokenCreated, TokenRevoked};
use tessera_proto::wire::ErrorBody;

use super::{bad, blocking, id, Cx, Serve};

impl Serve for TokenCreate {
    async fn serve(self, cx: Cx<'_>) -> Result<TokenCreated, ErrorBody> {
        let role: AdminRole = self.role.parse().map_err(bad)?;
        let (name, actor) = (self.name, cx.actor());
        let (admin_token, tok) = blocking(cx.shared, move |e, t| {
            e.create_admin_token(&name, role, &actor, t)
        })
        .await?;
        Ok(TokenCreated {
            admin_token,
            token: tok.expose().to_owned(),
        })
    }
}

impl Serve for TokenList {
    async fn serve(self, cx: Cx<'_>) -> Result<AdminTokens, ErrorBody> {
        let admin_tokens = blocking(cx.shared, |e, _| e.list_admin_tokens()).await?;
        Ok(AdminTokens { admin_tokens })
    }
}

impl Serve for TokenRevoke {
    async fn serve(self, cx: Cx<'_>) -> Result<TokenRevoked, ErrorBody> {
        let token_id: AdminTokenId = id(&self.id)?;
        let actor = cx.actor();
        let revoked = blocking(cx.shared, move |e, t| {
            e.revoke_admin_token(&token_id, &actor, t)
        })
        .await?;
        Ok(TokenRevoked { revoked })
    }
}
