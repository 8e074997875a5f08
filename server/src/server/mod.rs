//! The QUIC server: a device endpoint and an admin endpoint over one engine.

mod admin;
pub mod config;
mod device;
mod http;
pub mod registry;
mod reply;
mod service;
mod tickets;
pub mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use quinn::{Endpoint, IdleTimeout, TransportConfig, VarInt};
use tessera_engine::{Actor, AdminRole, AdminToken, Engine, Timestamp};
use tokio::task::JoinSet;

pub use config::ServerConfig;
use registry::{Connections, Observer, Waiters};

use tessera_proto::wire::{self, code, ErrorBody};

/// The lines `tessera serve` prints about where it listens, and how tools read them back.
pub mod banner {
    use std::net::SocketAddr;

    /// Start of the line naming the device endpoint.
    pub const DEVICE: &str = "tessera serving devices on";
    /// Start of the line naming the admin endpoint.
    pub const ADMIN: &str = "admin endpoint on";
    /// Start of the line giving the console's URL.
    pub const CONSOLE: &str = "console:";

    /// Arguments that make `tessera serve` listen on ephemeral loopback ports; tools and tests
    /// read the chosen addresses back from the lines above.
    pub const EPHEMERAL_SERVE: [&str; 7] = [
        "serve",
        "--device-addr",
        "127.0.0.1:0",
        "--admin-addr",
        "127.0.0.1:0",
        "--console-addr",
        "127.0.0.1:0",
    ];

    /// The address on `line` if it starts with `prefix`.
    pub fn address(line: &str, prefix: &str) -> Option<SocketAddr> {
        line.strip_prefix(prefix)?
            .split_whitespace()
            .find_map(|w| w.parse().ok())
    }
}

/// QUIC application close code: the registration whose RT this connection used was revoked.
pub const CLOSE_REVOKED: u32 = 0x10;
/// QUIC application close code: the server is shutting down.
pub const CLOSE_SHUTDOWN: u32 = 0x11;
/// QUIC application close code: wrong ALPN.
pub const CLOSE_PROTOCOL: u32 = 0x12;

/// Errors starting the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The engine could not open.
    #[error("engine: {0}")]
    Engine(#[from] tessera_engine::Error),
    /// TLS setup failed.
    #[error("tls: {0}")]
    Tls(#[from] tls::TlsError),
    /// A socket could not be bound or configured.
    #[error("{0}")]
    Io(String),
}

/// The engine over the store the configuration names: PostgreSQL at `url`, or the SQLite file
/// in `dir`.
fn open_engine(
    dir: &std::path::Path,
    store: Option<(&str, usize)>,
    keeper: impl tessera_engine::KeyKeeper + 'static,
    config: tessera_engine::EngineConfig,
    now: tessera_engine::Timestamp,
) -> Result<Engine, tessera_engine::Error> {
    match store {
        Some((url, writers)) => {
            let mut options = tessera_engine::store::PostgresOptions::default();
            options.writers(writers);
            Engine::open_postgres(url, &options, dir, keeper, config, now)
        }
        None => Engine::open_dir_with(dir, keeper, config, now),
    }
}

/// Which endpoint a connection arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Device,
    Admin,
}

impl Role {
    fn alpn(self) -> &'static [u8] {
        match self {
            Role::Device => wire::DEVICE_ALPN,
            Role::Admin => wire::ADMIN_ALPN,
        }
    }
}

pub(crate) struct Shared {
    pub(crate) engine: Engine,
    pub(crate) config: ServerConfig,
    pub(crate) waiters: Arc<Waiters>,
    pub(crate) connections: Arc<Connections>,
    /// Woken whenever a revocation has been committed (REVOCATIONS long polls wait on it).
    pub(crate) revocations: Arc<tokio::sync::Notify>,
    /// REVOCATIONS long polls waiting now.
    pub(crate) revocation_polls: AtomicUsize,
    /// Bumped on every operation change and revocation (the console's live updates).
    pub(crate) changes: Arc<tokio::sync::watch::Sender<u64>>,
    pub(crate) open_connections: AtomicUsize,
    pub(crate) handshakes: AtomicUsize,
    pub(crate) in_flight: AtomicUsize,
    pub(crate) retries_sent: AtomicUsize,
    /// Seals the device endpoint's session tickets (and counts resumed handshakes).
    pub(crate) device_tickets: Arc<tickets::RootTicketer>,
    pub(crate) shutting_down: AtomicBool,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) revoked_reports: std::sync::Mutex<std::collections::HashMap<u64, Timestamp>>,
    pub(crate) outbox: Arc<reply::Outbox>,
    /// WAIT per source address, INTROSPECT per source address, admin requests per token.
    pub(crate) limits: Limits,
}

