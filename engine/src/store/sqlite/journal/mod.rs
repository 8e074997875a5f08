//! The refresh journal: where a refresh records a registration's new generation.
//!
//! A refresh changes four numbers of one registration (generation, key epoch, issue and expiry
//! time). Updating the registration's row in place dirties a random 4 KiB page of a table that
//! a million registrations make far larger than any cache, and each dirty page costs a WAL
//! frame (written, checksummed and fsynced) per batch. Instead a refresh appends a short row to
//! `refresh_journal`, so a whole batch of refreshes shares one or two sequential pages, and the
//! journal is *folded* into the registration rows in large sorted batches (every
//! [`DEFAULT_FOLD_ROWS`] rows, and when the store opens).
//!
//! A fold is *sealed* first: the newest state of each registration refreshed since the last
//! fold is set aside, sorted by id. The writer then writes the sealed states into the rows a
//! slice at a time ([`DEFAULT_FOLD_SLICE`] per batch), so no batch, and none of the refreshes
//! waiting behind it, stalls for the whole fold; the last slice moves the watermark.
//!
//! The state of a registration is therefore its row overlaid with its newest journal entry (the
//! one with the highest generation: generations only grow). Who sees what:
//! - the writer keeps every unfolded state in memory ([`Overlay`], committed) plus the states
//!   its current batch wrote ([`BatchJournal`], uncommitted until the batch commits);
//! - the store's own read connections overlay committed states from the same [`Overlay`];
//! - a reader in another process ([`Follower`], used by the local validator) follows the
//!   journal's rows above the fold watermark by sequence number inside its read transaction,
//!   so it sees exactly what the snapshot holds.
//!
//! A refresh is also an audit event, and writing it as a row of its own in `audit` took about a
//! quarter of the writer's time per refresh (measured in docs/reliability.md). So the journal
//! row carries it (`audit_at`, `audit_source`, and `audit_actor` unless the actor is a device):
//! journal rows and audit rows take their sequence numbers from one counter
//! ([`BatchJournal::next_seq`]), and the audit reads list journal events with the others in
//! sequence order ([`audit_from_journal`]).
//!
//! A fold therefore leaves the journal's rows where they are, as the refresh part of the audit
//! log: it writes the newest states into the registration rows and moves a watermark in `meta`
//! (`journal_folded_upto`) to the last sequence number it covered. The rows above the watermark
//! are the unfolded ones. (Until 2026-12 a fold also copied the events into `audit` and deleted
//! the rows; that copy was four fifths of a fold's time, measured in docs/reliability.md.)

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use rusqlite::{Connection, OptionalExtension};

use super::super::sql::sql_u64;
use super::super::{RefreshAudit, REFRESH_ACTION};
use crate::error::Error;
use crate::model::{Actor, RegistrationRecord};

/// Journal rows after which the writer folds the journal into the registration rows.
pub(crate) const DEFAULT_FOLD_ROWS: u64 = 65_536;

/// Sealed states a batch writes into the registration rows while a fold is in progress.
pub(crate) const DEFAULT_FOLD_SLICE: usize = 1_024;

/// `meta` key holding the sequence number up to which the journal is folded into the
/// registration rows (absent: nothing is).
const META_FOLDED_UPTO: &str = "journal_folded_upto";

/// The actor of a journal row's event when `audit_actor` is NULL: devices make nearly every
/// refresh, so their rows leave it out.
const DEVICE_ACTOR: &str = Actor::DEVICE;

/// The audit events that journal rows carry, as rows of `audit`'s columns (`seq, at, actor,
/// source, action, subject, detail`); the detail is `{"expires_at", "generation"}`, keys in the
/// order `serde_json` writes them.
pub(crate) fn audit_from_journal() -> String {
    format!(
        "SELECT seq, audit_at, coalesce(audit_actor, '{DEVICE_ACTOR}'), audit_source, \
         '{REFRESH_ACTION}', CAST(registration_id AS TEXT), \
         json_object('expires_at', expires_at, 'generation', generation) \
         FROM refresh_journal WHERE audit_at IS NOT NULL"
    )
}

/// What a refresh changes in a registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RefreshState {
    generation: u32,
    key_epoch: u32,
    issued_at: u64,
    expires_at: u64,
}

