//! Holding the HTTPS front end's connections against hostile clients: how many it keeps (in
//! all and per source), how long a client may take before its first request and between
//! bytes, and what happens when the process runs out of descriptors.
//!
//! - A source (an IPv4 address, an IPv6 /64) holds at most `max_connections_per_source`; past
//!   that its new connections are closed at once.
//! - In all at most `max_connections`. When full, the oldest connection that has not sent a
//!   whole request yet (a TLS handshake or a request's headers still arriving: what a slowloris
//!   holds) is closed to make room, so a client that sends its request promptly is still
//!   served; when every connection has sent one, the new connection is closed at once. Either
//!   way the client learns at once, never hangs.
//! - A connection must finish its TLS handshake and its first request's headers within
//!   `header_timeout_ms`; later requests' headers too (hyper's timer). A connection that moves
//!   no byte either way for `idle_timeout_ms` is closed (a live-update stream sends a comment
//!   every 15 s, so it stays).
//! - When `accept` fails for want of descriptors or memory, the loop waits (5 ms, doubling to
//!   1 s) instead of spinning, and says so in the log once per burst.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

use crate::server::config::HttpSettings;
use crate::server::shared::source_key;

/// Descriptors kept back from the HTTPS cap for everything else the process opens (the QUIC
/// sockets, the store, log and key files).
const DESCRIPTOR_RESERVE: u64 = 256;

/// The connection cap the process can honour: the configured one, or less when the
/// descriptor limit (raised to its hard limit first) is lower.
pub(crate) fn connection_cap(settings: &HttpSettings) -> usize {
    let limit = rlimit::increase_nofile_limit(u64::MAX)
        .or_else(|_| rlimit::getrlimit(rlimit::Resource::NOFILE).map(|(soft, _)| soft))
        .unwrap_or(1024);
    let budget =
        usize::try_from(limit.saturating_sub(DESCRIPTOR_RESERVE).max(16)).unwrap_or(usize::MAX);
    if budget < settings.max_connections {
        tracing::warn!(
            configured = settings.max_connections,
            descriptors = limit,
            cap = budget,
            "the HTTPS connection cap is lowered to what the descriptor limit allows"
        );
    }
    settings.max_connections.min(budget).max(1)
}

/// Why a new connection was closed at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Its source holds as many as it may.
    PerSource,
    /// Every connection held has sent a request: none to give way.
    Full,
}

impl Refused {
    fn label(self) -> &'static str {
        match self {
            Refused::PerSource => "per_source",
            Refused::Full => "capacity",
        }
    }
}

/// The connections held now.
#[derive(Debug)]
pub(crate) struct Connections {
    max: usize,
    per_source: usize,
    table: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    next: u64,
    /// By admission order: the first entry is the oldest.
    open: BTreeMap<u64, Held>,
    by_source: HashMap<IpAddr, usize>,
}

#[derive(Debug)]
struct Held {
    source: IpAddr,
    state: Arc<ConnState>,
}

/// What a connection's task and the table share.
#[derive(Debug, Default)]
pub(crate) struct ConnState {
    /// Set once a whole request (its headers) has arrived.
    served: AtomicBool,
    /// Woken to close the connection to make room.
    evict: Notify,
}

impl ConnState {
    /// A request's headers arrived: from now on the connection does not give way.
    pub(crate) fn mark_served(&self) {
        self.served.store(true, Ordering::Relaxed);
    }

    /// Whether a request's headers have arrived.
    pub(crate) fn served(&self) -> bool {
        self.served.load(Ordering::Relaxed)
    }

    /// Resolves when the connection is to be closed to make room.
    pub(crate) async fn evicted(&self) {
        self.evict.notified().await;
    }
}

/// A connection's place in the table, given back when dropped.
#[derive(Debug)]
pub(crate) struct Slot {
    conns: Arc<Connections>,
    id: u64,
    pub(crate) state: Arc<ConnState>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut t = self.conns.table.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(held) = t.open.remove(&self.id) {
            t.release(held.source);
        }
    }
}

impl Table {
    fn release(&mut self, source: IpAddr) {
        if let Some(n) = self.by_source.get_mut(&source) {
            *n -= 1;
            if *n == 0 {
                self.by_source.remove(&source);
            }
        }
        metrics::gauge!("tessera_http_connections").decrement(1.0);
    }
}

impl Connections {
    pub(crate) fn new(max: usize, per_source: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            per_source: per_source.max(1),
            table: Mutex::default(),
        })
    }

    /// Take a place for a new connection from `peer`, making room if need be.
    pub(crate) fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Slot, Refused> {
        let source = source_key(peer);
        let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if t.by_source.get(&source).copied().unwrap_or(0) >= self.per_source {
            return Err(self.refuse(Refused::PerSource));
        }
        if t.open.len() >= self.max {
            let oldest_waiting = t
                .open
                .iter()
                .find(|(_, h)| !h.state.served.load(Ordering::Relaxed))
                .map(|(id, _)| *id);
            let Some(id) = oldest_waiting else {
                return Err(self.refuse(Refused::Full));
            };
            if let Some(held) = t.open.remove(&id) {
                held.state.evict.notify_one();
                t.release(held.source);
                metrics::counter!("tessera_http_connections_evicted_total").increment(1);
            }
        }
        t.next += 1;
        let id = t.next;
        let state = Arc::new(ConnState::default());
        t.open.insert(
            id,
            Held {
                source,
                state: state.clone(),
            },
        );
        *t.by_source.entry(source).or_insert(0) += 1;
        metrics::gauge!("tessera_http_connections").increment(1.0);
        Ok(Slot {
            conns: self.clone(),
            id,
            state,
        })
    }

    fn refuse(&self, why: Refused) -> Refused {
        metrics::counter!("tessera_http_connections_refused_total", "reason" => why.label())
            .increment(1);
        why
    }

    /// How many connections are held now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.table.lock().unwrap().open.len()
    }
}

