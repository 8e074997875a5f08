//! Which addresses each registration's RTs are refreshed from, within a window: the evidence
//! for the `many_sources` leak signal (one RT family used from many places).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::model::RegistrationId;
use crate::time::Timestamp;

/// When one registration counts as used from too many addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ManySources {
    /// Distinct addresses within `window` above which the signal is raised (default 4).
    pub threshold: u32,
    /// The window (default one hour).
    pub window: Duration,
}

impl Default for ManySources {
    fn default() -> Self {
        Self {
            threshold: 4,
            window: Duration::from_secs(3600),
        }
    }
}

#[derive(Debug)]
struct Window {
    start: Timestamp,
    addresses: Vec<String>,
    raised: bool,
}

/// Above this many tracked registrations, windows that have ended are dropped.
const PRUNE_AT: usize = 100_000;

/// Addresses per registration per window. Used on the store's writer thread only, so its lock
/// is never contended.
#[derive(Debug)]
pub(crate) struct SourceTracker {
    rule: ManySources,
    windows: Mutex<HashMap<RegistrationId, Window>>,
}

impl SourceTracker {
    pub(crate) fn new(rule: ManySources) -> Self {
        Self {
            rule,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Record that `reg` was used from `address` at `now`. Returns the number of distinct
    /// addresses when this use takes the registration over the threshold for the first time in
    /// its window (raise the signal then, once), `None` otherwise.
    pub(crate) fn record(
        &self,
        reg: RegistrationId,
        address: &str,
        now: Timestamp,
    ) -> Option<usize> {
        let mut map = self
            .windows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let window = self.rule.window;
        if map.len() >= PRUNE_AT {
            map.retain(|_, w| now.saturating_duration_since(w.start) < window);
        }
        let w = map.entry(reg).or_insert_with(|| Window {
            start: now,
            addresses: Vec::new(),
            raised: false,
        });
        if now.saturating_duration_since(w.start) >= window {
            *w = Window {
                start: now,
                addresses: Vec::new(),
                raised: false,
            };
        }
        if w.raised || w.addresses.iter().any(|a| a == address) {
            return None;
        }
        w.addresses.push(address.to_owned());
        if w.addresses.len() > self.rule.threshold as usize {
            w.raised = true;
            return Some(w.addresses.len());
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raises_once_per_window_above_the_threshold() {
        let t = SourceTracker::new(ManySources {
            threshold: 2,
            window: Duration::from_secs(60),
        });
        let r = RegistrationId::new(1);
        let t0 = Timestamp::from_unix_secs(1_000);
        assert_eq!(t.record(r, "a", t0), None);
        assert_eq!(t.record(r, "a", t0), None, "the same address counts once");
        assert_eq!(t.record(r, "b", t0), None);
        assert_eq!(t.record(r, "c", t0), Some(3));
        assert_eq!(t.record(r, "d", t0), None, "raised once per window");
        assert_eq!(t.record(RegistrationId::new(2), "a", t0), None);
        let later = Timestamp::from_unix_secs(1_060);
        assert_eq!(t.record(r, "x", later), None, "a new window starts over");
        assert_eq!(t.record(r, "y", later), None);
        assert_eq!(t.record(r, "z", later), Some(3));
    }
}
