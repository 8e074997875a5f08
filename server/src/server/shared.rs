//! What the request handlers share ([`Shared`]), which endpoint a request came in on
//! ([`Role`]), the server's own rate limits, and running engine calls off the async threads.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use tessera_engine::{Engine, Error, RegistrationId, Timestamp};
use tessera_proto::wire::{self, code, ErrorBody};

use super::clock::Clock;
use super::config::ServerConfig;
use super::outbox::Outbox;
use super::registry::{ConnState, Connections, Waiters};
use super::reply::{engine_err, err, Tracker};
use super::tickets::RootTicketer;

/// Which endpoint a connection arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Device,
    Admin,
}

impl Role {
    pub(crate) fn alpn(self) -> &'static [u8] {
        match self {
            Role::Device => wire::DEVICE_ALPN,
            Role::Admin => wire::ADMIN_ALPN,
        }
    }
}

/// What every request handler shares: the engine, the configuration, the connection registry,
/// the counters, the clock and the server's own rate limits.
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
    pub(crate) device_tickets: Arc<RootTicketer>,
    pub(crate) shutting_down: AtomicBool,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) revoked_reports: std::sync::Mutex<std::collections::HashMap<u64, Timestamp>>,
    pub(crate) outbox: Arc<Outbox>,
    /// WAIT per source address, INTROSPECT per source address, admin requests per token.
    pub(crate) limits: Limits,
}

/// The server's own rate limits (the engine limits BEGIN and REFRESH itself).
#[derive(Debug)]
pub(crate) struct Limits {
    pub(crate) wait: tessera_engine::RateLimiter<String>,
    pub(crate) introspect: tessera_engine::RateLimiter<String>,
    pub(crate) admin: tessera_engine::RateLimiter<tessera_engine::AdminTokenId>,
    /// Failed authentications per source ([`source_key`]): every admin route of both
    /// endpoints, console sign-in and pairing codes.
    pub(crate) auth_failures: tessera_engine::RateLimiter<std::net::IpAddr>,
}

/// The address a per-source limit counts under: an IPv4 address (an IPv4-mapped IPv6 one
/// included) as it is; an IPv6 address by its /64, the block one host is usually given.
pub(crate) fn source_key(ip: std::net::IpAddr) -> std::net::IpAddr {
    match ip {
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.into(),
            None => {
                let s = v6.segments();
                std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0).into()
            }
        },
        v4 => v4,
    }
}

impl Limits {
    pub(crate) fn new(c: &ServerConfig) -> Self {
        use tessera_engine::{Rate, RateLimiter};
        Self {
            wait: RateLimiter::new(Rate::new(c.wait_burst, c.wait_per_minute)),
            introspect: RateLimiter::new(Rate::new(c.introspect_burst, c.introspect_per_minute)),
            admin: RateLimiter::new(Rate::new(c.admin_burst, c.admin_per_minute)),
            auth_failures: RateLimiter::new(Rate::new(
                c.auth_failure_burst,
                c.auth_failures_per_minute,
            )),
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

impl Shared {
    pub(crate) fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Whether `source` may still try to authenticate: the rate-limited error (with its retry
    /// hint) when its failures have used up the throttle. Nothing is taken: only a failure
    /// counts ([`Shared::auth_failed`]), so clients that authenticate, however many at once,
    /// are never held back by it.
    pub(crate) fn auth_attempt(&self, source: std::net::IpAddr) -> Result<(), ErrorBody> {
        self.limits
            .auth_failures
            .peek(&source_key(source), self.now())
            .map_err(|retry_after| {
                metrics::counter!("tessera_auth_throttled_total").increment(1);
                let mut e = engine_err(&tessera_engine::Error::RateLimited { retry_after });
                "too many failed authentications from this address; try again later"
                    .clone_into(&mut e.message);
                e
            })
    }

    /// An authentication from `source` failed: it counts against the source's throttle.
    pub(crate) fn auth_failed(&self, source: std::net::IpAddr) {
        metrics::counter!("tessera_auth_failures_total").increment(1);
        let _ = self
            .limits
            .auth_failures
            .check(&source_key(source), self.now());
    }
}

impl Tracker for Shared {
    fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    fn request_done(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    fn attach(&self, reg: RegistrationId, state: &Arc<ConnState>) {
        self.connections
            .attach(reg, state, |r| self.engine.is_registration_live(r));
    }
}

/// Run a blocking engine call off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    shared: &Shared,
    f: impl FnOnce(&Engine, Timestamp) -> Result<T, Error> + Send + 'static,
) -> Result<T, ErrorBody> {
    let e = shared.engine.clone();
    let t = shared.now();
    match tokio::task::spawn_blocking(move || f(&e, t)).await {
        Ok(r) => r.map_err(|e| engine_err(&e)),
        Err(_) => Err(err(code::INTERNAL, "internal error; nothing was changed")),
    }
}
