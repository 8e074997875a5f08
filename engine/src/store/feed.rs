//! The change feed's data: what a transaction changed in the memory every node keeps, where a
//! store's follower delivers other nodes' changes, and how far a node has followed them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::model::{OperationId, OperationState, RegistrationId};

/// A change to the state every node keeps in memory, as the change feed carries it to the
/// other nodes of a shared store (see [`Store::follow`](super::Store::follow)).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "k", rename_all = "snake_case")]
pub enum Change {
    /// A registration's family moved to a new generation (or was created).
    Family {
        /// The registration.
        id: RegistrationId,
        /// Its current generation.
        generation: u32,
        /// Its binding (carried in its RTs).
        binding: u32,
        /// Expiry of the current generation, Unix seconds.
        expires_at: u64,
    },
    /// A registration was revoked.
    Revoked {
        /// The registration.
        id: RegistrationId,
    },
    /// An operation began or changed state.
    Operation {
        /// The operation.
        #[serde(with = "tessera_proto::admin::records::display_fromstr")]
        id: OperationId,
        /// Its state now.
        state: OperationState,
    },
    /// Key epochs were added, superseded or retired.
    Keys,
    /// The audit log or the leak signals were written.
    Logged,
}

/// Where a store's follower delivers the changes other nodes committed.
pub trait FeedSink: Send + Sync {
    /// Apply changes, in commit order.
    fn apply(&self, changes: &[Change]);
    /// The feed no longer holds every change since the last one applied (the follower fell
    /// further behind than the feed keeps): rebuild the in-memory state from the store.
    fn resync(&self) -> Result<(), Error>;
    /// Whether the sink's owner is gone (the follower then stops).
    fn closed(&self) -> bool;
}

/// How far a node's follower is: read by validations, which fail closed when it is stale.
#[derive(Debug, Default)]
pub struct FeedHealth {
    /// The last change applied.
    pub position: AtomicU64,
    /// The newest change in the feed when last read.
    pub head: AtomicU64,
    /// Milliseconds since `epoch` when the follower last read the feed to its head.
    caught_up_ms: AtomicU64,
    epoch: OnceLock<Instant>,
    first: (Mutex<bool>, Condvar),
}

impl FeedHealth {
    fn epoch(&self) -> Instant {
        *self.epoch.get_or_init(Instant::now)
    }

    /// The follower read the feed to its head just now.
    pub fn caught_up(&self) {
        let ms = self.epoch().elapsed().as_millis() as u64;
        self.caught_up_ms.store(ms.max(1), Ordering::Release);
        let (lock, cv) = &self.first;
        let mut done = lock.lock().unwrap_or_else(PoisonError::into_inner);
        if !*done {
            *done = true;
            cv.notify_all();
        }
    }

    /// Wait until the follower has first read the feed to its head, at most `timeout`.
    /// Returns whether it has.
    pub fn wait_caught_up(&self, timeout: Duration) -> bool {
        let (lock, cv) = &self.first;
        let done = lock.lock().unwrap_or_else(PoisonError::into_inner);
        let (done, _) = cv
            .wait_timeout_while(done, timeout, |d| !*d)
            .unwrap_or_else(PoisonError::into_inner);
        *done
    }

    /// How long ago the follower was last at the feed's head (`None`: never).
    pub fn since_caught_up(&self) -> Option<Duration> {
        match self.caught_up_ms.load(Ordering::Acquire) {
            0 => None,
            ms => Some(
                self.epoch()
                    .elapsed()
                    .saturating_sub(Duration::from_millis(ms)),
            ),
        }
    }
}