/// The server's own rate limits (the engine limits BEGIN and REFRESH itself).
#[derive(Debug)]
pub(crate) struct Limits {
    pub(crate) wait: tessera_engine::RateLimiter<String>,
    pub(crate) introspect: tessera_engine::RateLimiter<String>,
    pub(crate) admin: tessera_engine::RateLimiter<tessera_engine::AdminTokenId>,
}

impl Limits {
    fn new(c: &ServerConfig) -> Self {
        use tessera_engine::{Rate, RateLimiter};
        Self {
            wait: RateLimiter::new(Rate::new(c.wait_burst, c.wait_per_minute)),
            introspect: RateLimiter::new(Rate::new(c.introspect_burst, c.introspect_per_minute)),
            admin: RateLimiter::new(Rate::new(c.admin_burst, c.admin_per_minute)),
        }
    }
}

/// Take one token from `limiter` for `key`, or the rate-limited error with its retry hint.
pub(crate) fn limit<K: std::hash::Hash + Eq + Clone>(
    shared: &Shared,
    limiter: &tessera_engine::RateLimiter<K>,
    key: &K,
) -> Result<(), ErrorBody> {
    limiter
        .check(key, shared.now())
        .map_err(|retry_after| engine_err(&tessera_engine::Error::RateLimited { retry_after }))
}

/// Where the server gets the time. The engine never reads a clock; the server asks this one,
/// so end-to-end tests can move time forward instead of waiting.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> Timestamp;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now_from_system_clock()
    }
}

/// A clock that starts at the system time and moves only when told to (for tests).
#[derive(Debug)]
pub struct ManualClock(std::sync::atomic::AtomicU64);

impl ManualClock {
    /// Starts at the current system time.
    pub fn new() -> Arc<Self> {
        Arc::new(Self(std::sync::atomic::AtomicU64::new(
            Timestamp::now_from_system_clock().unix_millis(),
        )))
    }

    /// Move forward.
    pub fn advance(&self, d: Duration) {
        self.0.fetch_add(d.as_millis() as u64, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_unix_millis(self.0.load(Ordering::SeqCst))
    }
}

/// System time, for error bodies and logs (request handling uses the server's [`Clock`]).
pub(crate) fn now() -> Timestamp {
    Timestamp::now_from_system_clock()
}

impl Shared {
    pub(crate) fn now(&self) -> Timestamp {
        self.clock.now()
    }
}

/// A running server. Drop it or call [`Server::shutdown`] to stop.
pub struct Server {
    shared: Arc<Shared>,
    device: Endpoint,
    admin: Endpoint,
    tasks: JoinSet<()>,
    files: tls::TlsFiles,
    ca_fingerprint: String,
    first_admin_token: Option<AdminToken>,
    console_addr: Option<SocketAddr>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("device_addr", &self.device_addr())
            .field("admin_addr", &self.admin_addr())
            .finish_non_exhaustive()
    }
}

fn transport(config: &ServerConfig, role: Role) -> TransportConfig {
    let mut t = TransportConfig::default();
    let streams = match role {
        Role::Device => config.max_streams_per_connection,
        Role::Admin => 64,
    };
    t.max_concurrent_bidi_streams(VarInt::from_u32(streams))
        .max_concurrent_uni_streams(VarInt::from_u32(0))
        .stream_receive_window(VarInt::from_u32(match role {
            Role::Device => 64 * 1024,
            Role::Admin => 2 * 1024 * 1024,
        }))
        .receive_window(VarInt::from_u32(match role {
            Role::Device => 256 * 1024,
            Role::Admin => 8 * 1024 * 1024,
        }))
        .send_window(8 * 1024 * 1024)
        .max_idle_timeout(IdleTimeout::try_from(Duration::from_millis(config.idle_timeout_ms)).ok())
        .mtu_discovery_config(None);
    t
}

