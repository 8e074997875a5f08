//! The durable store: a trait the engine's logic is written against, and the embedded SQLite
//! implementation with a group-commit writer.
//!
//! Every change runs as a *write job* on the store's single writer: jobs see one consistent
//! view, run one after another, and each batch of jobs is made durable by one commit before
//! any of them is acknowledged. A job that fails is rolled back alone (a savepoint), so one bad
//! request never spoils its batch; a job that makes every check before its first write (a
//! refresh) may skip its savepoint ([`Store::submit_refresh`]). Refreshes go to an
//! append-only journal that is folded into the registration rows in batches (`journal.rs`).
//!
//! For several nodes on one database, the PostgreSQL store (`pg/`) implements the same traits
//! with its own group commit, and lets PostgreSQL's locks keep the engine's rules across nodes.

mod feed;
mod pg;
mod queue;
mod sql;
mod sqlite;

pub use feed::{Change, FeedHealth, FeedSink};
pub use pg::{redacted_url, PostgresOptions, PostgresStore};
pub use sqlite::{backup, BackupReport};
pub use sqlite::{migration_backup_path, SqliteOptions, SqliteReader, SqliteStore, DATABASE_FILE};

use crate::error::Error;
use crate::model::{
    AdminTokenId, AdminTokenRecord, AuditEvent, BlockRecord, DeviceId, LeakKind, LeakSignal,
    OperationId, OperationRecord, OperationState, PtId, PtRecord, RegistrationId,
    RegistrationRecord,
};
use crate::time::Timestamp;

/// What retention deletes, each class by its own age.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RetentionClass {
    /// Audit events but refreshes and revocations.
    Events,
    /// `registration.revoke` events: validators read revocations from them, so they are kept
    /// at least as long as a revoked registration's RT could still be presented.
    Revocations,
    /// `registration.refresh` events in `audit` (on SQLite, only those from before the
    /// refresh journal carried them).
    RefreshEvents,
    /// Refresh-journal rows (SQLite) already folded into their registrations: the refresh
    /// events since.
    RefreshJournal,
    /// Leak signals.
    LeakSignals,
}

impl RetentionClass {
    /// Every class.
    pub const ALL: [RetentionClass; 5] = [
        Self::Events,
        Self::Revocations,
        Self::RefreshEvents,
        Self::RefreshJournal,
        Self::LeakSignals,
    ];
}

/// What one [`StoreTxn::delete_old`] step did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionStep {
    /// Rows deleted.
    pub deleted: usize,
    /// Where the next step starts: every row of the class up to here is gone.
    pub cursor: u64,
    /// Nothing more of the class is old enough (or the table ends).
    pub done: bool,
}

pub use tessera_proto::admin::records::{CommitStats, KeyEpochRecord, StoreCounts};

/// The action of the audit events [`StoreTxn::refresh_registration`] records.
pub const REFRESH_ACTION: &str = "registration.refresh";

/// The file in a node's data directory that says its store is PostgreSQL (holding where it
/// is, without a password): written by every start on PostgreSQL, removed by a start on
/// SQLite. The local validator refuses such a directory instead of reading a `tessera.db`
/// that may have been left there.
pub const POSTGRES_MARKER_FILE: &str = "store-is-postgresql";

/// Mark `dir` as a PostgreSQL node's (`on`: the store's description), or unmark it.
pub(crate) fn mark_postgres(dir: &std::path::Path, on: Option<&str>) -> Result<(), Error> {
    let path = dir.join(POSTGRES_MARKER_FILE);
    let r = match on {
        Some(target) => std::fs::write(&path, format!("{target}\n")),
        None => match std::fs::remove_file(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            r => r,
        },
    };
    r.map_err(|e| Error::store(format!("{}: {e}", path.display())))
}

