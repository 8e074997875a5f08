//! The server's clock: the engine never reads one, the server asks this one, so end-to-end
//! tests move time forward instead of waiting.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tessera_engine::Timestamp;

/// Where the server gets the time.
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