fn bind(addr: SocketAddr, buffer: usize) -> Result<std::net::UdpSocket, ServerError> {
    let domain = if addr.is_ipv4() {
        socket2::Domain::IPV4
    } else {
        socket2::Domain::IPV6
    };
    let s = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))
        .map_err(|e| ServerError::Io(format!("socket: {e}")))?;
    // The kernel may cap these (net.core.rmem_max); what it grants is logged.
    let _ = s.set_recv_buffer_size(buffer);
    let _ = s.set_send_buffer_size(buffer);
    s.bind(&addr.into())
        .map_err(|e| ServerError::Io(format!("bind {addr}: {e}")))?;
    tracing::debug!(%addr, recv_buffer = s.recv_buffer_size().unwrap_or(0), "bound UDP socket");
    Ok(s.into())
}

fn endpoint(
    config: &ServerConfig,
    files: &tls::TlsFiles,
    role: Role,
    tickets: Arc<tickets::RootTicketer>,
) -> Result<Endpoint, ServerError> {
    let addr = match role {
        Role::Device => config.device_addr,
        Role::Admin => config.admin_addr,
    };
    let crypto = tls::server_config(files, role.alpn(), Some(tickets))?;
    let quic = quinn::crypto::rustls::QuicServerConfig::try_from(crypto)
        .map_err(|e| ServerError::Io(format!("quic tls config: {e}")))?;
    let mut sc = quinn::ServerConfig::with_crypto(Arc::new(quic));
    sc.transport_config(Arc::new(transport(config, role)));
    sc.migration(false);
    sc.max_incoming(config.max_connections.min(65_536));
    let socket = bind(addr, config.socket_buffer_bytes)?;
    Endpoint::new(
        quinn::EndpointConfig::default(),
        Some(sc),
        socket,
        Arc::new(quinn::TokioRuntime),
    )
    .map_err(|e| ServerError::Io(format!("endpoint {addr}: {e}")))
}

impl Server {
    /// Open the engine in the configured data directory, create TLS material and the first
    /// admin token if needed, and start both endpoints. Must be called inside a Tokio runtime.
    pub async fn start(config: ServerConfig) -> Result<Server, ServerError> {
        Self::start_with_clock(config, Arc::new(SystemClock)).await
    }