/// `Err` when `dir` is a PostgreSQL node's data directory: what a reader of its SQLite store
/// must refuse.
pub(crate) fn refuse_postgres_dir(dir: &std::path::Path) -> Result<(), Error> {
    match std::fs::read_to_string(dir.join(POSTGRES_MARKER_FILE)) {
        Ok(target) => Err(Error::store(format!(
            "{} belongs to a node whose store is PostgreSQL ({}): the local validator reads \
             only a SQLite store; use the service validator (remote mode) beside such a node",
            dir.display(),
            target.trim()
        ))),
        Err(_) => Ok(()),
    }
}

/// Who refreshed, when and from where: the audit event recorded with the refresh.
#[derive(Debug, Clone, Copy)]
pub struct RefreshAudit<'a> {
    /// When.
    pub at: Timestamp,
    /// Who (`device` for every refresh a device makes).
    pub actor: &'a str,
    /// From where.
    pub source: Option<&'a str>,
}

/// An audit event before it has a sequence number.
#[derive(Debug, Clone)]
pub struct NewAuditEvent<'a> {
    /// When.
    pub at: Timestamp,
    /// Who.
    pub actor: &'a str,
    /// From where.
    pub source: Option<&'a str>,
    /// What.
    pub action: &'a str,
    /// On what.
    pub subject: &'a str,
    /// Details.
    pub detail: serde_json::Value,
}

/// A leak signal before it has an id.
#[derive(Debug, Clone)]
pub struct NewLeakSignal {
    /// When.
    pub at: Timestamp,
    /// What kind.
    pub kind: LeakKind,
    /// PT involved.
    pub pt_id: Option<PtId>,
    /// Registration involved.
    pub registration_id: Option<RegistrationId>,
    /// Operation involved.
    pub operation_id: Option<OperationId>,
    /// Where from.
    pub source: Option<String>,
    /// What was done.
    pub action: String,
    /// Detail.
    pub detail: String,
}

/// Where a page of operations ends: the last one's creation time and id.
pub type OperationCursor = (Timestamp, OperationId);

/// Filters for listing operations.
#[derive(Debug, Clone, Default)]
pub struct OperationQuery {
    /// Only this state: as stored, or as operators see it at [`as_of`](Self::as_of) if that is
    /// given.
    pub state: Option<OperationState>,
    /// Judge states at this time: a pending operation whose expiry has come counts as expired
    /// (before the sweep has stored that), and no longer as pending.
    pub as_of: Option<Timestamp>,
    /// Only this PT.
    pub pt_id: Option<PtId>,
    /// At most this many (newest first); 0 means 100.
    pub limit: usize,
    /// Only operations older than this one (created earlier, or at the same time with a smaller
    /// id): the next page after the last operation of the previous one.
    pub before: Option<OperationCursor>,
}

/// Filters for listing registrations.
#[derive(Debug, Clone, Default)]
pub struct RegistrationQuery {
    /// Only this device id.
    pub device_id: Option<DeviceId>,
    /// Only this PT.
    pub pt_id: Option<PtId>,
    /// Only active ones.
    pub active_only: bool,
    /// At most this many (newest first); 0 means 100.
    pub limit: usize,
    /// Only registrations with a smaller id: the next page after the previous one's last.
    pub before: Option<RegistrationId>,
}

