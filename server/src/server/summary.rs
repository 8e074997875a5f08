//! Device requests at `info`: not a line each (a fleet refreshes thousands of times a second),
//! but one summary a minute of what was asked and how much of it was refused.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tessera_proto::wire::kind;

/// The kinds a device sends, in the summary's order.
const KINDS: [u8; 5] = [
    kind::BEGIN,
    kind::WAIT,
    kind::REFRESH,
    kind::INTROSPECT,
    kind::CANCEL,
];

/// Device requests answered since the last summary, per kind: all, and those refused.
pub(crate) struct DeviceSummary {
    answered: [AtomicU64; KINDS.len()],
    refused: [AtomicU64; KINDS.len()],
}

/// The process's counts (one server per process, or the sum of those in it).
pub(crate) static DEVICE: DeviceSummary = DeviceSummary {
    answered: [const { AtomicU64::new(0) }; KINDS.len()],
    refused: [const { AtomicU64::new(0) }; KINDS.len()],
};

/// How often the summary is logged.
pub(crate) const EVERY: Duration = Duration::from_secs(60);

impl DeviceSummary {
    /// A device request of `kind` was answered, `ok` or refused.
    pub(crate) fn count(&self, kind_code: u8, ok: bool) {
        if let Some(i) = KINDS.iter().position(|k| *k == kind_code) {
            self.answered[i].fetch_add(1, Ordering::Relaxed);
            if !ok {
                self.refused[i].fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// What was answered since the last call, per kind (answered, refused), and start again;
    /// `None` when nothing was.
    fn take(&self) -> Option<[(u64, u64); KINDS.len()]> {
        let mut out = [(0, 0); KINDS.len()];
        for (i, o) in out.iter_mut().enumerate() {
            *o = (
                self.answered[i].swap(0, Ordering::Relaxed),
                self.refused[i].swap(0, Ordering::Relaxed),
            );
        }
        out.iter().any(|(a, _)| *a > 0).then_some(out)
    }

    /// Log what was answered since the last call (nothing when nothing was), and start again.
    pub(crate) fn log(&self, over: Duration) {
        let Some(counts) = self.take() else {
            return;
        };
        let part = |i: usize| format!("{} ({} refused)", counts[i].0, counts[i].1);
        tracing::info!(
            seconds = over.as_secs(),
            begin = %part(0),
            wait = %part(1),
            refresh = %part(2),
            introspect = %part(3),
            cancel = %part(4),
            "device requests"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_kind_and_starts_again_after_each_summary() {
        let s = DeviceSummary {
            answered: [const { AtomicU64::new(0) }; KINDS.len()],
            refused: [const { AtomicU64::new(0) }; KINDS.len()],
        };
        assert_eq!(s.take(), None, "nothing answered: no summary");
        s.count(kind::REFRESH, true);
        s.count(kind::REFRESH, false);
        s.count(kind::BEGIN, true);
        s.count(kind::STATUS, true); // not a device request
        let t = s.take().unwrap();
        assert_eq!(t[2], (2, 1), "refresh");
        assert_eq!(t[0], (1, 0), "begin");
        assert_eq!(t[1], (0, 0), "wait");
        assert_eq!(s.take(), None, "counted once");
    }
}
