//! Runtime registries: long-poll waiters per operation, and open device connections per
//! registration (so a revoked registration's connections can be closed).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tessera_engine::{EngineObserver, OperationId, OperationState, RegistrationId};
use tokio::sync::Notify;

/// QUIC application close code: the registration whose RT this connection used was revoked.
pub const CLOSE_REVOKED: u32 = 0x10;
/// QUIC application close code: the server is shutting down.
pub const CLOSE_SHUTDOWN: u32 = 0x11;
/// QUIC application close code: wrong ALPN.
pub const CLOSE_PROTOCOL: u32 = 0x12;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Wakes long-polling WAIT requests when their operation changes.
#[derive(Debug, Default)]
pub struct Waiters {
    map: Mutex<HashMap<OperationId, Arc<Notify>>>,
}

impl Waiters {
    /// The notifier of an operation; register interest (`notified()`) before checking state.
    pub fn get(&self, id: OperationId) -> Arc<Notify> {
        lock(&self.map).entry(id).or_default().clone()
    }

    /// Drop the entry if nobody else holds it.
    pub fn release(&self, id: OperationId, n: Arc<Notify>) {
        let mut m = lock(&self.map);
        drop(n);
        if m.get(&id).is_some_and(|e| Arc::strong_count(e) == 1) {
            m.remove(&id);
        }
    }

    fn wake(&self, id: OperationId) {
        if let Some(n) = lock(&self.map).get(&id) {
            n.notify_waiters();
        }
    }

