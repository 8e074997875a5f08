//! The device client: the device state machine over the device endpoint (docs/architecture.md).
//!
//! Load the stored RT → if valid, use it and refresh at about half its remaining life (with
//! jitter) → if missing, expired or revoked, provision (show the verification code through a
//! hook, long-poll, persist the RT through a hook) → on transient errors retry with exponential
//! backoff and jitter, honouring the server's `retry_after_ms`. All scheduling uses server time
//! (every response carries it), so devices without a real-time clock schedule correctly.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use ring::rand::{SecureRandom, SystemRandom};
use tessera_proto::wire::messages::{
    BeginReq, BeginResp, RefreshResp, RtBody, RtReq, WaitReq, WaitResp,
};
use tessera_proto::wire::{code, kind, DEVICE_ALPN};
use tessera_proto::ProvisioningToken;

use super::transport::{ClientError, ConnectionClosed, Transport, Trust};

/// What the device needs to know.
#[derive(Debug, Clone)]
pub struct DeviceConfig {
    /// Server address.
    pub server: SocketAddr,
    /// Name in the server certificate.
    pub server_name: String,
    /// How to trust the server.
    pub trust: Trust,
    /// The provisioning token from the firmware image.
    pub pt: ProvisioningToken,
    /// Device id to request, if the device chooses its own.
    pub device_id: Option<String>,
    /// Attributes to send (serial number, firmware version…).
    pub attributes: BTreeMap<String, String>,
    /// Per-request timeout (connection and answer). Default 10 s.
    pub request_timeout: Duration,
    /// How long one long-poll is held by the server. Default 25 s.
    pub wait_timeout: Duration,
    /// First retry delay; doubles up to `max_backoff`. Default 1 s.
    pub initial_backoff: Duration,
    /// Largest retry delay. Default 5 min.
    pub max_backoff: Duration,
    /// Faults to inject (test harnesses only; all off by default).
    pub faults: DeviceFaults,
}

/// Faults a test harness can inject into a device. All are off by default; firmware never sets
/// them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeviceFaults {
    /// Send every BEGIN twice, as a network that duplicates packets would; the device goes on
    /// with the second answer (the server must recognise the duplicate by its instance nonce).
    pub duplicate_begin: bool,
    /// Shift the device's local clock by this many milliseconds (positive: the device's clock
    /// runs ahead). Scheduling uses server time, so a skewed clock must not change behaviour.
    pub clock_skew_ms: i64,
}

impl DeviceConfig {
    /// A configuration with default timeouts.
    pub fn new(server: SocketAddr, server_name: &str, trust: Trust, pt: ProvisioningToken) -> Self {
        Self {
            server,
            server_name: server_name.into(),
            trust,
            pt,
            device_id: None,
            attributes: BTreeMap::new(),
            request_timeout: Duration::from_secs(10),
            wait_timeout: Duration::from_secs(25),
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            faults: DeviceFaults::default(),
        }
    }
}

/// Hooks the firmware provides. All have defaults that do nothing.
pub trait DeviceHooks: Send + Sync {
    /// Show the verification code on the device's display.
    fn show_code(&self, _code: &str) {}
    /// Load the stored registration (what `save` stored), if any.
    fn load(&self) -> Option<String> {
        None
    }
    /// Persist the registration (a JSON document holding the RT; treat it as a secret).
    fn save(&self, _stored: &str) {}
    /// A log line (never contains secrets).
    fn log(&self, _line: &str) {}
}

/// Hooks that do nothing.
#[derive(Debug, Default)]
pub struct NoHooks;
impl DeviceHooks for NoHooks {}

/// Why provisioning ended without a registration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    /// The technician rejected the operation.
    #[error("provisioning rejected{}", .0.as_deref().map(|r| format!(": {r}")).unwrap_or_default())]
    Rejected(Option<String>),
    /// The operation expired before a decision.
    #[error("provisioning operation expired")]
    Expired,
    /// The operation was cancelled.
    #[error("provisioning operation cancelled")]
    Cancelled,
    /// The deadline passed.
    #[error("deadline passed")]
    Deadline,
    /// There is no registration to refresh: provision first (`ensure_registered`). Also after
    /// the server refused the registration as revoked, expired or reused, which forgets it.
    #[error("not registered: provision first")]
    NotRegistered,
    /// A permanent error from the server or the client.
    #[error(transparent)]
    Client(#[from] ClientError),
}