impl RefreshState {
    pub(crate) fn of(rec: &RegistrationRecord) -> Self {
        Self {
            generation: rec.generation,
            key_epoch: rec.key_epoch,
            issued_at: rec.issued_at,
            expires_at: rec.expires_at,
        }
    }

    /// Bring `rec` up to this state if it is newer.
    pub(crate) fn apply(self, rec: &mut RegistrationRecord) {
        if self.generation > rec.generation {
            rec.generation = self.generation;
            rec.key_epoch = self.key_epoch;
            rec.issued_at = self.issued_at;
            rec.expires_at = self.expires_at;
        }
    }

    /// Record `s` as `id`'s state in `map` unless the map already holds a newer one.
    fn keep_newest(map: &mut HashMap<u64, Self>, id: u64, s: Self) {
        let e = map.entry(id).or_insert(s);
        if s.generation > e.generation {
            *e = s;
        }
    }

    /// The SQL parameters `(registration id, generation, key epoch, issued at, expires at)`.
    fn params(self, id: u64) -> (i64, u32, u32, i64, i64) {
        (
            sql_u64(id),
            self.generation,
            self.key_epoch,
            sql_u64(self.issued_at),
            sql_u64(self.expires_at),
        )
    }
}

/// States sorted by registration id.
type Sorted = Arc<[(u64, RefreshState)]>;

/// `states` sorted by registration id (the order a fold writes rows in).
fn sorted(states: impl IntoIterator<Item = (u64, RefreshState)>) -> Vec<(u64, RefreshState)> {
    let mut v: Vec<_> = states.into_iter().collect();
    v.sort_unstable_by_key(|(k, _)| *k);
    v
}

fn find(sorted: &Sorted, id: u64) -> Option<RefreshState> {
    sorted
        .binary_search_by_key(&id, |(k, _)| *k)
        .ok()
        .map(|i| sorted[i].1)
}

/// Committed journal states not yet folded, shared by the writer and the read connections.
///
/// States go to `current` when their batch commits, to `folding` when a fold is sealed, and to
/// `previous` when that fold completes. `previous` is kept one more fold round, so a reader
/// whose snapshot predates the fold still finds them.
#[derive(Debug, Default)]
pub(crate) struct Overlay {
    maps: RwLock<Maps>,
}

#[derive(Debug, Default)]
struct Maps {
    current: HashMap<u64, RefreshState>,
    folding: Sorted,
    previous: Sorted,
}

impl Overlay {
    /// The newest committed state of `id` that may not be in its row yet.
    pub(crate) fn get(&self, id: u64) -> Option<RefreshState> {
        let m = self.maps.read().unwrap_or_else(PoisonError::into_inner);
        m.current
            .get(&id)
            .copied()
            .or_else(|| find(&m.folding, id))
            .or_else(|| find(&m.previous, id))
    }

    /// Seal a fold: the committed states move from `current` to `folding`, sorted by id. Only
    /// the writer calls this, and only it changes `current`, so the copy is sorted outside the
    /// lock.
    fn seal(&self) {
        let v = {
            let m = self.maps.read().unwrap_or_else(PoisonError::into_inner);
            sorted(m.current.iter().map(|(k, s)| (*k, *s)))
        };
        let mut m = self.maps.write().unwrap_or_else(PoisonError::into_inner);
        m.folding = v.into();
        m.current.clear();
    }

    /// The states of the fold in progress.
    fn folding(&self) -> Sorted {
        let m = self.maps.read().unwrap_or_else(PoisonError::into_inner);
        m.folding.clone()
    }

    /// A batch committed: its states become visible to readers (if it completed a fold, the
    /// folded states move to `previous`).
    pub(crate) fn commit(&self, batch: &mut BatchJournal) {
        let mut m = self.maps.write().unwrap_or_else(PoisonError::into_inner);
        if batch.completes_fold() {
            m.previous = std::mem::take(&mut m.folding);
        }
        for (id, s) in batch.states.drain() {
            RefreshState::keep_newest(&mut m.current, id, s);
        }
        batch.clear();
    }
}

/// A fold in progress.
#[derive(Debug)]
struct Fold {
    /// The watermark it moves to: every row numbered up to it is sealed.
    upto: i64,
    /// How many states were sealed.
    len: usize,
    /// Sealed states written into the rows by committed batches.
    done: usize,
}

