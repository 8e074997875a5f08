//! With several nodes on one store: what this node does with the changes the others commit
//! (the store's change feed), and the check that makes validation fail closed when this node
//! is behind.

use std::sync::{Arc, Weak};
use std::time::Duration;

use super::{Engine, Inner};
use crate::error::Error;
use crate::family::FamilyState;
use crate::store::{Change, FeedHealth, FeedSink};
use crate::time::Timestamp;

/// Where the store's follower delivers other nodes' changes: this engine, while it exists.
pub(super) struct Sink(pub(super) Weak<Inner>);

impl FeedSink for Sink {
    fn apply(&self, changes: &[Change]) {
        if let Some(inner) = self.0.upgrade() {
            inner.apply_changes(changes);
        }
    }

    fn resync(&self) -> Result<(), Error> {
        let Some(inner) = self.0.upgrade() else {
            return Ok(());
        };
        let engine = Engine { inner };
        let now = Timestamp::now_from_system_clock();
        // The families from the tables: the live ones (a newer state wins) and the revoked
        // ones (a revocation is final), whatever the lost changes said.
        engine.rebuild_families(now)?;
        let cutoff = now
            .unix_secs()
            .saturating_sub(engine.inner.config.clock_skew_leeway.as_secs());
        let mut revoked = Vec::new();
        engine
            .inner
            .store
            .read(&mut |db| db.for_each_revoked_registration(cutoff, &mut |id| revoked.push(id)))?;
        let observer = engine.inner.observer.read().ok().and_then(|o| o.clone());
        for id in revoked {
            if engine.inner.families.get(id).is_some() {
                engine.inner.families.revoke(id);
                if let Some(o) = &observer {
                    o.registration_revoked(id);
                }
            }
        }
        engine.inner.sync_keys()
    }

    fn closed(&self) -> bool {
        self.0.strong_count() == 0
    }
}

/// How often the follower reads the feed when no notification comes.
pub(super) fn poll_interval(max_lag: Duration) -> Duration {
    (max_lag / 4).min(Duration::from_secs(1))
}

pub use tessera_proto::admin::records::FeedStatus;

impl Inner {
    /// Fail closed when this node's view of the other nodes' changes is too old.
    #[inline]
    pub(crate) fn check_feed(&self) -> Result<(), Error> {
        let Some(h) = self.feed.get() else {
            return Ok(());
        };
        match h.since_caught_up() {
            Some(d) if d <= self.config.feed_max_lag => Ok(()),
            Some(d) => Err(Error::Unavailable(format!(
                "this node last caught up with the shared store {} ms ago",
                d.as_millis()
            ))),
            None => Err(Error::Unavailable(
                "this node has not caught up with the shared store yet".into(),
            )),
        }
    }

    pub(crate) fn feed_status(&self) -> Option<FeedStatus> {
        let h: &Arc<FeedHealth> = self.feed.get()?;
        let position = h.position.load(std::sync::atomic::Ordering::Acquire);
        let head = h.head.load(std::sync::atomic::Ordering::Acquire);
        let since = h.since_caught_up();
        Some(FeedStatus {
            position,
            head,
            lag: head.saturating_sub(position),
            since_caught_up_ms: since.map(|d| d.as_millis() as u64),
            current: self.check_feed().is_ok(),
        })
    }

    fn apply_changes(&self, changes: &[Change]) {
        let observer = self.observer.read().ok().and_then(|o| o.clone());
        let mut keys = false;
        for c in changes {
            match c {
                Change::Family {
                    id,
                    generation,
                    binding,
                    expires_at,
                } => {
                    let st = FamilyState {
                        generation: *generation,
                        binding: *binding,
                    };
                    let _ = self.families.set(*id, st, *expires_at);
                }
                Change::Revoked { id } => {
                    self.families.revoke(*id);
                    if let Some(o) = &observer {
                        o.registration_revoked(*id);
                    }
                }
                Change::Operation { id, state } => {
                    if let Some(o) = &observer {
                        o.operation_changed(*id, *state);
                    }
                }
                Change::Keys => keys = true,
                Change::Logged => {
                    if let Some(o) = &observer {
                        o.logged();
                    }
                }
            }
        }
        if keys {
            // A failure leaves this node on the epochs it has; the next key change (or a
            // restart) tries again, and RTs of the other node's new epoch meanwhile fail here
            // as unknown.
            let _ = self.sync_keys();
        }
    }

    /// Take up key epochs another node added or retired: derive what is new through the
    /// keeper, drop the RT keys of retired epochs.
    pub(crate) fn sync_keys(&self) -> Result<(), Error> {
        let _serial = self
            .rotation
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut recs = Vec::new();
        self.store.read(&mut |db| {
            recs = db.key_epochs()?;
            Ok(())
        })?;
        let ring = self.keys.load_full();
        let mut list = ring.epochs().to_vec();
        let mut grew = false;
        for rec in &recs {
            if rec.epoch as usize > list.len() {
                list.push(Arc::new(crate::keys::EpochKeys::derive(
                    &*self.keeper,
                    rec.epoch,
                )?));
                grew = true;
            }
            let live = rec.retired_at.is_none();
            let loaded = self.rt_keys.get(rec.epoch).is_some();
            if live && !loaded && rec.epoch > ring.current {
                self.rt_keys.install(
                    rec.epoch,
                    crate::keys::RtKeyTable::derive(&*self.keeper, rec.epoch)?,
                );
            } else if !live && loaded {
                self.rt_keys.retire(rec.epoch);
            }
        }
        if grew {
            let current = list.len() as u32;
            self.keys.store(Arc::new(crate::keys::Keyring::new(
                current,
                list,
                ring.dummy().clone(),
            )));
        }
        self.write_validator_keys(&[])
    }
}