    /// Entries held (for tests and metrics).
    pub fn len(&self) -> usize {
        lock(&self.map).len()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One open connection, with what is needed to close it without cutting off a response.
#[derive(Debug)]
pub struct ConnState {
    /// The connection.
    pub conn: quinn::Connection,
    in_flight: std::sync::atomic::AtomicUsize,
    close_pending: std::sync::atomic::AtomicBool,
    /// Every registration attached, to detach them when the connection ends (and to skip
    /// the shared registry for one already attached: a gateway's connection carries many).
    attached: Mutex<std::collections::HashSet<RegistrationId>>,
    /// Admin endpoint: a request on this connection carried a token that verified.
    authenticated: std::sync::atomic::AtomicBool,
}

/// Admin endpoint: concurrent requests a connection may open before one of its requests has
/// carried a token that verified, and how large each may be; after, [`ADMIN_STREAMS`] and the
/// admin request cap.
pub const PRE_AUTH_STREAMS: u32 = 4;
/// See [`PRE_AUTH_STREAMS`]: at most 64 KiB a request before authentication.
pub const PRE_AUTH_REQUEST_MAX: usize = 64 * 1024;
/// Concurrent requests on an authenticated admin connection.
pub const ADMIN_STREAMS: u32 = 64;

impl ConnState {
    /// Track a new connection.
    pub fn new(conn: quinn::Connection) -> Arc<Self> {
        Arc::new(Self {
            conn,
            in_flight: Default::default(),
            close_pending: Default::default(),
            attached: Mutex::new(Default::default()),
            authenticated: Default::default(),
        })
    }

    /// Whether a request on this (admin) connection has carried a token that verified.
    pub fn is_authenticated(&self) -> bool {
        self.authenticated
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A request on this admin connection carried a token that verified: the connection may
    /// open its full number of concurrent requests, each up to the admin request cap.
    pub fn authenticated(&self) {
        if !self
            .authenticated
            .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            self.conn
                .set_max_concurrent_bi_streams(quinn::VarInt::from_u32(ADMIN_STREAMS));
        }
    }

    /// The registrations this connection has used.
    pub fn attached(&self) -> Vec<RegistrationId> {
        lock(&self.attached).iter().copied().collect()
    }

    /// A request started on this connection.
    pub fn request_started(&self) {
        self.in_flight
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// A request's response has been delivered; close now if a revocation asked to.
    pub fn request_done(&self) {
        if self
            .in_flight
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst)
            == 1
            && self.close_pending.load(std::sync::atomic::Ordering::SeqCst)
        {
            self.close_revoked();
        }
    }

    /// A revocation asked for this connection to be closed.
    pub fn close_pending(&self) -> bool {
        self.close_pending.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn close_revoked(&self) {
        self.conn.close(
            quinn::VarInt::from_u32(CLOSE_REVOKED),
            b"registration revoked",
        );
    }

    /// Close once the requests in flight have been answered (at once if there are none).
    fn close_when_idle(&self) {
        self.close_pending
            .store(true, std::sync::atomic::Ordering::SeqCst);
        if self.in_flight.load(std::sync::atomic::Ordering::SeqCst) == 0 {
            self.close_revoked();
        }
    }
}

/// Open device connections, by registration and by source address.
#[derive(Debug, Default)]
pub struct Connections {
    by_registration: Mutex<HashMap<RegistrationId, Vec<Arc<ConnState>>>>,
    by_source: Mutex<HashMap<IpAddr, usize>>,
    /// Admin endpoint connections per source, counted apart from devices'.
    admin_by_source: Mutex<HashMap<IpAddr, usize>>,
}

impl Connections {
    /// Remember that `conn` uses `reg`'s RTs. `live` says whether the registration is still
    /// live in the engine: it is asked after the entry is in place, so a revocation that
    /// committed after the request was answered but before this attach either finds the entry
    /// (and closes the connection) or is seen here (and the connection is closed here).
    pub fn attach(
        &self,
        reg: RegistrationId,
        conn: &Arc<ConnState>,
        live: impl FnOnce(RegistrationId) -> bool,
    ) {
        // Cheapest first: the connection's own (uncontended) set of what it attached before.
        // An answer may also be written after its connection ended (and was detached): keep no
        // entry for it then.
        if lock(&conn.attached).contains(&reg) || conn.conn.close_reason().is_some() {
            return;
        }
        let mut m = lock(&self.by_registration);
        let v = m.entry(reg).or_default();
        v.retain(|c| c.conn.close_reason().is_none());
        if !v
            .iter()
            .any(|c| c.conn.stable_id() == conn.conn.stable_id())
        {
            v.push(conn.clone());
            // Remembered on the connection too, so `detach_all` can drop these entries (and the
            // connection state they keep alive) when it ends.
            lock(&conn.attached).insert(reg);
        }
        // Still under the lock the revocation's `close_revoked` takes: see above.
        if !live(reg) {
            if let Some(v) = m.get_mut(&reg) {
                v.retain(|c| c.conn.stable_id() != conn.conn.stable_id());
                if v.is_empty() {
                    m.remove(&reg);
                }
            }
            drop(m);
            conn.close_when_idle();
        }
    }

    /// Registrations with at least one tracked connection (for tests and metrics).
    pub fn tracked_registrations(&self) -> usize {
        lock(&self.by_registration).len()
    }

    /// Forget a closed connection.
    pub fn detach_all(&self, conn: &quinn::Connection, regs: &[RegistrationId]) {
        let mut m = lock(&self.by_registration);
        for r in regs {
            if let Some(v) = m.get_mut(r) {
                v.retain(|c| c.conn.stable_id() != conn.stable_id());
                if v.is_empty() {
                    m.remove(r);
                }
            }
        }
    }

    fn close_revoked(&self, reg: RegistrationId) {
        if let Some(conns) = lock(&self.by_registration).remove(&reg) {
            for c in conns {
                c.close_when_idle();
            }
        }
    }

    /// Count a new connection from `ip` (on the admin endpoint when `admin`); false if its
    /// source holds `max` already. On the admin endpoint a source is an IPv4 address or an IPv6
    /// /64; on the device endpoint, an address (the devices of one site often share a /64).
    pub fn admit_source(&self, ip: IpAddr, max: usize, admin: bool) -> bool {
        let mut m = lock(self.sources(admin));
        let n = m.entry(Self::source(ip, admin)).or_insert(0);
        if *n >= max {
            return false;
        }
        *n += 1;
        true
    }

    /// A connection from `ip` ended.
    pub fn release_source(&self, ip: IpAddr, admin: bool) {
        let mut m = lock(self.sources(admin));
        let key = Self::source(ip, admin);
        if let Some(n) = m.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                m.remove(&key);
            }
        }
    }

    fn source(ip: IpAddr, admin: bool) -> IpAddr {
        if admin {
            crate::server::shared::source_key(ip)
        } else {
            ip
        }
    }

    fn sources(&self, admin: bool) -> &Mutex<HashMap<IpAddr, usize>> {
        if admin {
            &self.admin_by_source
        } else {
            &self.by_source
        }
    }
}

/// Connects engine events to the runtime registries.
#[derive(Debug)]
pub struct Observer {
    /// Long-poll waiters.
    pub waiters: Arc<Waiters>,
    /// Open connections.
    pub connections: Arc<Connections>,
    /// REVOCATIONS long polls.
    pub revocations: Arc<tokio::sync::Notify>,
    /// Bumped on every operation change, revocation, audit event and leak signal: the console's
    /// live updates follow it.
    pub changes: Arc<tokio::sync::watch::Sender<u64>>,
}

impl EngineObserver for Observer {
    fn operation_changed(&self, id: OperationId, _state: OperationState) {
        self.waiters.wake(id);
        self.changes.send_modify(|n| *n += 1);
    }

    fn logged(&self) {
        self.changes.send_modify(|n| *n += 1);
    }

    fn registration_revoked(&self, id: RegistrationId) {
        self.connections.close_revoked(id);
        self.revocations.notify_waiters();
        self.changes.send_modify(|n| *n += 1);
        metrics::counter!("tessera_connections_closed_on_revocation_total").increment(1);
    }
}