#[derive(Debug, Clone)]
struct State {
    current: Option<RtBody>,
    /// server time − local time, milliseconds.
    offset_ms: i64,
    op: Option<PendingOp>,
    refresh_fraction: f64,
}

/// A provisioning operation the device is waiting on: its id and secret (a secret).
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct PendingOp {
    operation_id: String,
    secret: String,
}

impl std::fmt::Debug for PendingOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingOp")
            .field("operation_id", &self.operation_id)
            .finish_non_exhaustive()
    }
}

/// The document the client hands to `save` and reads back from `load`: the registration's
/// fields at the top level (as [`RtBody`]: `rt`, `device_id`, `registration_id`, `generation`,
/// `issued_at`, `expires_at`), the operation it waits on (`pending`), and its instance nonce.
/// Every part is optional; all of it is secret.
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Stored {
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    registration: Option<RtBody>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pending: Option<PendingOp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    instance_nonce: Option<String>,
}

/// Read what `load` returned; `Err` with a reason (no secret) when it is not a document `save`
/// was given.
fn parse_stored(text: &str) -> Result<Stored, String> {
    use serde_json::error::Category;
    use tessera_proto::limits;
    // The category only: serde_json's messages can quote the (secret) input.
    let stored: Stored = serde_json::from_str(text).map_err(|e| {
        let what = match e.classify() {
            Category::Io => "unreadable",
            Category::Syntax => "not JSON",
            Category::Data => "unexpected fields",
            Category::Eof => "truncated",
        };
        format!("not a stored registration ({} bytes: {what})", text.len())
    })?;
    if let Some(n) = &stored.instance_nonce {
        if !(limits::NONCE_MIN..=limits::NONCE_MAX).contains(&n.len()) {
            return Err("stored instance nonce has the wrong length".into());
        }
    }
    Ok(stored)
}

/// The device client. Async; see [`BlockingDeviceClient`] for blocking callers.
pub struct DeviceClient {
    cfg: DeviceConfig,
    hooks: Box<dyn DeviceHooks>,
    transport: Transport,
    /// The instance nonce (32 hex digits of 128 random bits), kept across reboots through
    /// `save`/`load` so that a device that restarts mid-provisioning resumes its operation.
    nonce: zeroize::Zeroizing<String>,
    state: Mutex<State>,
    rng: SystemRandom,
}

impl std::fmt::Debug for DeviceClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceClient")
            .field("server", &self.cfg.server)
            .finish_non_exhaustive()
    }
}