/// The writer's journal bookkeeping for the batch in progress.
#[derive(Debug, Default)]
pub(crate) struct BatchJournal {
    /// States written by this batch (not yet committed).
    states: HashMap<u64, RefreshState>,
    /// Undo log of the current job: the batch state each write replaced.
    undo: Vec<(u64, Option<RefreshState>)>,
    /// Rows appended by this batch.
    rows: u64,
    /// The fold in progress, if any.
    fold: Option<Fold>,
    /// How many sealed states are written once this batch commits.
    slice_end: Option<usize>,
    /// Committed rows in the journal since the last fold was sealed.
    pub(crate) committed_rows: u64,
    /// The last sequence number handed out to a journal or audit row.
    last_seq: i64,
}

impl BatchJournal {
    /// The writer's journal for the store behind `conn`, numbering on after every journal and
    /// audit row it holds.
    pub(crate) fn open(conn: &Connection) -> Result<Self, Error> {
        let last_seq = conn.query_row(
            "SELECT max(coalesce((SELECT max(seq) FROM audit), 0), \
             coalesce((SELECT max(seq) FROM refresh_journal), 0))",
            [],
            |r| r.get(0),
        )?;
        Ok(Self {
            last_seq,
            ..Self::default()
        })
    }

    /// The sequence number of the next journal or audit row. Numbers handed to a job or batch
    /// that is rolled back are not reused: the audit sequence may have gaps, never disorder.
    pub(crate) fn next_seq(&mut self) -> i64 {
        self.last_seq += 1;
        self.last_seq
    }

    pub(crate) fn get(&self, id: u64) -> Option<RefreshState> {
        self.states.get(&id).copied()
    }