/// What to do after `accept` failed: wait this long before the next (errors of one connection,
/// such as a reset before it was taken, need no wait).
pub(crate) struct AcceptBackoff {
    next: Duration,
}

impl AcceptBackoff {
    const FIRST: Duration = Duration::from_millis(5);
    const MAX: Duration = Duration::from_secs(1);

    pub(crate) fn new() -> Self {
        Self { next: Self::FIRST }
    }

    /// An accept succeeded: the next failure waits the shortest time again.
    pub(crate) fn reset(&mut self) {
        self.next = Self::FIRST;
    }

    /// How long to wait after `e`, if at all.
    pub(crate) fn after(&mut self, e: &std::io::Error) -> Option<Duration> {
        use std::io::ErrorKind::*;
        if matches!(
            e.kind(),
            ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted
        ) {
            return None;
        }
        let wait = self.next;
        if wait == Self::FIRST {
            tracing::warn!(error = %e, "HTTPS accept failed (out of descriptors or memory?); backing off");
        }
        metrics::counter!("tessera_http_accept_errors_total").increment(1);
        self.next = (self.next * 2).min(Self::MAX);
        Some(wait)
    }
}

/// An IO that notes when it last moved a byte, for the idle timeout.
pub(crate) struct Watched<T> {
    inner: T,
    last: Arc<Activity>,
}

/// When a connection last moved a byte, in milliseconds since it was accepted.
#[derive(Debug)]
pub(crate) struct Activity {
    start: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
        })
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Resolves once nothing has moved for `idle`.
    pub(crate) async fn idle_for(&self, idle: Duration) {
        loop {
            let last = self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let quiet_until = last + idle;
            if Instant::now() >= quiet_until {
                return;
            }
            tokio::time::sleep_until(quiet_until.into()).await;
        }
    }
}

impl<T> Watched<T> {
    pub(crate) fn new(inner: T, last: Arc<Activity>) -> Self {
        Self { inner, last }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.last.touch();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.last.touch();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn a_source_holds_at_most_its_share() {
        let c = Connections::new(100, 2);
        let a = c.admit(ip(2)).unwrap();
        let _b = c.admit(ip(2)).unwrap();
        assert_eq!(c.admit(ip(2)).unwrap_err(), Refused::PerSource);
        assert!(c.admit(ip(3)).is_ok());
        drop(a);
        assert!(c.admit(ip(2)).is_ok());
    }

    #[test]
    fn ipv6_sources_count_by_their_64() {
        let c = Connections::new(100, 1);
        let _a = c.admit("2001:db8:1:2::1".parse().unwrap()).unwrap();
        assert_eq!(
            c.admit("2001:db8:1:2::ffff".parse().unwrap()).unwrap_err(),
            Refused::PerSource
        );
        assert!(c.admit("2001:db8:1:3::1".parse().unwrap()).is_ok());
    }

    #[tokio::test]
    async fn when_full_the_oldest_connection_without_a_request_gives_way() {
        let c = Connections::new(3, 10);
        let first = c.admit(ip(2)).unwrap();
        let waiting = c.admit(ip(3)).unwrap();
        let later = c.admit(ip(4)).unwrap();
        first.state.mark_served();
        // Full: the oldest that has not sent a request (`waiting`) is told to close, and its
        // place is taken at once.
        let fresh = c.admit(ip(5)).unwrap();
        assert_eq!(c.len(), 3);
        tokio::time::timeout(Duration::from_secs(1), waiting.state.evicted())
            .await
            .expect("the waiting connection is told to close");
        // Its slot dropping later changes nothing.
        drop(waiting);
        assert_eq!(c.len(), 3);
        // With every connection served, a new one is refused.
        later.state.mark_served();
        fresh.state.mark_served();
        assert_eq!(c.admit(ip(6)).unwrap_err(), Refused::Full);
        drop(later);
        assert!(c.admit(ip(6)).is_ok());
    }

    #[test]
    fn accept_errors_back_off_and_per_connection_errors_do_not() {
        let mut b = AcceptBackoff::new();
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionAborted);
        assert_eq!(b.after(&reset), None);
        let emfile = std::io::Error::from_raw_os_error(24);
        let waits: Vec<_> = (0..10).map(|_| b.after(&emfile).unwrap()).collect();
        assert_eq!(waits[0], Duration::from_millis(5));
        assert_eq!(waits[1], Duration::from_millis(10));
        assert_eq!(*waits.last().unwrap(), Duration::from_secs(1));
        b.reset();
        assert_eq!(b.after(&emfile), Some(Duration::from_millis(5)));
    }
}
