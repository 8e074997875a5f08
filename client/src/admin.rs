//! The admin client: every admin request, over the admin endpoint.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{json, Value};
use tessera_proto::wire::messages::{AdminReq, IntrospectResp};
use tessera_proto::wire::{kind, ADMIN_ALPN};
use tessera_proto::AdminToken;

use super::transport::{ClientError, Transport, Trust};

/// An operator's connection to the admin endpoint.
#[derive(Debug)]
pub struct AdminClient {
    transport: Transport,
    token: AdminToken,
}

impl AdminClient {
    /// Connect lazily (on the first request) to `addr`, trusting `trust`, authenticating with
    /// `token` on every request.
    pub fn new(
        addr: SocketAddr,
        server_name: &str,
        trust: &Trust,
        token: AdminToken,
    ) -> Result<Self, ClientError> {
        Self::with_timeout(addr, server_name, trust, token, Duration::from_secs(30))
    }

    /// As [`new`](Self::new), with `timeout` for each request, connecting included (30 s in
    /// `new`). A long poll's wait comes on top.
    pub fn with_timeout(
        addr: SocketAddr,
        server_name: &str,
        trust: &Trust,
        token: AdminToken,
        timeout: Duration,
    ) -> Result<Self, ClientError> {
        Ok(Self {
            transport: Transport::new(addr, server_name, trust, ADMIN_ALPN, timeout)?,
            token,
        })
    }

    /// Make any admin request by kind with JSON arguments; returns the JSON response.
    pub async fn call(&self, kind_code: u8, args: Value) -> Result<Value, ClientError> {
        self.transport
            .call(
                kind_code,
                &AdminReq {
                    token: self.token.expose().to_owned(),
                    args,
                },
                Duration::ZERO,
            )
            .await
    }

    /// `PT_BATCH`: `on_lines` receives the `pt_id<TAB>token` lines as they arrive. If the final
    /// answer is an error, nothing was stored and the lines must be discarded.
    pub async fn create_pt_batch(
        &self,
        args: Value,
        on_lines: impl FnMut(&[u8]),
    ) -> Result<Value, ClientError> {
        let body = serde_json::to_vec(&AdminReq {
            token: self.token.expose().to_owned(),
            args,
        })
        .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let r = self
            .transport
            .request_streaming(kind::PT_BATCH, &body, Duration::from_secs(3600), on_lines)
            .await?;
        serde_json::from_slice(&r.body).map_err(|e| ClientError::Protocol(e.to_string()))
    }

    /// Create a PT; returns `(pt_id, token text)`.
    pub async fn create_pt(&self, args: Value) -> Result<(String, String), ClientError> {
        let v = self.call(kind::PT_CREATE, args).await?;
        let id = v["pt"]["id"].as_str().unwrap_or_default().to_owned();
        let tok = v["token"].as_str().unwrap_or_default().to_owned();
        Ok((id, tok))
    }

    /// Pending operations, newest first.
    pub async fn pending_operations(&self) -> Result<Vec<Value>, ClientError> {
        let v = self
            .call(kind::OP_LIST, json!({ "state": "pending", "limit": 1000 }))
            .await?;
        Ok(v["operations"].as_array().cloned().unwrap_or_default())
    }

    /// Approve an operation, optionally with the verification code and a device id.
    pub async fn approve(
        &self,
        operation_id: &str,
        code: Option<&str>,
        device_id: Option<&str>,
    ) -> Result<Value, ClientError> {
        self.call(
            kind::OP_APPROVE,
            json!({ "id": operation_id, "code": code, "device_id": device_id }),
        )
        .await
    }

    /// Reject an operation.
    pub async fn reject(&self, operation_id: &str, reason: &str) -> Result<Value, ClientError> {
        self.call(
            kind::OP_REJECT,
            json!({ "id": operation_id, "reason": reason }),
        )
        .await
    }

    /// Revoke a PT (and every registration it produced).
    pub async fn revoke_pt(&self, pt_id: &str, reason: &str) -> Result<Value, ClientError> {
        self.call(kind::PT_REVOKE, json!({ "id": pt_id, "reason": reason }))
            .await
    }

    /// Revoke a registration.
    pub async fn revoke_registration(
        &self,
        registration_id: u64,
        reason: &str,
    ) -> Result<Value, ClientError> {
        self.call(
            kind::DEVICE_REVOKE,
            json!({ "registration_id": registration_id, "reason": reason }),
        )
        .await
    }

    /// `INTROSPECT` on the admin endpoint (a service token's request): what a valid RT says
    /// about its device; an RT that is not valid is a server error (10, 11, 12, 13).
    pub async fn introspect(&self, rt: &str) -> Result<IntrospectResp, ClientError> {
        let v = self.call(kind::INTROSPECT, json!({ "rt": rt })).await?;
        serde_json::from_value(v).map_err(|e| ClientError::Protocol(e.to_string()))
    }

    /// `REVOCATIONS`: the registrations revoked after `after` (from the server's newest change
    /// when `None`), oldest first, waiting up to `wait` (at most 30 s) for one when there are
    /// none yet. Returns the registration ids and the cursor to pass next. Needs a service or
    /// admin token.
    pub async fn revocations(
        &self,
        after: Option<u64>,
        wait: Duration,
    ) -> Result<(Vec<u64>, u64), ClientError> {
        let v = self
            .transport
            .call::<_, Value>(
                kind::REVOCATIONS,
                &AdminReq {
                    token: self.token.expose().to_owned(),
                    args: json!({ "after": after, "wait_ms": wait.as_millis() as u64 }),
                },
                wait,
            )
            .await?;
        let bad = || ClientError::Protocol("REVOCATIONS answer without ids or cursor".into());
        let ids = v["revocations"]
            .as_array()
            .ok_or_else(bad)?
            .iter()
            .map(|x| x.as_u64().ok_or_else(bad))
            .collect::<Result<_, _>>()?;
        Ok((ids, v["cursor"].as_u64().ok_or_else(bad)?))
    }

    /// Close the connection.
    pub async fn close(&self) {
        self.transport.close().await;
    }

    /// Close the connection without waiting for it to drain (the runtime finishes it): see
    /// [`Transport::close_now`](super::transport::Transport::close_now).
    pub async fn close_now(&self) {
        self.transport.close_now().await;
    }
}