    /// [`Server::start`] with an injected clock (tests move time with a [`ManualClock`]).
    pub async fn start_with_clock(
        config: ServerConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Server, ServerError> {
        let dir = config.data_dir.clone();
        let engine_cfg = config.engine.engine_config();
        let c = clock.clone();
        let hsm = config.keys.pkcs11()?;
        let writers = config.store.writers;
        let store_url = config
            .store
            .postgres()
            .map_err(ServerError::Io)?
            .map(|u| zeroize::Zeroizing::new(u.to_owned()));
        let (engine, first_admin_token) =
            tokio::task::spawn_blocking(move || -> Result<_, ServerError> {
                let now = c.now();
                let engine = match hsm {
                    // No fallback: if the HSM cannot be opened, the server does not start.
                    Some(cfg) => open_engine(
                        &dir,
                        store_url.as_ref().map(|u| (u.as_str(), writers)),
                        tessera_engine::keys::Pkcs11Keeper::open(&cfg)?,
                        engine_cfg,
                        now,
                    )?,
                    None => {
                        std::fs::create_dir_all(&dir).map_err(|e| {
                            ServerError::Io(format!("cannot create {}: {e}", dir.display()))
                        })?;
                        let keeper = tessera_engine::SoftwareKeeper::open_or_create(&dir)?;
                        open_engine(
                            &dir,
                            store_url.as_ref().map(|u| (u.as_str(), writers)),
                            keeper,
                            engine_cfg,
                            now,
                        )?
                    }
                };
                let first = if engine.list_admin_tokens()?.is_empty() {
                    let (_, tok) = engine.create_admin_token(
                        "admin",
                        AdminRole::Admin,
                        &Actor::system(),
                        c.now(),
                    )?;
                    write_admin_token_file(&dir, &tok)?;
                    Some(tok)
                } else {
                    None
                };
                Ok((engine, first))
            })
            .await
            .map_err(|e| ServerError::Io(format!("start: {e}")))??;
        let files = tls::ensure_certificates(&config.data_dir, &config.server_names)?;
        let ca = tls::load_chain(&files.ca_cert)?;
        let ca_fingerprint = tls::fingerprint(&ca[0]);
        let waiters = Arc::new(Waiters::default());
        let connections = Arc::new(Connections::default());
        let revocations = Arc::new(tokio::sync::Notify::new());
        let changes = Arc::new(tokio::sync::watch::Sender::new(0u64));
        engine.set_observer(Arc::new(Observer {
            waiters: waiters.clone(),
            connections: connections.clone(),
            revocations: revocations.clone(),
            changes: changes.clone(),
        }));
        let device_tickets = Arc::new(tickets::RootTicketer::new(
            engine.clone(),
            Role::Device.alpn(),
        ));
        let admin_tickets = Arc::new(tickets::RootTicketer::new(
            engine.clone(),
            Role::Admin.alpn(),
        ));
        let device = endpoint(&config, &files, Role::Device, device_tickets.clone())?;
        let admin = endpoint(&config, &files, Role::Admin, admin_tickets)?;
        let console = match config.console_addr {
            Some(addr) => Some((http::bind(addr).await?, http::tls_config(&files)?)),
            None => None,
        };
        let console_addr = console.as_ref().and_then(|(l, _)| l.local_addr().ok());
        let limits = Limits::new(&config);
        let shared = Arc::new(Shared {
            engine,
            config,
            waiters,
            connections,
            revocations,
            changes,
            revocation_polls: AtomicUsize::new(0),
            open_connections: AtomicUsize::new(0),
            handshakes: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            retries_sent: AtomicUsize::new(0),
            device_tickets,
            shutting_down: AtomicBool::new(false),
            clock,
            revoked_reports: Default::default(),
            outbox: Default::default(),
            limits,
        });
        let mut tasks = JoinSet::new();
        tasks.spawn(shared.outbox.clone().run());
        tasks.spawn(accept_loop(device.clone(), shared.clone(), Role::Device));
        tasks.spawn(accept_loop(admin.clone(), shared.clone(), Role::Admin));
        tasks.spawn(housekeeping(shared.clone()));
        tasks.spawn(feed_metrics(shared.clone()));
        if let Some((listener, tls)) = console {
            tasks.spawn(http::serve(listener, tls, shared.clone()));
        }
        tracing::info!(device = %device.local_addr().map(|a| a.to_string()).unwrap_or_default(),
                       admin = %admin.local_addr().map(|a| a.to_string()).unwrap_or_default(),
                       "tessera server started");
        Ok(Server {
            shared,
            device,
            admin,
            tasks,
            files,
            ca_fingerprint,
            first_admin_token,
            console_addr,
        })
    }

    /// What and where the store is (never a password).
    pub fn store_description(&self) -> String {
        self.shared.engine.store_description()
    }

    /// Where the console and the HTTPS admin API listen, if they do.
    pub fn console_addr(&self) -> Option<SocketAddr> {
        self.console_addr
    }

    /// Where devices connect.
    pub fn device_addr(&self) -> SocketAddr {
        self.device
            .local_addr()
            .unwrap_or(self.shared.config.device_addr)
    }

    /// Where operators connect.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
            .local_addr()
            .unwrap_or(self.shared.config.admin_addr)
    }

    /// The CA certificate devices trust.
    pub fn ca_cert_path(&self) -> PathBuf {
        self.files.ca_cert.clone()
    }

    /// SHA-256 fingerprint of the CA certificate (for pinning).
    pub fn ca_fingerprint(&self) -> &str {
        &self.ca_fingerprint
    }

    /// The first admin token, on the start that created it (also in `admin.token`).
    pub fn first_admin_token(&self) -> Option<&AdminToken> {
        self.first_admin_token.as_ref()
    }

    /// The engine (for in-process tests and tools).
    pub fn engine(&self) -> &Engine {
        &self.shared.engine
    }

    /// QUIC Retry packets sent (address validation under load).
    pub fn retries_sent(&self) -> usize {
        self.shared.retries_sent.load(Ordering::Relaxed)
    }

    /// Open device connections.
    pub fn open_connections(&self) -> usize {
        self.shared.open_connections.load(Ordering::Relaxed)
    }

