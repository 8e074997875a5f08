//! The admin client: every admin request over the admin endpoint, typed.
//!
//! [`AdminClient::send`] takes any request type of `tessera_proto::admin::requests` and returns
//! its answer type, so a field the server renames is a compile error here and in every caller.
//! [`AdminClient::call`] passes raw JSON through, for protocol tests and for bindings whose own
//! API is JSON (the Python package).

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tessera_proto::admin::requests::{
    Introspect, OpApprove, OpList, OpReject, PtArgs, PtBatch, PtCreate, PtRevoke, Revocations,
};
use tessera_proto::admin::{
    AdminCall, AdminRequest, Approved, Done, OperationRecord, PtBatchDone, PtCreated, Revoked,
};
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

    /// Give up connecting after `d` with an error naming the address (the request timeout
    /// otherwise).
    pub fn set_connect_timeout(&mut self, d: Duration) {
        self.transport.set_connect_timeout(d);
    }

    /// Make an admin request; returns its answer.
    pub async fn send<R: AdminRequest>(&self, req: &R) -> Result<R::Answer, ClientError> {
        self.send_waiting(req, Duration::ZERO).await
    }

    /// As [`send`](Self::send), for a request that may wait up to `wait` on the server (a
    /// long poll) before it answers.
    pub async fn send_waiting<R: AdminRequest>(
        &self,
        req: &R,
        wait: Duration,
    ) -> Result<R::Answer, ClientError> {
        let call = AdminCall {
            token: self.token.expose(),
            args: req,
        };
        self.transport.call(R::KIND, &call, wait).await
    }

    /// Make any admin request by kind with raw JSON arguments; returns the raw JSON answer.
    /// For tests of the protocol itself and for bindings that pass JSON through; Rust callers
    /// use [`send`](Self::send).
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
        req: &PtBatch,
        on_lines: impl FnMut(&[u8]),
    ) -> Result<PtBatchDone, ClientError> {
        let body = zeroize::Zeroizing::new(
            serde_json::to_vec(&AdminCall {
                token: self.token.expose(),
                args: req,
            })
            .map_err(|e| ClientError::Protocol(e.to_string()))?,
        );
        let r = self
            .transport
            .request_streaming(kind::PT_BATCH, &body, Duration::from_secs(3600), on_lines)
            .await?;
        serde_json::from_slice(&r.body).map_err(|e| ClientError::Protocol(e.to_string()))
    }

    /// Create a PT: its record and its text (shown once).
    pub async fn create_pt(&self, args: &PtArgs) -> Result<PtCreated, ClientError> {
        self.send(&PtCreate(args.clone())).await
    }

    /// Pending operations, newest first (the first 1,000).
    pub async fn pending_operations(&self) -> Result<Vec<OperationRecord>, ClientError> {
        let page = self
            .send(&OpList {
                state: Some("pending".into()),
                limit: 1000,
                ..OpList::default()
            })
            .await?;
        Ok(page.operations)
    }

    /// Approve an operation, optionally with the verification code and a device id.
    pub async fn approve(
        &self,
        operation_id: &str,
        code: Option<&str>,
        device_id: Option<&str>,
    ) -> Result<Approved, ClientError> {
        self.send(&OpApprove {
            id: operation_id.into(),
            code: code.map(str::to_owned),
            device_id: device_id.map(str::to_owned),
            ..OpApprove::default()
        })
        .await
    }

    /// Reject an operation.
    pub async fn reject(&self, operation_id: &str, reason: &str) -> Result<Done, ClientError> {
        self.send(&OpReject {
            id: operation_id.into(),
            reason: Some(reason.into()),
        })
        .await
    }

    /// Revoke a PT (and every registration it produced).
    pub async fn revoke_pt(&self, pt_id: &str, reason: &str) -> Result<Revoked, ClientError> {
        self.send(&PtRevoke {
            id: pt_id.into(),
            reason: Some(reason.into()),
        })
        .await
    }

    /// Revoke a registration.
    pub async fn revoke_registration(
        &self,
        registration_id: u64,
        reason: &str,
    ) -> Result<Revoked, ClientError> {
        self.send(&tessera_proto::admin::requests::DeviceRevoke {
            registration_id: Some(registration_id),
            reason: Some(reason.into()),
            ..Default::default()
        })
        .await
    }

    /// `INTROSPECT` on the admin endpoint (a service token's request): what a valid RT says
    /// about its device; an RT that is not valid is a server error (10, 11, 12, 13).
    pub async fn introspect(&self, rt: &str) -> Result<IntrospectResp, ClientError> {
        self.send(&Introspect { rt: rt.into() }).await
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
        self.revocation_page(after, None, wait).await
    }

    /// As [`revocations`](Self::revocations), at most `limit` of them (1–4,096; absent: the
    /// server's default, 1,000): a page as long as the limit may have more behind it.
    pub async fn revocation_page(
        &self,
        after: Option<u64>,
        limit: Option<usize>,
        wait: Duration,
    ) -> Result<(Vec<u64>, u64), ClientError> {
        let req = Revocations {
            after,
            limit,
            wait_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
        };
        let page = self.send_waiting(&req, wait).await?;
        Ok((page.revocations, page.cursor))
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