    /// Append a refresh to the journal, with its audit event.
    pub(crate) fn append(
        &mut self,
        conn: &Connection,
        id: u64,
        s: RefreshState,
        audit: RefreshAudit<'_>,
    ) -> Result<(), Error> {
        let (id_, generation, key_epoch, issued_at, expires_at) = s.params(id);
        let seq = self.next_seq();
        conn.prepare_cached(
            "INSERT INTO refresh_journal (seq, registration_id, generation, key_epoch, \
             issued_at, expires_at, audit_at, audit_source, audit_actor) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?
        .execute(rusqlite::params![
            seq,
            id_,
            generation,
            key_epoch,
            issued_at,
            expires_at,
            sql_u64(audit.at.unix_millis()),
            audit.source,
            Some(audit.actor).filter(|a| *a != DEVICE_ACTOR),
        ])?;
        self.undo.push((id, self.states.insert(id, s)));
        self.rows += 1;
        Ok(())
    }

    /// A job starts: forget the previous job's undo log.
    pub(crate) fn begin_job(&mut self) {
        self.undo.clear();
    }

    /// The current job was rolled back: undo its writes to the batch state.
    pub(crate) fn rollback_job(&mut self) {
        for (id, prev) in self.undo.drain(..).rev() {
            self.rows -= 1;
            match prev {
                Some(s) => self.states.insert(id, s),
                None => self.states.remove(&id),
            };
        }
    }

    /// Start of a batch: seal a fold if the journal has grown past `fold_rows` since the last
    /// one, and write the next `slice` states of the fold in progress (with the watermark, if
    /// they are the last).
    pub(crate) fn start(
        &mut self,
        conn: &Connection,
        overlay: &Overlay,
        fold_rows: u64,
        slice: usize,
    ) -> Result<(), Error> {
        self.clear();
        if self.fold.is_none() && self.committed_rows >= fold_rows {
            // Every row numbered up to `last_seq` is committed (or was rolled back): the
            // overlay holds the newest state of each. Sealing changes nothing in the store,
            // so it stands even if this batch fails.
            overlay.seal();
            self.fold = Some(Fold {
                upto: self.last_seq,
                len: overlay.folding().len(),
                done: 0,
            });
            self.committed_rows = 0;
        }
        if let Some(f) = &self.fold {
            let end = f.done.saturating_add(slice).min(f.len);
            write_states(conn, &overlay.folding()[f.done..end])?;
            self.slice_end = Some(end);
            if self.completes_fold() {
                set_folded_upto(conn, f.upto)?;
            }
        }
        Ok(())
    }

    /// Whether this batch writes the last slice of the fold in progress (and its watermark).
    fn completes_fold(&self) -> bool {
        matches!((&self.fold, self.slice_end), (Some(f), Some(end)) if end == f.len)
    }

    /// The batch committed: count its rows, and advance the fold in progress.
    pub(crate) fn committed(&mut self) {
        if self.completes_fold() {
            self.fold = None;
        } else if let (Some(f), Some(end)) = (&mut self.fold, self.slice_end) {
            f.done = end;
        }
        self.committed_rows += self.rows;
    }

    /// Forget the batch (after it committed or failed).
    pub(crate) fn clear(&mut self) {
        self.states.clear();
        self.undo.clear();
        self.rows = 0;
        self.slice_end = None;
    }
}

/// Write `states` into the registration rows (inside the caller's transaction); a row only
/// ever moves to a newer generation.
fn write_states(conn: &Connection, states: &[(u64, RefreshState)]) -> Result<(), Error> {
    let mut st = conn.prepare_cached(
        "UPDATE registrations SET generation = ?2, key_epoch = ?3, issued_at = ?4, \
         expires_at = ?5 WHERE id = ?1 AND generation < ?2",
    )?;
    for (id, s) in states {
        st.execute(s.params(*id))?;
    }
    Ok(())
}

/// Write `states`, the newest of the journal rows numbered up to `upto`, into the registration
/// rows and move the watermark to `upto` (inside the caller's transaction), all at once. The
/// rows stay: they are the refresh events of the audit log.
fn fold(conn: &Connection, states: &[(u64, RefreshState)], upto: i64) -> Result<(), Error> {
    write_states(conn, states)?;
    set_folded_upto(conn, upto)
}

/// Move the fold watermark to `upto`.
fn set_folded_upto(conn: &Connection, upto: i64) -> Result<(), Error> {
    conn.prepare_cached(
        "INSERT INTO meta (key, value) VALUES (?1, ?2) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )?
    .execute(rusqlite::params![META_FOLDED_UPTO, upto.to_string()])?;
    Ok(())
}

/// The fold watermark: journal rows numbered above it are not folded yet.
pub(crate) fn folded_upto(conn: &Connection) -> Result<i64, Error> {
    Ok(conn
        .prepare_cached("SELECT CAST(value AS INTEGER) FROM meta WHERE key = ?1")?
        .query_row([META_FOLDED_UPTO], |r| r.get(0))
        .optional()?
        .unwrap_or(0))
}

/// Fold whatever the journal holds above the watermark (when the store opens, before anything
/// reads the rows).
pub(crate) fn fold_all(conn: &mut Connection) -> Result<(), Error> {
    let tx = conn.transaction()?;
    let mut f = Follower::default();
    f.catch_up(&tx)?;
    if !f.states.is_empty() {
        fold(&tx, &sorted(f.states), f.last_seq)?;
    }
    tx.commit()?;
    Ok(())
}

/// A reader that follows the journal itself (another process has the writer): it reads the
/// rows appended since it last looked, inside the caller's read transaction.
#[derive(Debug, Default)]
pub(crate) struct Follower {
    /// The fold watermark when it last looked.
    folded_upto: i64,
    last_seq: i64,
    states: HashMap<u64, RefreshState>,
}

impl Follower {
    pub(crate) fn get(&self, id: u64) -> Option<RefreshState> {
        self.states.get(&id).copied()
    }

    /// Read the unfolded rows the journal gained since the last call (after a fold: all the
    /// rows above the new watermark, as what it folded is in the registration rows now).
    pub(crate) fn catch_up(&mut self, conn: &Connection) -> Result<(), Error> {
        let upto = folded_upto(conn)?;
        if upto != self.folded_upto {
            self.folded_upto = upto;
            self.last_seq = upto;
            self.states.clear();
        }
        let mut st = conn.prepare_cached(
            "SELECT seq, registration_id, generation, key_epoch, issued_at, expires_at \
             FROM refresh_journal WHERE seq > ?1 ORDER BY seq",
        )?;
        let mut rows = st.query([self.last_seq])?;
        while let Some(r) = rows.next()? {
            self.last_seq = r.get(0)?;
            let id = r.get::<_, i64>(1)? as u64;
            let s = RefreshState {
                generation: r.get(2)?,
                key_epoch: r.get(3)?,
                issued_at: r.get::<_, i64>(4)? as u64,
                expires_at: r.get::<_, i64>(5)? as u64,
            };
            RefreshState::keep_newest(&mut self.states, id, s);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