    /// Registrations whose connections the server tracks (to close them on revocation). Falls
    /// back to zero once every connection that used them has ended.
    pub fn tracked_registrations(&self) -> usize {
        self.shared.connections.tracked_registrations()
    }

    /// Stop accepting, let requests in flight finish (up to `grace`), close every connection,
    /// and stop. Long polls in flight are answered when they end or cut off after `grace`.
    pub async fn shutdown(mut self, grace: Duration) {
        self.shared.shutting_down.store(true, Ordering::SeqCst);
        self.shared.revocations.notify_waiters();
        self.device.set_server_config(None);
        self.admin.set_server_config(None);
        let drain = async {
            while self.shared.in_flight.load(Ordering::Relaxed) > 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        let _ = tokio::time::timeout(grace, drain).await;
        for ep in [&self.device, &self.admin] {
            ep.close(VarInt::from_u32(CLOSE_SHUTDOWN), b"server shutting down");
        }
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
        for ep in [&self.device, &self.admin] {
            let _ = tokio::time::timeout(Duration::from_secs(2), ep.wait_idle()).await;
        }
        tracing::info!("tessera server stopped");
    }
}

fn write_admin_token_file(dir: &std::path::Path, tok: &AdminToken) -> Result<(), ServerError> {
    use std::io::Write;
    let path = dir.join("admin.token");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts
        .open(&path)
        .map_err(|e| ServerError::Io(format!("{}: {e}", path.display())))?;
    f.write_all(tok.expose().as_bytes())
        .and_then(|()| f.write_all(b"\n"))
        .and_then(|()| f.sync_all())
        .map_err(|e| ServerError::Io(format!("{}: {e}", path.display())))
}

async fn housekeeping(shared: Arc<Shared>) {
    let period = Duration::from_millis(shared.config.prune_interval_ms.max(100));
    loop {
        tokio::time::sleep(period).await;
        let engine = shared.engine.clone();
        let t = shared.clock.now();
        match tokio::task::spawn_blocking(move || engine.prune(t)).await {
            Ok(Ok(r)) if r != Default::default() => tracing::info!(?r, "housekeeping"),
            Ok(Err(e)) => tracing::warn!(error = %e, "housekeeping failed"),
            _ => {}
        }
    }
}

/// With several nodes on one store: export where this node is in the change feed, every
/// second.
async fn feed_metrics(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let Some(f) = shared.engine.feed_status() else {
            return;
        };
        metrics::gauge!("tessera_feed_position").set(f.position as f64);
        metrics::gauge!("tessera_feed_lag_changes").set(f.lag as f64);
        metrics::gauge!("tessera_feed_since_caught_up_seconds").set(
            f.since_caught_up_ms
                .map_or(f64::INFINITY, |ms| ms as f64 / 1000.0),
        );
        metrics::gauge!("tessera_feed_current").set(if f.current { 1.0 } else { 0.0 });
    }
}

async fn accept_loop(ep: Endpoint, shared: Arc<Shared>, role: Role) {
    while let Some(incoming) = ep.accept().await {
        if shared.shutting_down.load(Ordering::Relaxed) {
            incoming.refuse();
            continue;
        }
        let ip = incoming.remote_address().ip();
        if role == Role::Device {
            if shared.open_connections.load(Ordering::Relaxed) >= shared.config.max_connections {
                metrics::counter!("tessera_connections_refused_total", "reason" => "capacity")
                    .increment(1);
                incoming.refuse();
                continue;
            }
            if shared.handshakes.load(Ordering::Relaxed) >= shared.config.retry_above_handshakes
                && !incoming.remote_address_validated()
            {
                metrics::counter!("tessera_retry_sent_total").increment(1);
                shared.retries_sent.fetch_add(1, Ordering::Relaxed);
                let _ = incoming.retry();
                continue;
            }
            if !shared
                .connections
                .admit_source(ip, shared.config.max_connections_per_source)
            {
                metrics::counter!("tessera_connections_refused_total", "reason" => "per_source")
                    .increment(1);
                incoming.refuse();
                continue;
            }
        }
        match incoming.accept() {
            Ok(connecting) => {
                tokio::spawn(connection(connecting, shared.clone(), role, ip));
            }
            Err(e) => {
                if role == Role::Device {
                    shared.connections.release_source(ip);
                }
                tracing::debug!(error = %e, "incoming connection failed");
            }
        }
    }
}

