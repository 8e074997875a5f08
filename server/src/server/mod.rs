//! The Tessera server: the QUIC endpoints for devices and operators, the HTTPS console and
//! API, over one engine. `Server::start` opens the engine and starts everything; the modules
//! below each do one job.
//!
//! - `endpoint`: the QUIC endpoints, accepting connections, reading and dispatching requests;
//! - `device` and `admin`: device requests, and admin requests over QUIC;
//! - `service`: the admin service every admin front end calls (QUIC, HTTPS, console);
//! - `http`: the HTTPS console and API;
//! - `reply` and `outbox`: answering requests, and writing refresh answers in batches;
//! - `registry`: open connections, which registration each used, and long-poll waiters;
//! - `shared`: what the handlers share; `body`: request bodies; `clock`, `config`, `tls`,
//!   `tickets`, `banner`, `error`.

mod admin;
pub mod archive;
pub mod banner;
mod body;
mod clock;
pub mod config;
mod device;
mod endpoint;
mod error;
mod http;
pub mod identity;
mod outbox;
pub mod probes;
pub mod registry;
mod reply;
mod service;
mod shared;
mod summary;
mod tickets;
pub mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use quinn::{Endpoint, VarInt};
use tessera_engine::{Actor, AdminRole, AdminToken, Engine};
use tokio::task::JoinSet;

pub use clock::{Clock, ManualClock, SystemClock};
pub use config::ServerConfig;
use endpoint::{accept_loop, endpoint};
pub use error::ServerError;
use registry::{Connections, Observer, Waiters};
pub use registry::{CLOSE_PROTOCOL, CLOSE_REVOKED, CLOSE_SHUTDOWN};
use shared::{Limits, Role, Shared};

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

/// A running server. Drop it or call [`Server::shutdown`] to stop.
pub struct Server {
    shared: Arc<Shared>,
    device: Endpoint,
    admin: Endpoint,
    tasks: JoinSet<()>,
    files: tls::TlsFiles,
    /// The certificate the endpoints present (reloaded by [`Server::reload_certificate`]).
    cert: Arc<tls::ServerCert>,
    ca_fingerprint: String,
    first_admin_token: Option<AdminToken>,
    console_addr: Option<SocketAddr>,
    metrics_addr: Option<SocketAddr>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("device_addr", &self.device_addr())
            .field("admin_addr", &self.admin_addr())
            .finish_non_exhaustive()
    }
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
        // Certificates the operator brought that cannot be used are refused before anything
        // is opened or made.
        tls::preflight(&config.data_dir)?;
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
                identity::prepare_dir(&dir, store_url.is_none())?;
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
                        let sqlite = store_url.is_none();
                        let (keeper, new_root) = identity::software_root(&dir, sqlite)?;
                        let opened = open_engine(
                            &dir,
                            store_url.as_ref().map(|u| (u.as_str(), writers)),
                            keeper,
                            engine_cfg,
                            now,
                        );
                        match (opened, new_root) {
                            (Ok(engine), Some(root)) => {
                                root.keep()?;
                                engine
                            }
                            (Ok(engine), None) => engine,
                            (Err(e), Some(root)) => {
                                root.discard();
                                return Err(match e {
                                    tessera_engine::Error::Keys(_) if !sqlite => {
                                        identity::foreign_store(&dir, &e)
                                    }
                                    e => e.into(),
                                });
                            }
                            (Err(e), None) => return Err(e.into()),
                        }
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
        // A store without any admin token yet is a new deployment: its TLS material may be
        // made now. Any other must have its own.
        let first_start = first_admin_token.is_some();
        let files = tls::ensure_certificates(&config.data_dir, &config.server_names, first_start)?;
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
        let cert = tls::ServerCert::load(&files)?;
        let device = endpoint(&config, &cert, Role::Device, device_tickets.clone())?;
        let admin = endpoint(&config, &cert, Role::Admin, admin_tickets)?;
        let console = match config.console_addr {
            Some(addr) => Some((http::bind(addr).await?, http::tls_config(&cert)?)),
            None => None,
        };
        let console_addr = console.as_ref().and_then(|(l, _)| l.local_addr().ok());
        let metrics = match config.metrics_addr {
            Some(addr) => Some(probes::bind(addr).await?),
            None => None,
        };
        let metrics_addr = metrics.as_ref().and_then(|l| l.local_addr().ok());
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
        tasks.spawn(shared.outbox.clone().run(device::refresh_answer));
        tasks.spawn(accept_loop(device.clone(), shared.clone(), Role::Device));
        tasks.spawn(accept_loop(admin.clone(), shared.clone(), Role::Admin));
        tasks.spawn(housekeeping(shared.clone()));
        tasks.spawn(feed_metrics(shared.clone()));
        tasks.spawn(engine_metrics(shared.clone()));
        tasks.spawn(async {
            let mut tick = tokio::time::interval(summary::EVERY);
            tick.tick().await;
            loop {
                tick.tick().await;
                summary::DEVICE.log(summary::EVERY);
            }
        });
        certificate_metrics(&files);
        if let Some((listener, tls)) = console {
            tasks.spawn(http::serve(listener, tls, shared.clone()));
        }
        if let Some(listener) = metrics {
            let probed = probes::Probed {
                shared: shared.clone(),
                device: device.clone(),
                admin: admin.clone(),
            };
            tasks.spawn(probes::readiness_gauges(probed.clone()));
            tasks.spawn(probes::serve(listener, probed));
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
            cert,
            ca_fingerprint,
            first_admin_token,
            console_addr,
            metrics_addr,
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

    /// Where `/metrics`, `/healthz` and `/readyz` are served (plain HTTP), if anywhere.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
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

    /// Read `tls/server.pem` and `tls/server.key` again (SIGHUP): new handshakes on every
    /// endpoint get the new certificate, open connections keep theirs. A certificate that does
    /// not load or does not match its key is refused and the one in use stays.
    pub fn reload_certificate(&self) -> Result<tls::CertificateInfo, ServerError> {
        let c = self.cert.reload()?;
        certificate_metrics(&self.files);
        Ok(c)
    }

    /// SHA-256 fingerprint of the CA certificate (for pinning), as of the start.
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

/// The engine's counts as gauges, every 15 s (a count reads the store):
/// `tessera_pending_operations`, `tessera_active_registrations`, `tessera_pts`,
/// `tessera_live_families`, `tessera_key_epoch`.
async fn engine_metrics(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_secs(15));
    loop {
        tick.tick().await;
        let engine = shared.engine.clone();
        let Ok(Ok(s)) = tokio::task::spawn_blocking(move || engine.status()).await else {
            continue;
        };
        metrics::gauge!("tessera_pending_operations").set(s.counts.pending_operations as f64);
        metrics::gauge!("tessera_active_registrations").set(s.counts.active_registrations as f64);
        metrics::gauge!("tessera_pts").set(s.counts.pts as f64);
        metrics::gauge!("tessera_live_families").set(s.live_families as f64);
        metrics::gauge!("tessera_key_epoch").set(f64::from(s.current_key_epoch));
    }
}

/// `tessera_certificate_expiry_timestamp_seconds{certificate}`: when the CA and the server
/// certificate end (Unix seconds), set at start and on every reload.
pub(crate) fn certificate_metrics(files: &tls::TlsFiles) {
    for (which, path) in [("ca", &files.ca_cert), ("server", &files.server_chain)] {
        if let Some(c) = tls::describe(path).ok().and_then(|c| c.into_iter().next()) {
            metrics::gauge!("tessera_certificate_expiry_timestamp_seconds", "certificate" => which)
                .set(c.not_after as f64);
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