fn system_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl DeviceClient {
    /// A client; nothing is sent until a method is called.
    pub fn new(cfg: DeviceConfig, hooks: Box<dyn DeviceHooks>) -> Result<Self, ClientError> {
        let transport = Transport::new(
            cfg.server,
            &cfg.server_name,
            &cfg.trust,
            DEVICE_ALPN,
            cfg.request_timeout,
        )?;
        let rng = SystemRandom::new();
        let mut n = [0u8; 16];
        rng.fill(&mut n)
            .map_err(|_| ClientError::Config("random".into()))?;
        let jitter = f64::from(u32::from_le_bytes([n[0], n[1], n[2], n[3]])) / f64::from(u32::MAX);
        let mut nonce = [0u8; 16];
        rng.fill(&mut nonce)
            .map_err(|_| ClientError::Config("random".into()))?;
        let stored = match hooks.load().map(zeroize::Zeroizing::new) {
            None => Stored::default(),
            Some(text) => parse_stored(&text).unwrap_or_else(|why| {
                hooks.log(&format!("ignoring the stored registration: {why}"));
                Stored::default()
            }),
        };
        if let Some(op) = &stored.pending {
            hooks.log(&format!(
                "resuming provisioning operation {}",
                op.operation_id
            ));
        }
        let nonce = zeroize::Zeroizing::new(
            stored
                .instance_nonce
                .clone()
                .unwrap_or_else(|| base16ct::lower::encode_string(&nonce)),
        );
        Ok(Self {
            cfg,
            hooks,
            transport,
            nonce,
            state: Mutex::new(State {
                current: stored.registration,
                offset_ms: 0,
                op: stored.pending,
                refresh_fraction: 0.45 + 0.1 * jitter,
            }),
            rng,
        })
    }

    fn st(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The device's local clock (the system clock, shifted by an injected skew).
    fn local_ms(&self) -> i64 {
        system_ms().saturating_add(self.cfg.faults.clock_skew_ms)
    }

    fn server_now_secs(&self) -> i64 {
        (self.local_ms() + self.st().offset_ms) / 1000
    }

    fn note_time(&self, server_time_ms: u64) {
        self.st().offset_ms = server_time_ms as i64 - self.local_ms();
    }

    /// The current registration, if any (the RT inside is a secret).
    pub fn current(&self) -> Option<RtBody> {
        self.st().current.clone()
    }

    /// The id of the provisioning operation this device is waiting on, if any (a technician
    /// approves it by this id).
    pub fn pending_operation(&self) -> Option<String> {
        self.st().op.as_ref().map(|op| op.operation_id.clone())
    }

    /// When the next refresh is due, as local Unix seconds; `None` without a registration.
    pub fn next_refresh_at(&self) -> Option<i64> {
        let st = self.st();
        let c = st.current.as_ref()?;
        let life = c.expires_at.saturating_sub(c.issued_at) as f64;
        let due_server = c.issued_at as f64 + life * st.refresh_fraction;
        Some(due_server as i64 - st.offset_ms / 1000)
    }

    /// Hand the current state (registration, pending operation, nonce) to `save`.
    fn persist(&self) {
        let doc = {
            let st = self.st();
            Stored {
                registration: st.current.clone(),
                pending: st.op.clone(),
                instance_nonce: Some(self.nonce.to_string()),
            }
        };
        if let Ok(s) = serde_json::to_string(&doc).map(zeroize::Zeroizing::new) {
            self.hooks.save(&s);
        }
    }

    fn store(&self, body: RtBody) {
        self.hooks.log(&format!(
            "registered as {} (registration {}, generation {})",
            body.device_id, body.registration_id, body.generation
        ));
        {
            let mut st = self.st();
            st.current = Some(body);
            st.op = None;
        }
        self.persist();
    }

    /// Drop the registration and any pending operation, in memory and in storage (so a reboot
    /// does not bring back a revoked RT).
    fn forget(&self) {
        {
            let mut st = self.st();
            st.current = None;
            st.op = None;
        }
        self.persist();
    }

    /// Drop the pending operation, in memory and in storage.
    fn settle_operation(&self) {
        self.st().op = None;
        self.persist();
    }

    async fn backoff(
        &self,
        attempt: u32,
        hint_ms: Option<u64>,
        deadline: tokio::time::Instant,
    ) -> Result<(), DeviceError> {
        let base = self.cfg.initial_backoff.as_millis() as u64;
        let exp = base
            .saturating_mul(1u64 << attempt.min(16))
            .min(self.cfg.max_backoff.as_millis() as u64);
        let mut b = [0u8; 4];
        let _ = self.rng.fill(&mut b);
        // Full jitter, but never sooner than the server asked.
        let jittered = (exp as f64
            * (0.5 + 0.5 * f64::from(u32::from_le_bytes(b)) / f64::from(u32::MAX)))
            as u64;
        let delay = Duration::from_millis(jittered.max(hint_ms.unwrap_or(0)));
        if tokio::time::Instant::now() + delay > deadline {
            return Err(DeviceError::Deadline);
        }
        tokio::time::sleep(delay).await;
        Ok(())
    }

    /// Make sure the device holds a valid RT: reuse the stored one, refresh it when due, or
    /// provision. Returns the registration.
    pub async fn ensure_registered(&self, timeout: Duration) -> Result<RtBody, DeviceError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut attempt = 0;
        loop {
            let current = self.current();
            let result = match current {
                Some(c) if (c.expires_at as i64) > self.server_now_secs() + 5 => {
                    if self
                        .next_refresh_at()
                        .is_some_and(|due| due <= self.local_ms() / 1000)
                    {
                        match self.refresh().await {
                            Ok(b) => Ok(b),
                            // Transient trouble: the current RT is still valid, keep using it.
                            Err(DeviceError::Client(e)) if e.is_transient() => return Ok(c),
                            Err(e) => Err(e),
                        }
                    } else {
                        return Ok(c);
                    }
                }
                Some(_) => {
                    self.hooks
                        .log("stored registration expired; provisioning again");
                    self.forget();
                    continue;
                }
                None => self.provision(deadline).await,
            };
            match result {
                Ok(b) => return Ok(b),
                Err(DeviceError::Client(e)) if e.is_transient() => {
                    let hint = match &e {
                        ClientError::Server(b) => b.retry_after_ms,
                        _ => None,
                    };
                    self.hooks
                        .log(&format!("transient error, backing off: {e}"));
                    self.backoff(attempt, hint, deadline).await?;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Refresh the current RT now. On revocation, reuse detection or expiry the registration is
    /// forgotten (the next [`ensure_registered`](Self::ensure_registered) provisions again).
    pub async fn refresh(&self) -> Result<RtBody, DeviceError> {
        let Some(c) = self.current() else {
            return Err(DeviceError::NotRegistered);
        };
        let r: Result<RefreshResp, ClientError> = self
            .transport
            .call(kind::REFRESH, &RtReq { rt: c.rt.clone() }, Duration::ZERO)
            .await;
        match r {
            Ok(r) => {
                self.note_time(r.server_time_ms);
                self.store(r.registration.clone());
                Ok(r.registration)
            }
            Err(e) => {
                if matches!(
                    e.code(),
                    Some(
                        code::REVOKED
                            | code::SUPERSEDED
                            | code::ROTATION_REUSE
                            | code::EXPIRED
                            | code::UNAUTHENTICATED
                    )
                ) {
                    self.hooks.log(&format!(
                        "registration no longer valid ({e}); will provision again"
                    ));
                    self.forget();
                }
                Err(e.into())
            }
        }
    }

    /// Fault injection: send a REFRESH for the current RT and throw the answer away, as if the
    /// response were lost on the way back. The device keeps its current RT, so its next
    /// [`refresh`](Self::refresh) presents the same generation again and must get the same
    /// successor (the server's retry grace).
    pub async fn refresh_losing_response(&self) -> Result<(), DeviceError> {
        let Some(c) = self.current() else {
            return Err(DeviceError::NotRegistered);
        };
        let _lost: RefreshResp = self
            .transport
            .call(kind::REFRESH, &RtReq { rt: c.rt.clone() }, Duration::ZERO)
            .await?;
        self.hooks.log("refresh answer dropped (fault injection)");
        Ok(())
    }

    async fn provision(&self, deadline: tokio::time::Instant) -> Result<RtBody, DeviceError> {
        let op = self.st().op.clone();
        let (
            PendingOp {
                operation_id: id,
                secret,
            },
            resumed,
        ) = match op {
            Some(op) => (op, true),
            None => {
                let req = BeginReq {
                    pt: self.cfg.pt.expose().to_owned(),
                    device_id: self.cfg.device_id.clone(),
                    attributes: self.cfg.attributes.clone(),
                    instance_nonce: self.nonce.to_string(),
                };
                if self.cfg.faults.duplicate_begin {
                    let _first: BeginResp = self
                        .transport
                        .call(kind::BEGIN, &req, Duration::ZERO)
                        .await?;
                }
                let r: BeginResp = self
                    .transport
                    .call(kind::BEGIN, &req, Duration::ZERO)
                    .await?;
                self.note_time(r.server_time_ms);
                if let Some(code) = &r.verification_code {
                    self.hooks.show_code(code);
                }
                self.hooks.log(&format!(
                    "provisioning operation {} {}",
                    r.operation_id, r.state
                ));
                let op = PendingOp {
                    operation_id: r.operation_id,
                    secret: r.secret,
                };
                self.st().op = Some(op.clone());
                // Kept before waiting: a device that reboots now resumes this operation.
                self.persist();
                (op, false)
            }
        };
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Err(DeviceError::Deadline);
            }
            let hold = self.cfg.wait_timeout.min(left);
            let req = WaitReq {
                operation_id: id.clone(),
                secret: secret.clone(),
                timeout_ms: hold.as_millis() as u64,
            };
            let r: WaitResp = match self.transport.call(kind::WAIT, &req, hold).await {
                Ok(r) => r,
                Err(e)
                    if resumed
                        && matches!(e.code(), Some(code::UNAUTHENTICATED | code::NOT_FOUND)) =>
                {
                    // The stored operation is unknown to this server (another server, or a
                    // restored store): begin a new one.
                    self.hooks.log(&format!(
                        "provisioning operation {id} is unknown to the server ({e}); beginning again"
                    ));
                    self.settle_operation();
                    return Box::pin(self.provision(deadline)).await;
                }
                Err(e) => return Err(e.into()),
            };
            self.note_time(r.server_time_ms);
            match r.state.as_str() {
                "pending" => continue,
                "provisioned" => {
                    let body = r.registration.ok_or_else(|| {
                        ClientError::Protocol("provisioned without registration".into())
                    })?;
                    self.store(body.clone());
                    return Ok(body);
                }
                other => {
                    self.settle_operation();
                    return Err(match other {
                        "rejected" => DeviceError::Rejected(r.reason),
                        "expired" => DeviceError::Expired,
                        _ => DeviceError::Cancelled,
                    });
                }
            }
        }
    }

    /// Wait until the device's current connection ends (the server closes it when the
    /// registration is revoked, or when it shuts down), and say how; `None` at once when the
    /// client holds no connection. The next request connects again.
    pub async fn connection_closed(&self) -> Option<ConnectionClosed> {
        self.transport.closed().await
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

/// A [`DeviceClient`] for blocking code (firmware threads, the C ABI, Python): it owns a small
/// Tokio runtime.
#[derive(Debug)]
pub struct BlockingDeviceClient {
    // Field order matters: the client (its QUIC endpoint and connection) is dropped before the
    // runtime that drives them.
    inner: DeviceClient,
    rt: tokio::runtime::Runtime,
}

impl BlockingDeviceClient {
    /// See [`DeviceClient::new`].
    pub fn new(cfg: DeviceConfig, hooks: Box<dyn DeviceHooks>) -> Result<Self, ClientError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ClientError::Config(e.to_string()))?;
        let inner = {
            let _g = rt.enter();
            DeviceClient::new(cfg, hooks)?
        };
        Ok(Self { inner, rt })
    }

    /// See [`DeviceClient::ensure_registered`].
    pub fn ensure_registered(&self, timeout: Duration) -> Result<RtBody, DeviceError> {
        self.rt.block_on(self.inner.ensure_registered(timeout))
    }

    /// See [`DeviceClient::refresh`].
    pub fn refresh(&self) -> Result<RtBody, DeviceError> {
        self.rt.block_on(self.inner.refresh())
    }

    /// See [`DeviceClient::refresh_losing_response`].
    pub fn refresh_losing_response(&self) -> Result<(), DeviceError> {
        self.rt.block_on(self.inner.refresh_losing_response())
    }

    /// See [`DeviceClient::current`].
    pub fn current(&self) -> Option<RtBody> {
        self.inner.current()
    }

    /// See [`DeviceClient::next_refresh_at`].
    pub fn next_refresh_at(&self) -> Option<i64> {
        self.inner.next_refresh_at()
    }
}

impl Drop for BlockingDeviceClient {
    fn drop(&mut self) {
        // Close the connection and let the endpoint finish, so no task is left behind in the
        // runtime (firmware links this through the C ABI and checks for leaks).
        self.rt.block_on(async {
            self.inner.transport.disconnect().await;
            let _ =
                tokio::time::timeout(Duration::from_millis(200), self.inner.transport.wait_idle())
                    .await;
        });
    }
}
