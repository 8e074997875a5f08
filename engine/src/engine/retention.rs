//! Retention: deleting audit events, leak signals and refresh events past their age.
//!
//! Each [`RetentionClass`] has its own age ([`Retention`]) and its own cursor in its table:
//! rows are numbered in time order, so every row of a class up to its cursor is gone, and a
//! pass goes on from there in steps of [`STEP_ROWS`] rows, one small write job each, until it
//! meets a row of the class that is still young. No step holds the writer for long, and a row
//! is looked at about once per class in the life of the process.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::Engine;
use crate::error::Error;
use crate::store::RetentionClass;
use crate::time::Timestamp;

/// Rows one retention step looks at.
pub(crate) const STEP_ROWS: usize = 1000;

/// How often housekeeping runs retention (ages are counted in days).
pub(crate) const EVERY: Duration = Duration::from_secs(60);

/// Where each class's pass stands, and when the last pass ran (Unix seconds; 0: never).
#[derive(Debug, Default)]
pub(crate) struct RetentionState {
    cursors: std::sync::Mutex<HashMap<RetentionClass, u64>>,
    last_run: std::sync::atomic::AtomicU64,
}

/// What a retention pass deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Deleted {
    pub events: usize,
    pub leak_signals: usize,
}

impl Engine {
    /// The time before which rows of `class` go, if it has an age.
    fn retention_cutoff(&self, class: RetentionClass, now: Timestamp) -> Option<Timestamp> {
        let config = &self.inner.config;
        let r = config.retention;
        let age = match class {
            RetentionClass::Events => r.audit?,
            // Kept while a revoked registration's RT could still be presented.
            RetentionClass::Revocations => r
                .audit?
                .max(config.max_rt_lifetime + config.clock_skew_leeway + config.refresh_grace),
            RetentionClass::RefreshEvents | RetentionClass::RefreshJournal => r.refresh_events?,
            RetentionClass::LeakSignals => r.leak_signals?,
        };
        let age_ms = u64::try_from(age.as_millis()).unwrap_or(u64::MAX);
        Some(Timestamp::from_unix_millis(
            now.unix_millis().saturating_sub(age_ms),
        ))
    }

    /// Delete what is older than its retention, if the last pass is at least [`EVERY`] ago.
    pub(crate) fn enforce_retention(&self, now: Timestamp) -> Result<Deleted, Error> {
        let state = &self.inner.retention;
        let last = state.last_run.load(Ordering::Relaxed);
        let secs = now.unix_secs();
        if last != 0 && secs < last.saturating_add(EVERY.as_secs()) {
            return Ok(Deleted::default());
        }
        state.last_run.store(secs.max(1), Ordering::Relaxed);
        let mut deleted = Deleted::default();
        for class in RetentionClass::ALL {
            let Some(cutoff) = self.retention_cutoff(class, now) else {
                continue;
            };
            let mut cursor = *state
                .cursors
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(&class)
                .unwrap_or(&0);
            loop {
                let step = self.write(now, move |tx| {
                    tx.db.delete_old(class, cursor, cutoff, STEP_ROWS)
                })?;
                cursor = step.cursor;
                match class {
                    RetentionClass::LeakSignals => deleted.leak_signals += step.deleted,
                    _ => deleted.events += step.deleted,
                }
                if step.done {
                    break;
                }
            }
            state
                .cursors
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(class, cursor);
        }
        Ok(deleted)
    }
}