/// Reads, inside a write job or on a read connection.
pub trait StoreRead {
    /// A metadata value.
    fn meta(&self, key: &str) -> Result<Option<String>, Error>;
    /// Every key epoch, oldest first.
    fn key_epochs(&self) -> Result<Vec<KeyEpochRecord>, Error>;
    /// A PT and its verifier.
    fn pt(&self, id: &PtId) -> Result<Option<(PtRecord, [u8; 32])>, Error>;
    /// PTs, newest first.
    fn list_pts(
        &self,
        limit: usize,
        include_revoked: bool,
        before: Option<(Timestamp, PtId)>,
    ) -> Result<Vec<PtRecord>, Error>;
    /// An operation.
    fn operation(&self, id: &OperationId) -> Result<Option<OperationRecord>, Error>;
    /// Operations of a PT stored as pending (possibly past their expiry).
    fn pending_operations(&self, pt: &PtId) -> Result<Vec<OperationRecord>, Error>;
    /// The PT's operations stored as pending (possibly past their expiry) whose instance-nonce
    /// digest is one of `digests` (one per live key epoch): an index lookup, whatever the
    /// number of pending operations.
    fn pending_operations_by_nonce(
        &self,
        pt: &PtId,
        digests: &[crate::model::NonceDigest],
    ) -> Result<Vec<OperationRecord>, Error>;
    /// How many of the PT's operations are pending and not past their expiry at `now`.
    fn pending_count(&self, pt: &PtId, now: Timestamp) -> Result<usize, Error>;
    /// The PT's operations stored as pending that asked for `device`.
    fn pending_operations_for_device(
        &self,
        pt: &PtId,
        device: &crate::model::DeviceId,
    ) -> Result<Vec<OperationRecord>, Error>;
    /// Operations matching a query, newest first.
    fn list_operations(&self, q: &OperationQuery) -> Result<Vec<OperationRecord>, Error>;
    /// A registration.
    fn registration(&self, id: RegistrationId) -> Result<Option<RegistrationRecord>, Error>;
    /// Registrations matching a query, newest first.
    fn list_registrations(&self, q: &RegistrationQuery) -> Result<Vec<RegistrationRecord>, Error>;
    /// Ids of active registrations of a device.
    fn active_registrations_of_device(&self, d: &DeviceId) -> Result<Vec<RegistrationId>, Error>;
    /// Ids of active registrations created through a PT.
    fn active_registrations_of_pt(&self, pt: &PtId) -> Result<Vec<RegistrationId>, Error>;
    /// Call `f(id, generation, binding, expires_at_secs)` for every active registration whose
    /// current RT expires at or after `min_expires_at`.
    fn for_each_live_registration(
        &self,
        min_expires_at: u64,
        f: &mut dyn FnMut(RegistrationId, u32, u32, u64),
    ) -> Result<(), Error>;
    /// Call `f(id)` for every revoked registration whose last RT expires at or after
    /// `min_expires_at` (what a node rebuilding its memory must refuse).
    fn for_each_revoked_registration(
        &self,
        min_expires_at: u64,
        f: &mut dyn FnMut(RegistrationId),
    ) -> Result<(), Error>;
    /// The block on a device id, if any.
    fn blocked(&self, d: &DeviceId) -> Result<Option<BlockRecord>, Error>;
    /// All blocked device ids.
    fn list_blocked(&self) -> Result<Vec<BlockRecord>, Error>;
    /// Audit events with `seq > after`, oldest first: the first `limit` of them, or with
    /// `newest` the last `limit`.
    fn audit(&self, after: u64, limit: usize, newest: bool) -> Result<Vec<AuditEvent>, Error>;
    /// Registrations revoked after audit sequence number `after`, oldest first, at most
    /// `limit`, and the sequence number to continue from (`after` when there are none). Every
    /// revocation (direct, by a block, by a PT's revocation, by rotation reuse) is one
    /// `registration.revoke` event.
    fn revocations(&self, after: u64, limit: usize) -> Result<(Vec<RegistrationId>, u64), Error>;
    /// The newest audit sequence number (0 for none): where following revocations starts.
    fn audit_head(&self) -> Result<u64, Error>;
    /// Leak signals with `id > after`, oldest first.
    fn leak_signals(&self, after: u64, limit: usize) -> Result<Vec<LeakSignal>, Error>;
    /// Row counts.
    fn counts(&self) -> Result<StoreCounts, Error>;
    /// An admin token and its verifier.
    fn admin_token(&self, id: &AdminTokenId)
        -> Result<Option<(AdminTokenRecord, [u8; 32])>, Error>;
    /// All admin tokens, oldest first.
    fn list_admin_tokens(&self) -> Result<Vec<AdminTokenRecord>, Error>;
}