async fn connection(
    connecting: quinn::Connecting,
    shared: Arc<Shared>,
    role: Role,
    ip: std::net::IpAddr,
) {
    shared.handshakes.fetch_add(1, Ordering::Relaxed);
    let conn = tokio::time::timeout(Duration::from_secs(10), connecting).await;
    shared.handshakes.fetch_sub(1, Ordering::Relaxed);
    let conn = match conn {
        Ok(Ok(c)) => c,
        _ => {
            if role == Role::Device {
                shared.connections.release_source(ip);
            }
            return;
        }
    };
    let expected = if role == Role::Device {
        wire::DEVICE_ALPN
    } else {
        wire::ADMIN_ALPN
    };
    let alpn_ok = conn
        .handshake_data()
        .and_then(|h| h.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|h| h.protocol)
        .is_some_and(|p| p == expected);
    shared.open_connections.fetch_add(1, Ordering::Relaxed);
    metrics::gauge!("tessera_open_connections").increment(1.0);
    let mut attached: Vec<tessera_engine::RegistrationId> = Vec::new();
    if !alpn_ok {
        conn.close(VarInt::from_u32(CLOSE_PROTOCOL), b"wrong ALPN");
    } else {
        let state = registry::ConnState::new(conn.clone());
        while let Ok((send, mut recv)) = conn.accept_bi().await {
            let reply = reply::Reply::new(send, shared.clone(), state.clone());
            // A request usually arrives whole in one packet before its stream is accepted.
            // Then a refresh is handled right here (it only checks the RT and queues the
            // rotation); anything else, or a request still arriving, gets a task of its own.
            // The request may carry a PT, an RT or a secret: wiped when dropped.
            let mut buf = zeroize::Zeroizing::new(Vec::new());
            match read_arrived(&mut recv, &mut buf, max_request(role)) {
                Ok(true) => {
                    if let Some(reply) = dispatch_now(&shared, &buf, reply, role) {
                        tokio::spawn(dispatch(buf, reply, role));
                    }
                }
                Ok(false) => {
                    tokio::spawn(stream(recv, buf, reply, role));
                }
                Err(ReadError::TooLong) => reply.finish(Err(too_large())),
                Err(ReadError::Gone) => {}
            }
        }
        attached = state.attached();
    }
    shared.connections.detach_all(&conn, &attached);
    shared.open_connections.fetch_sub(1, Ordering::Relaxed);
    metrics::gauge!("tessera_open_connections").decrement(1.0);
    if role == Role::Device {
        shared.connections.release_source(ip);
    }
}

pub(crate) fn err(code: u16, message: &str) -> ErrorBody {
    ErrorBody {
        code,
        message: message.into(),
        retry_after_ms: None,
        remaining_attempts: None,
        server_time_ms: now().unix_millis(),
    }
}

pub(crate) fn engine_err(e: &tessera_engine::Error) -> ErrorBody {
    e.to_wire(now().unix_millis())
}

/// What a request handler produced.
pub(crate) struct Handled {
    /// Frames to send.
    pub(crate) frames: Vec<u8>,
    /// A registration this connection now uses (for closing on revocation).
    pub(crate) attach: Option<tessera_engine::RegistrationId>,
}

impl Handled {
    pub(crate) fn ok<T: serde::Serialize>(body: &T) -> Self {
        Self {
            frames: wire::ok_frame(body),
            attach: None,
        }
    }
}

fn max_request(role: Role) -> usize {
    wire::frame::HEADER_LEN
        + match role {
            Role::Device => wire::frame::DEVICE_REQUEST_MAX,
            Role::Admin => wire::frame::ADMIN_REQUEST_MAX,
        }
}

fn too_large() -> ErrorBody {
    err(code::TOO_LARGE, "request too large")
}

enum ReadError {
    /// More than the request size cap.
    TooLong,
    /// The peer reset the stream or the connection ended: nobody to answer.
    Gone,
}

fn add_chunk(buf: &mut Vec<u8>, chunk: &[u8], limit: usize) -> Result<(), ReadError> {
    if buf.len() + chunk.len() > limit {
        return Err(ReadError::TooLong);
    }
    buf.extend_from_slice(chunk);
    Ok(())
}