/// Writes, only inside a write job.
pub trait StoreTxn: StoreRead {
    /// Set a metadata value.
    fn set_meta(&mut self, key: &str, value: &str) -> Result<(), Error>;
    /// Insert or replace a key epoch.
    fn put_key_epoch(&mut self, rec: &KeyEpochRecord) -> Result<(), Error>;
    /// Insert a PT with its verifier.
    fn insert_pt(&mut self, rec: &PtRecord, verifier: &[u8; 32]) -> Result<(), Error>;
    /// Update a PT's mutable fields (revocation, registration count).
    fn update_pt(&mut self, rec: &PtRecord) -> Result<(), Error>;
    /// Insert an operation.
    fn insert_operation(&mut self, rec: &OperationRecord) -> Result<(), Error>;
    /// Replace an operation.
    fn update_operation(&mut self, rec: &OperationRecord) -> Result<(), Error>;
    /// Insert a registration; its `id` is assigned by the store and returned.
    fn insert_registration(&mut self, rec: &RegistrationRecord) -> Result<RegistrationId, Error>;
    /// Replace a registration.
    fn update_registration(&mut self, rec: &RegistrationRecord) -> Result<(), Error>;
    /// Record a refresh: the registration's generation, key epoch, issue and expiry times. The
    /// hot path: the SQLite store appends it to its refresh journal instead of updating the
    /// row in place; every read of the registration sees it at once.
    ///
    /// The same row records the refresh's audit event: `audit`'s actor, time and source,
    /// action [`REFRESH_ACTION`], the registration id as subject and
    /// `{"expires_at", "generation"}` as detail, in sequence with every other event.
    fn refresh_registration(
        &mut self,
        rec: &RegistrationRecord,
        audit: RefreshAudit<'_>,
    ) -> Result<(), Error>;
    /// Block a device id (replacing an earlier block).
    fn block(&mut self, rec: &BlockRecord) -> Result<(), Error>;
    /// Unblock a device id; false if it was not blocked.
    fn unblock(&mut self, d: &DeviceId) -> Result<bool, Error>;
    /// Append an audit event. Its sequence number is assigned by the store, at the latest when
    /// its batch commits (PostgreSQL numbers a batch's events as it commits, so that writers
    /// committing side by side never leave a gap a reader could skip over): read it back with
    /// the audit queries, never from here.
    fn append_audit(&mut self, ev: &NewAuditEvent<'_>) -> Result<(), Error>;
    /// Record a leak signal; its id is assigned as an audit event's sequence number is.
    fn insert_leak(&mut self, sig: &NewLeakSignal) -> Result<(), Error>;
    /// Insert an admin token with its verifier.
    fn insert_admin_token(
        &mut self,
        rec: &AdminTokenRecord,
        verifier: &[u8; 32],
    ) -> Result<(), Error>;
    /// Mark an admin token revoked.
    fn revoke_admin_token(&mut self, id: &AdminTokenId, at: Timestamp) -> Result<bool, Error>;
    /// Start a staged PT batch: PTs inserted with this batch id stay invisible (to lookups,
    /// lists and counts) until [`StoreTxn::commit_pt_batch`].
    fn stage_pt_batch(&mut self, batch: &str, at: Timestamp) -> Result<(), Error>;
    /// Make a staged batch's PTs exist, in one small write. False if the batch is not staged
    /// (or was abandoned).
    fn commit_pt_batch(&mut self, batch: &str) -> Result<bool, Error>;
    /// Abandon a staged batch (or, with `None`, every staged batch): its PTs never become
    /// visible and [`StoreTxn::delete_abandoned_pts`] removes them.
    fn abandon_pt_batches(&mut self, batch: Option<&str>) -> Result<(), Error>;
    /// Delete at most `limit` PTs of abandoned batches (and the markers of batches with none
    /// left). Returns how many PTs were deleted.
    fn delete_abandoned_pts(&mut self, limit: usize) -> Result<usize, Error>;
    /// One small step of retention: look at up to `limit` rows of `class`'s table after `cursor`
    /// (in key order, which is time order), and delete the rows of `class` among them older
    /// than `cutoff`, stopping before the first row of `class` that is not. The newest row of a
    /// table is never deleted, so its numbering never goes back; a refresh-journal row only
    /// once it is folded into its registration. [`RetentionStep::cursor`] is where the next
    /// step starts.
    fn delete_old(
        &mut self,
        class: RetentionClass,
        cursor: u64,
        cutoff: Timestamp,
        limit: usize,
    ) -> Result<RetentionStep, Error>;
    /// Pending operations whose expiry is at or before `now`, at most `limit`.
    fn expired_pending(
        &mut self,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<OperationRecord>, Error>;
    /// Whether [`StoreTxn::publish`] goes anywhere (the store is shared by several nodes).
    fn publishes(&self) -> bool {
        false
    }
    /// Append changes to the change feed, in this transaction. A no-op for a store no other
    /// node writes to.
    fn publish(&mut self, changes: &[Change]) -> Result<(), Error> {
        let _ = changes;
        Ok(())
    }
}

/// Run on the writer thread once a job's batch has committed (or failed to).
pub type CommitCallback = Box<dyn FnOnce(Result<(), Error>) + Send>;

/// What a write job tells the writer: keep or roll back its changes, and what to run once the
/// batch's commit has finished (successfully or not).
pub struct JobOutcome {
    /// Keep the job's changes (release its savepoint) or roll them back.
    pub keep: bool,
    /// Called on the writer thread after the commit, in commit order, with the commit result.
    pub on_commit: CommitCallback,
}

impl std::fmt::Debug for JobOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobOutcome")
            .field("keep", &self.keep)
            .finish_non_exhaustive()
    }
}

/// A unit of work for the writer.
pub type WriteJob = Box<dyn FnOnce(&mut dyn StoreTxn) -> JobOutcome + Send>;

/// A durable store.
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Queue a write job. Its `on_commit` runs after the batch it joined is durable (or failed).
    /// If the writer has stopped, the job is dropped without running. A job that does not keep
    /// its changes is rolled back alone.
    fn submit(&self, job: WriteJob);
    /// Queue a refresh: a write job that reads (and locks) the registration `reads`, and makes
    /// every check before its first write, so it never needs to be rolled back alone: the store
    /// may run it without a savepoint of its own. Should it still ask to roll back after
    /// writing (a failed write), the whole batch fails instead and nothing in it is
    /// acknowledged. A store may read the registrations of a whole batch of refreshes in one
    /// statement before their jobs run. Defaults to [`Store::submit`].
    fn submit_refresh(&self, job: WriteJob, reads: RegistrationId) {
        let _ = reads;
        self.submit(job);
    }
    /// Run `f` against a consistent read snapshot of committed data.
    fn read(&self, f: &mut dyn FnMut(&dyn StoreRead) -> Result<(), Error>) -> Result<(), Error>;
    /// Writer counters.
    fn commit_stats(&self) -> CommitStats;
    /// Start following the change feed of a store shared by several nodes: the changes other
    /// nodes commit are delivered to `sink` in commit order, starting after the last change
    /// committed when the store was opened. `None` for a store no other node writes to.
    fn follow(
        &self,
        sink: std::sync::Arc<dyn FeedSink>,
        poll: std::time::Duration,
    ) -> Result<Option<std::sync::Arc<FeedHealth>>, Error> {
        let _ = (sink, poll);
        Ok(None)
    }
    /// What and where the store is, for operators (never a password).
    fn describe(&self) -> String;
    /// Make what this node committed visible to the readers of the audit log, leak signals and
    /// revocations: a store that numbers those after commit (PostgreSQL) numbers this node's
    /// committed ones now, so that a caller lists what its own requests wrote. Called before
    /// those reads; nothing to do for a store that numbers them in the transaction.
    fn settle_numbers(&self) -> Result<(), Error> {
        Ok(())
    }
}