/// Take what has already arrived on `recv` without waiting; `Ok(true)` once the stream has
/// ended (the whole request is in `buf`).
fn read_arrived(
    recv: &mut quinn::RecvStream,
    buf: &mut Vec<u8>,
    limit: usize,
) -> Result<bool, ReadError> {
    use std::future::Future;
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    loop {
        // `read_chunk` takes data only when it returns it, so dropping a pending one loses
        // nothing; the task that goes on reading registers its own waker.
        let read = std::pin::pin!(recv.read_chunk(usize::MAX, true));
        match read.poll(&mut cx) {
            std::task::Poll::Ready(Ok(Some(chunk))) => add_chunk(buf, &chunk.bytes, limit)?,
            std::task::Poll::Ready(Ok(None)) => return Ok(true),
            std::task::Poll::Ready(Err(_)) => return Err(ReadError::Gone),
            std::task::Poll::Pending => return Ok(false),
        }
    }
}

/// Read the rest of a request into `buf`.
async fn read_rest(
    recv: &mut quinn::RecvStream,
    buf: &mut Vec<u8>,
    limit: usize,
) -> Result<(), ReadError> {
    loop {
        match recv.read_chunk(usize::MAX, true).await {
            Ok(Some(chunk)) => add_chunk(buf, &chunk.bytes, limit)?,
            Ok(None) => return Ok(()),
            Err(_) => return Err(ReadError::Gone),
        }
    }
}

/// A request still arriving: read the rest within the deadline, then dispatch it.
async fn stream(
    mut recv: quinn::RecvStream,
    mut buf: zeroize::Zeroizing<Vec<u8>>,
    reply: reply::Reply,
    role: Role,
) {
    let deadline = Duration::from_millis(reply.shared().config.request_deadline_ms);
    match tokio::time::timeout(deadline, read_rest(&mut recv, &mut buf, max_request(role))).await {
        Err(_) => reply.finish(Err(err(
            code::TIMEOUT,
            "request not received within the deadline",
        ))),
        Ok(Err(ReadError::TooLong)) => reply.finish(Err(too_large())),
        Ok(Err(ReadError::Gone)) => {}
        Ok(Ok(())) => dispatch(buf, reply, role).await,
    }
}

fn decode(buf: &[u8], role: Role) -> Result<wire::Frame<'_>, ErrorBody> {
    let max_body = max_request(role) - wire::frame::HEADER_LEN;
    wire::decode(buf, max_body).map_err(|e| match e {
        wire::FrameError::UnsupportedVersion => {
            err(code::UNSUPPORTED_VERSION, "unsupported protocol version")
        }
        wire::FrameError::TooLarge => too_large(),
        e => err(code::MALFORMED, &e.to_string()),
    })
}

/// Answer a whole request that needs no waiting (a malformed frame, a refresh) at once; hands
/// the reply back for any other request.
fn dispatch_now(
    shared: &Shared,
    buf: &[u8],
    reply: reply::Reply,
    role: Role,
) -> Option<reply::Reply> {
    match decode(buf, role) {
        Err(e) => {
            reply.finish(Err(e));
            None
        }
        Ok(frame) if role == Role::Device && frame.kind == wire::kind::REFRESH => {
            tracing::debug!(endpoint = ?role, kind = frame.kind, "request");
            device::refresh_frame(shared, frame, reply);
            None
        }
        Ok(_) => Some(reply),
    }
}

/// Handle a whole request that may wait (for the store, a long poll, an admin stream).
async fn dispatch(buf: zeroize::Zeroizing<Vec<u8>>, mut reply: reply::Reply, role: Role) {
    let shared = reply.shared().clone();
    let frame = match decode(&buf, role) {
        Ok(f) => f,
        Err(e) => return reply.finish(Err(e)),
    };
    // The kind only: bodies carry tokens and secrets.
    tracing::debug!(endpoint = ?role, kind = frame.kind, "request");
    match role {
        Role::Device => device::handle(&shared, frame, reply).await,
        Role::Admin => {
            let source = reply.remote_ip();
            let result = admin::handle(&shared, frame, source, reply.stream()).await;
            reply.finish(result);
        }
    }
}
