//! The embedded SQLite store: WAL mode, `synchronous=FULL`, one group-commit writer thread and
//! a small pool of read connections.

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Row};

use super::journal::{self, audit_from_journal, BatchJournal, Follower, Overlay, RefreshState};
use super::queue::{self, JobQueue, Queued, Stats};
use super::sql::{json, limit_or_default, sql_ts, sql_u64, ts, ts_opt, PT_COLUMNS, PT_VISIBLE};
use super::{
    schema, CommitCallback, CommitStats, JobOutcome, KeyEpochRecord, NewAuditEvent, NewLeakSignal,
    OperationQuery, RefreshAudit, RegistrationQuery, Store, StoreCounts, StoreRead, StoreTxn,
    WriteJob,
};
use crate::error::Error;
use crate::model::{
    AdminTokenId, AdminTokenRecord, AuditEvent, BlockRecord, DeviceId, LeakKind, LeakSignal,
    OperationId, OperationRecord, PtId, PtRecord, RegistrationId, RegistrationRecord,
    RegistrationStatus,
};
use crate::time::Timestamp;

/// File name of the database inside the data directory.
pub const DATABASE_FILE: &str = "tessera.db";

/// How to open the SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    max_batch: usize,
    read_connections: usize,
    synchronous_full: bool,
    journal_fold_rows: u64,
    journal_fold_slice: usize,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            max_batch: 1024,
            read_connections: 4,
            synchronous_full: true,
            journal_fold_rows: journal::DEFAULT_FOLD_ROWS,
            journal_fold_slice: journal::DEFAULT_FOLD_SLICE,
        }
    }
}

impl SqliteOptions {
    /// Most jobs committed together by one fsync. 1 disables group commit (one transaction per
    /// job; only useful to measure what group commit buys). Defaults to 1024.
    pub fn max_batch(&mut self, n: usize) -> &mut Self {
        self.max_batch = n.max(1);
        self
    }

    /// Number of read connections. Defaults to 4.
    pub fn read_connections(&mut self, n: usize) -> &mut Self {
        self.read_connections = n.max(1);
        self
    }

    /// `synchronous=FULL` (every commit fsynced, the default and the only setting under which
    /// acknowledged changes survive power loss) or `NORMAL` (WAL appends not fsynced; survives a
    /// process crash but not power loss). Defaults to `true`.
    pub fn synchronous_full(&mut self, full: bool) -> &mut Self {
        self.synchronous_full = full;
        self
    }

    /// Refresh-journal rows after which the writer folds the journal into the registration
    /// rows (see the store's module documentation). Defaults to 65,536; small values exercise
    /// folding in tests.
    pub fn journal_fold_rows(&mut self, n: u64) -> &mut Self {
        self.journal_fold_rows = n.max(1);
        self
    }

    /// Registrations a batch writes into their rows while a fold is in progress, so that no
    /// batch stalls for a whole fold. Defaults to 1,024; small values exercise folds that take
    /// many batches in tests.
    pub fn journal_fold_slice(&mut self, n: usize) -> &mut Self {
        self.journal_fold_slice = n.max(1);
        self
    }
}

struct Writer {
    queue: JobQueue,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// Copies the WAL back into the database file on its own connection, so the writer's commits
/// only append to the WAL. (A checkpoint inside a commit also writes the database file and
/// fsyncs it: measured as a large share of the writer's time under refresh load.)
struct Checkpointer {
    stop: Arc<(Mutex<bool>, std::sync::Condvar)>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// WAL pages above which the writer checkpoints by itself, should the background checkpointer
/// fall behind (64 MiB of 4 KiB pages).
const WRITER_AUTOCHECKPOINT_PAGES: u32 = 16_384;
const CHECKPOINT_INTERVAL: std::time::Duration = std::time::Duration::from_millis(250);

fn checkpointer_loop(conn: Connection, stop: &(Mutex<bool>, std::sync::Condvar)) {
    let (lock, cv) = stop;
    let mut stopped = lock
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    loop {
        let (g, _) = cv
            .wait_timeout(stopped, CHECKPOINT_INTERVAL)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        stopped = g;
        // PASSIVE never blocks the writer or readers; whatever it cannot copy now it copies
        // next time.
        let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
        if *stopped {
            return;
        }
    }
}

/// The SQLite store. Dropping it finishes queued jobs and stops the writer.
pub struct SqliteStore {
    path: PathBuf,
    writer: Writer,
    checkpointer: Checkpointer,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
    stats: Arc<Stats>,
    overlay: Arc<Overlay>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn configure(conn: &Connection, full: bool) -> Result<(), Error> {
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.set_prepared_statement_cache_capacity(64);
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::store(format!("cannot enable WAL mode (got {mode})")));
    }
    conn.pragma_update(None, "synchronous", if full { "FULL" } else { "NORMAL" })?;
    conn.pragma_update(None, "mmap_size", MMAP_BYTES)?;
    Ok(())
}

/// Read the database file through a memory map of up to this size instead of `pread` into
/// SQLite's page cache. A refresh reads and updates its registration's page, a random page of a
/// table that outgrows any page cache at a million registrations; mapped, a page already in the
/// OS cache costs no system call and no copy. Writes still go through the WAL.
const MMAP_BYTES: i64 = 1 << 30;

impl SqliteStore {
    /// Open (or create) `dir/tessera.db`, migrating the schema, and start the writer.
    pub fn open(dir: &Path, options: &SqliteOptions) -> Result<Self, Error> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::store(format!("cannot create {}: {e}", dir.display())))?;
        let path = dir.join(DATABASE_FILE);
        let mut conn = Connection::open(&path)?;
        configure(&conn, options.synchronous_full)?;
        schema::migrate(&mut conn)?;
        journal::fold_all(&mut conn)?;
        let journal = BatchJournal::open(&conn)?;
        conn.pragma_update(None, "wal_autocheckpoint", WRITER_AUTOCHECKPOINT_PAGES)?;
        let ckpt_conn = Connection::open(&path)?;
        configure(&ckpt_conn, options.synchronous_full)?;
        let stop = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
        let ckpt_stop = stop.clone();
        let ckpt_thread = std::thread::Builder::new()
            .name("tessera-store-checkpoint".into())
            .spawn(move || checkpointer_loop(ckpt_conn, &ckpt_stop))
            .map_err(|e| Error::store(format!("cannot start checkpoint thread: {e}")))?;
        let mut readers = Vec::with_capacity(options.read_connections);
        for _ in 0..options.read_connections {
            let r = Connection::open_with_flags(
                &path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?;
            r.busy_timeout(std::time::Duration::from_secs(10))?;
            r.set_prepared_statement_cache_capacity(64);
            r.pragma_update(None, "mmap_size", MMAP_BYTES)?;
            readers.push(Mutex::new(r));
        }
        let (tx, rx) = mpsc::channel();
        let stats = Arc::new(Stats::default());
        let st = stats.clone();
        let overlay = Arc::new(Overlay::default());
        let writer = Writing {
            max_batch: options.max_batch,
            fold_rows: options.journal_fold_rows,
            fold_slice: options.journal_fold_slice,
            overlay: overlay.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("tessera-store-writer".into())
            .spawn(move || writer_loop(conn, journal, rx, &writer, &st))
            .map_err(|e| Error::store(format!("cannot start writer thread: {e}")))?;
        Ok(Self {
            path,
            writer: Writer {
                queue: JobQueue::new(tx),
                thread: Mutex::new(Some(thread)),
            },
            checkpointer: Checkpointer {
                stop,
                thread: Mutex::new(Some(ckpt_thread)),
            },
            readers,
            next_reader: AtomicUsize::new(0),
            stats,
            overlay,
        })
    }

    /// Path of the database file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// A read-only view of another process's store (the server's data directory): what a local
/// validator needs. Opens no writer, runs no migration, and sees every commit as soon as it is
/// durable (WAL readers).
pub struct SqliteReader {
    conn: Mutex<(Connection, Follower)>,
}

impl std::fmt::Debug for SqliteReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteReader").finish_non_exhaustive()
    }
}

impl SqliteReader {
    /// Open `dir/tessera.db` read-only. The database must exist (a server has run there).
    pub fn open(dir: &Path) -> Result<Self, Error> {
        let path = dir.join(DATABASE_FILE);
        if !path.is_file() {
            return Err(Error::store(format!(
                "no Tessera store at {}",
                path.display()
            )));
        }
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.set_prepared_statement_cache_capacity(16);
        Ok(Self {
            conn: Mutex::new((conn, Follower::default())),
        })
    }

    /// Run `f` against one consistent read snapshot of the store, refreshes still in the
    /// server's journal included.
    pub fn read<T>(&self, f: impl FnOnce(&dyn StoreRead) -> Result<T, Error>) -> Result<T, Error> {
        let mut guard = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        let (conn, follower) = &mut *guard;
        conn.execute_batch("BEGIN")?;
        let r = follower.catch_up(conn).and_then(|()| {
            f(&Db {
                conn,
                view: View::Follower(follower),
            })
        });
        conn.execute_batch("COMMIT")?;
        r
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.writer.queue.close();
        if let Some(t) = self.writer.thread.lock().ok().and_then(|mut t| t.take()) {
            queue::join(t);
        }
        {
            let (lock, cv) = &*self.checkpointer.stop;
            if let Ok(mut s) = lock.lock() {
                *s = true;
            }
            cv.notify_all();
        }
        if let Some(t) = self
            .checkpointer
            .thread
            .lock()
            .ok()
            .and_then(|mut t| t.take())
        {
            queue::join(t);
        }
    }
}

/// How the writer batches and folds.
struct Writing {
    max_batch: usize,
    fold_rows: u64,
    fold_slice: usize,
    overlay: Arc<Overlay>,
}

fn writer_loop(
    conn: Connection,
    mut journal: BatchJournal,
    rx: Receiver<Queued>,
    w: &Writing,
    stats: &Stats,
) {
    let mut batch: Vec<Queued> = Vec::with_capacity(w.max_batch);
    let mut done: Vec<CommitCallback> = Vec::with_capacity(w.max_batch);
    while queue::take_batch(&rx, w.max_batch, &mut batch) {
        let n = batch.len() as u64;
        let result = run_batch(&conn, w, &mut journal, &mut batch, &mut done);
        stats.record(n, result.is_ok());
        if result.is_ok() {
            // Readers see the batch's refreshes before any of its callers is answered.
            journal.committed();
            w.overlay.commit(&mut journal);
        } else {
            journal.clear();
        }
        for cb in done.drain(..) {
            cb(result.clone());
        }
    }
}

/// Run a statement through the prepared-statement cache (savepoints run once per job, so
/// parsing them each time would be measurable).
fn exec_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

/// Run a batch in one transaction, one commit at the end. A job runs inside a savepoint of its
/// own (rolled back alone if it fails) unless it was submitted as writing last; such a job that
/// fails after writing fails the whole batch.
fn run_batch(
    conn: &Connection,
    w: &Writing,
    journal: &mut BatchJournal,
    batch: &mut Vec<Queued>,
    done: &mut Vec<CommitCallback>,
) -> Result<(), Error> {
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        // Jobs that never ran are dropped; their callers see the writer's channel close.
        batch.clear();
        return Err(e.into());
    }
    let mut failure: Option<Error> = journal
        .start(conn, &w.overlay, w.fold_rows, w.fold_slice)
        .err();
    for Queued { job, savepoint } in batch.drain(..) {
        if failure.is_some() {
            continue; // dropped: the caller gets "store writer stopped"-style error
        }
        if savepoint {
            if let Err(e) = exec_cached(conn, "SAVEPOINT job") {
                failure = Some(e.into());
                continue;
            }
        }
        let changes = conn.total_changes();
        journal.begin_job();
        let mut txn = Db {
            conn,
            view: View::Writer(&w.overlay, journal),
        };
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| job(&mut txn)));
        let keep = matches!(&outcome, Ok(JobOutcome { keep: true, .. }));
        if !keep {
            journal.rollback_job();
        }
        let step = match (savepoint, keep) {
            (true, true) => exec_cached(conn, "RELEASE job").map_err(Error::from),
            (true, false) => exec_cached(conn, "ROLLBACK TO job")
                .and_then(|()| exec_cached(conn, "RELEASE job"))
                .map_err(Error::from),
            (false, false) if conn.total_changes() != changes => Err(Error::store(
                "a write failed part-way; the batch was rolled back".into(),
            )),
            (false, _) => Ok(()),
        };
        if let Err(e) = step {
            failure = Some(e);
        } else if conn.is_autocommit() {
            // Some errors (a full disk, an I/O error) make SQLite roll back the whole
            // transaction by itself: nothing in this batch may be acknowledged then.
            failure = Some(Error::store(
                "the batch's transaction was rolled back".into(),
            ));
        }
        if let Ok(o) = outcome {
            done.push(o.on_commit);
        }
    }
    let result = match failure {
        Some(e) => Err(e),
        None => conn.execute_batch("COMMIT").map_err(Error::from),
    };
    if result.is_err() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    result
}

impl Store for SqliteStore {
    fn submit(&self, job: WriteJob) {
        self.writer.queue.send(job, true);
    }

    fn submit_writes_last(&self, job: WriteJob) {
        self.writer.queue.send(job, false);
    }

    fn read(&self, f: &mut dyn FnMut(&dyn StoreRead) -> Result<(), Error>) -> Result<(), Error> {
        let n = self.readers.len();
        let start = self.next_reader.fetch_add(1, Ordering::Relaxed);
        // Take the first free connection, else wait on the one round-robin picked.
        let guard = (0..n)
            .find_map(|i| self.readers[(start + i) % n].try_lock().ok())
            .map_or_else(|| self.readers[start % n].lock(), Ok)
            .map_err(|_| Error::store("read connection poisoned".into()))?;
        let conn: &Connection = &guard;
        conn.execute_batch("BEGIN")?;
        let r = f(&Db {
            conn,
            view: View::Reader(&self.overlay),
        });
        conn.execute_batch("COMMIT")?;
        r
    }

    fn commit_stats(&self) -> CommitStats {
        self.stats.snapshot()
    }
    fn describe(&self) -> String {
        format!("SQLite {}", self.path.display())
    }
}

/// SQL over one connection: inside a write job, or a read transaction.
struct Db<'c> {
    conn: &'c Connection,
    view: View<'c>,
}

/// Where a [`Db`] finds refresh states not yet folded into the registration rows.
enum View<'c> {
    /// A read connection of this store: committed states.
    Reader(&'c Overlay),
    /// The writer: its batch's own states, then committed ones.
    Writer(&'c Overlay, &'c mut BatchJournal),
    /// A reader in another process, following the journal itself.
    Follower(&'c Follower),
}

impl Db<'_> {
    /// The writer's batch journal; writes happen only on the writer.
    fn writer_journal(&mut self) -> Result<&mut BatchJournal, Error> {
        match &mut self.view {
            View::Writer(_, batch) => Ok(batch),
            _ => Err(Error::store("write outside the store's writer".into())),
        }
    }

    fn overlay(&self, rec: &mut RegistrationRecord) {
        let id = rec.id.get();
        let s = match &self.view {
            View::Reader(o) => o.get(id),
            View::Writer(o, b) => b.get(id).or_else(|| o.get(id)),
            View::Follower(f) => f.get(id),
        };
        if let Some(s) = s {
            s.apply(rec);
        }
    }
}

fn from_json<T: serde::de::DeserializeOwned>(s: &str) -> rusqlite::Result<T> {
    serde_json::from_str(s).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

/// The sequence number of the newest audit event (0 for none), refresh events included.
pub(super) const LAST_AUDIT_SEQ: &str = "SELECT max(coalesce((SELECT max(seq) FROM audit), 0), \
     coalesce((SELECT max(seq) FROM refresh_journal WHERE audit_at IS NOT NULL), 0))";

fn conversion<E: std::error::Error + Send + Sync + 'static>(e: E) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
}

fn pt_row(r: &Row<'_>) -> rusqlite::Result<(PtRecord, [u8; 32])> {
    let id: [u8; PtId::LEN] = r.get(0)?;
    let verifier: [u8; 32] = r.get(1)?;
    let rec = PtRecord {
        id: PtId::from_bytes(id),
        label: r.get(2)?,
        kind: from_json(&r.get::<_, String>(3)?)?,
        approval: from_json(&r.get::<_, String>(4)?)?,
        rt_lifetime_secs: r.get::<_, i64>(5)? as u64,
        device_id_policy: from_json(&r.get::<_, String>(6)?)?,
        expires_at: ts_opt(r.get(7)?),
        created_at: ts(r.get(8)?),
        revoked_at: ts_opt(r.get(9)?),
        registrations_created: r.get::<_, i64>(10)? as u64,
        batch: r.get(11)?,
    };
    Ok((rec, verifier))
}

fn op_row(r: &Row<'_>) -> rusqlite::Result<OperationRecord> {
    let mut op: OperationRecord = from_json(&r.get::<_, String>(0)?)?;
    // Operations from before the digest have none: all zeros never matches a nonce's digest.
    if let Some(d) = r.get::<_, Option<[u8; 32]>>(1)? {
        op.nonce_digest = crate::model::NonceDigest(d);
    }
    Ok(op)
}

macro_rules! reg_columns {
    () => {
        "id, device_id, pt_id, operation_id, active, generation, key_epoch, issued_at, \
         expires_at, lifetime, created_at, revoked_at, revoke_reason, binding"
    };
}
const REG_COLUMNS: &str = reg_columns!();
/// One registration by id (a `'static` string: the writer runs it on every refresh).
const REG_BY_ID: &str = concat!(
    "SELECT ",
    reg_columns!(),
    " FROM registrations WHERE id = ?1"
);

fn reg_row(r: &Row<'_>) -> rusqlite::Result<RegistrationRecord> {
    let pt: [u8; PtId::LEN] = r.get(2)?;
    let op: [u8; 16] = r.get(3)?;
    Ok(RegistrationRecord {
        id: RegistrationId::new(r.get::<_, i64>(0)? as u64),
        device_id: DeviceId::new(r.get::<_, String>(1)?).map_err(conversion)?,
        pt_id: PtId::from_bytes(pt),
        operation_id: OperationId::from_bytes(op),
        status: if r.get::<_, i64>(4)? == 1 {
            RegistrationStatus::Active
        } else {
            RegistrationStatus::Revoked
        },
        generation: r.get(5)?,
        key_epoch: r.get(6)?,
        issued_at: r.get::<_, i64>(7)? as u64,
        expires_at: r.get::<_, i64>(8)? as u64,
        lifetime_secs: r.get::<_, i64>(9)? as u64,
        created_at: ts(r.get(10)?),
        revoked_at: ts_opt(r.get(11)?),
        revoke_reason: r.get(12)?,
        binding: r.get::<_, i64>(13)? as u32,
    })
}

impl StoreRead for Db<'_> {
    fn meta(&self, key: &str) -> Result<Option<String>, Error> {
        Ok(self
            .conn
            .prepare_cached("SELECT value FROM meta WHERE key = ?1")?
            .query_row([key], |r| r.get(0))
            .optional()?)
    }

    fn key_epochs(&self) -> Result<Vec<KeyEpochRecord>, Error> {
        let mut st = self.conn.prepare_cached(
            "SELECT epoch, created_at, rt_keep_until, retired_at FROM key_epochs ORDER BY epoch",
        )?;
        let rows = st.query_map([], |r| {
            Ok(KeyEpochRecord {
                epoch: r.get(0)?,
                created_at: ts(r.get(1)?),
                rt_keep_until: ts_opt(r.get(2)?),
                retired_at: ts_opt(r.get(3)?),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn pt(&self, id: &PtId) -> Result<Option<(PtRecord, [u8; 32])>, Error> {
        Ok(self
            .conn
            .prepare_cached(&format!(
                "SELECT {PT_COLUMNS} FROM pts WHERE id = ?1 AND {PT_VISIBLE}"
            ))?
            .query_row([&id.to_bytes()[..]], pt_row)
            .optional()?)
    }

    fn list_pts(
        &self,
        limit: usize,
        include_revoked: bool,
        before: Option<(Timestamp, PtId)>,
    ) -> Result<Vec<PtRecord>, Error> {
        let mut st = self.conn.prepare_cached(&format!(
            "SELECT {PT_COLUMNS} FROM pts WHERE (?1 OR revoked_at IS NULL) AND {PT_VISIBLE} \
             AND (?3 IS NULL OR (created_at, id) < (?3, ?4)) \
             ORDER BY created_at DESC, id DESC LIMIT ?2"
        ))?;
        let (at, id) = match before {
            Some((at, id)) => (Some(sql_ts(at)), Some(id.to_bytes().to_vec())),
            None => (None, None),
        };
        let rows = st.query_map(
            params![include_revoked, limit_or_default(limit), at, id],
            pt_row,
        )?;
        Ok(rows.map(|r| r.map(|(p, _)| p)).collect::<Result<_, _>>()?)
    }

    fn operation(&self, id: &OperationId) -> Result<Option<OperationRecord>, Error> {
        Ok(self
            .conn
            .prepare_cached("SELECT body, nonce_digest FROM operations WHERE id = ?1")?
            .query_row([&id.to_bytes()[..]], op_row)
            .optional()?)
    }

    fn pending_operations(&self, pt: &PtId) -> Result<Vec<OperationRecord>, Error> {
        let mut st = self.conn.prepare_cached(
            // The PT's own index: a PT has few pending operations, all of them may.
            "SELECT body, nonce_digest FROM operations INDEXED BY operations_pt_state \
             WHERE pt_id = ?1 AND state = 'pending' ORDER BY created_at",
        )?;
        let rows = st.query_map([&pt.to_bytes()[..]], op_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn list_operations(&self, q: &OperationQuery) -> Result<Vec<OperationRecord>, Error> {
        // Only the filters given are in the statement, so that SQLite can use their indexes.
        use rusqlite::types::Value as V;
        let mut sql = "SELECT body, nonce_digest FROM operations WHERE 1".to_owned();
        let mut args: Vec<V> = Vec::new();
        if let Some(state) = q.state {
            sql.push_str(" AND state = ?");
            args.push(V::Text(state.as_str().to_owned()));
        }
        if let Some(p) = q.pt_id {
            sql.push_str(" AND pt_id = ?");
            args.push(V::Blob(p.to_bytes().to_vec()));
        }
        if let Some((at, id)) = q.before {
            // A row value, so that the index seeks to the page's start.
            sql.push_str(" AND (created_at, id) < (?, ?)");
            args.push(V::Integer(sql_ts(at)));
            args.push(V::Blob(id.to_bytes().to_vec()));
        }
        sql.push_str(" ORDER BY created_at DESC, id DESC LIMIT ?");
        args.push(V::Integer(limit_or_default(q.limit)));
        let mut st = self.conn.prepare_cached(&sql)?;
        let rows = st.query_map(rusqlite::params_from_iter(args), op_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn registration(&self, id: RegistrationId) -> Result<Option<RegistrationRecord>, Error> {
        let mut rec = self
            .conn
            .prepare_cached(REG_BY_ID)?
            .query_row([sql_u64(id.get())], reg_row)
            .optional()?;
        if let Some(r) = &mut rec {
            self.overlay(r);
        }
        Ok(rec)
    }

    fn list_registrations(&self, q: &RegistrationQuery) -> Result<Vec<RegistrationRecord>, Error> {
        // Only the filters given are in the statement, so that SQLite can use their indexes.
        use rusqlite::types::Value as V;
        let mut sql = format!("SELECT {REG_COLUMNS} FROM registrations WHERE 1");
        let mut args: Vec<V> = Vec::new();
        if let Some(d) = &q.device_id {
            sql.push_str(" AND device_id = ?");
            args.push(V::Text(d.as_str().to_owned()));
        }
        if let Some(p) = q.pt_id {
            sql.push_str(" AND pt_id = ?");
            args.push(V::Blob(p.to_bytes().to_vec()));
        }
        if q.active_only {
            sql.push_str(" AND active = 1");
        }
        if let Some(b) = q.before {
            sql.push_str(" AND id < ?");
            args.push(V::Integer(sql_u64(b.get())));
        }
        sql.push_str(" ORDER BY id DESC LIMIT ?");
        args.push(V::Integer(limit_or_default(q.limit)));
        let mut st = self.conn.prepare_cached(&sql)?;
        let rows = st.query_map(rusqlite::params_from_iter(args), reg_row)?;
        let mut out: Vec<RegistrationRecord> = rows.collect::<Result<_, _>>()?;
        for r in &mut out {
            self.overlay(r);
        }
        Ok(out)
    }

    fn active_registrations_of_device(&self, d: &DeviceId) -> Result<Vec<RegistrationId>, Error> {
        let mut st = self
            .conn
            .prepare_cached("SELECT id FROM registrations WHERE device_id = ?1 AND active = 1")?;
        let rows = st.query_map([d.as_str()], |r| {
            Ok(RegistrationId::new(r.get::<_, i64>(0)? as u64))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn active_registrations_of_pt(&self, pt: &PtId) -> Result<Vec<RegistrationId>, Error> {
        let mut st = self
            .conn
            .prepare_cached("SELECT id FROM registrations WHERE pt_id = ?1 AND active = 1")?;
        let rows = st.query_map([&pt.to_bytes()[..]], |r| {
            Ok(RegistrationId::new(r.get::<_, i64>(0)? as u64))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn for_each_live_registration(
        &self,
        min_expires_at: u64,
        f: &mut dyn FnMut(RegistrationId, u32, u32, u64),
    ) -> Result<(), Error> {
        let mut st = self.conn.prepare_cached(
            "SELECT id, generation, binding, expires_at FROM registrations \
             WHERE active = 1 AND expires_at >= ?1",
        )?;
        let mut rows = st.query([sql_u64(min_expires_at)])?;
        while let Some(r) = rows.next()? {
            f(
                RegistrationId::new(r.get::<_, i64>(0)? as u64),
                r.get(1)?,
                r.get::<_, i64>(2)? as u32,
                r.get::<_, i64>(3)? as u64,
            );
        }
        Ok(())
    }

    fn for_each_revoked_registration(
        &self,
        min_expires_at: u64,
        f: &mut dyn FnMut(RegistrationId),
    ) -> Result<(), Error> {
        let mut st = self
            .conn
            .prepare_cached("SELECT id FROM registrations WHERE active = 0 AND expires_at >= ?1")?;
        let mut rows = st.query([sql_u64(min_expires_at)])?;
        while let Some(r) = rows.next()? {
            f(RegistrationId::new(r.get::<_, i64>(0)? as u64));
        }
        Ok(())
    }

    fn blocked(&self, d: &DeviceId) -> Result<Option<BlockRecord>, Error> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT device_id, at, by, reason FROM blocked_devices WHERE device_id = ?1",
            )?
            .query_row([d.as_str()], block_row)
            .optional()?)
    }

    fn list_blocked(&self) -> Result<Vec<BlockRecord>, Error> {
        let mut st = self
            .conn
            .prepare_cached("SELECT device_id, at, by, reason FROM blocked_devices ORDER BY at")?;
        let rows = st.query_map([], block_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn audit(&self, after: u64, limit: usize, newest: bool) -> Result<Vec<AuditEvent>, Error> {
        // Refresh events are journal rows; they interleave with the others by sequence (a
        // merge of two primary-key range scans, backwards for the newest).
        let events = format!(
            "SELECT seq, at, actor, source, action, subject, detail FROM audit \
             WHERE seq > ?1 UNION ALL {} AND seq > ?1",
            audit_from_journal()
        );
        let mut st = self.conn.prepare_cached(&if newest {
            format!("SELECT * FROM ({events} ORDER BY seq DESC LIMIT ?2) ORDER BY seq")
        } else {
            format!("{events} ORDER BY seq LIMIT ?2")
        })?;
        let rows = st.query_map(params![sql_u64(after), limit_or_default(limit)], |r| {
            Ok(AuditEvent {
                seq: r.get::<_, i64>(0)? as u64,
                at: ts(r.get(1)?),
                actor: r.get(2)?,
                source: r.get(3)?,
                action: r.get(4)?,
                subject: r.get(5)?,
                detail: from_json(&r.get::<_, String>(6)?)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn revocations(&self, after: u64, limit: usize) -> Result<(Vec<RegistrationId>, u64), Error> {
        // A range scan of the primary key from the cursor; revocations are a small share of
        // the audit rows after it, and the cursor keeps up.
        let mut st = self.conn.prepare_cached(
            "SELECT seq, subject FROM audit WHERE seq > ?1 AND action = 'registration.revoke' \
             ORDER BY seq LIMIT ?2",
        )?;
        let rows = st.query_map(params![sql_u64(after), limit_or_default(limit)], |r| {
            Ok((r.get::<_, i64>(0)? as u64, r.get::<_, String>(1)?))
        })?;
        super::sql::revocation_page(after, rows.map(|r| r.map_err(Error::from)))
    }

    fn audit_head(&self) -> Result<u64, Error> {
        let head: Option<i64> = self
            .conn
            .query_row("SELECT MAX(seq) FROM audit", [], |r| r.get(0))?;
        Ok(head.unwrap_or(0) as u64)
    }

    fn leak_signals(&self, after: u64, limit: usize) -> Result<Vec<LeakSignal>, Error> {
        let mut st = self.conn.prepare_cached(
            "SELECT id, at, kind, pt_id, registration_id, operation_id, source, action, detail \
             FROM leak_signals WHERE id > ?1 ORDER BY id LIMIT ?2",
        )?;
        let rows = st.query_map(params![sql_u64(after), limit_or_default(limit)], |r| {
            let kind: String = r.get(2)?;
            Ok(LeakSignal {
                id: r.get::<_, i64>(0)? as u64,
                at: ts(r.get(1)?),
                kind: LeakKind::parse(&kind).ok_or_else(|| {
                    conversion(std::io::Error::other(format!("unknown leak kind {kind}")))
                })?,
                pt_id: r.get(3)?,
                registration_id: r
                    .get::<_, Option<i64>>(4)?
                    .map(|v| RegistrationId::new(v as u64)),
                operation_id: r.get(5)?,
                source: r.get(6)?,
                action: r.get(7)?,
                detail: r.get(8)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn counts(&self) -> Result<StoreCounts, Error> {
        let c = |sql: &str| -> Result<u64, Error> {
            Ok(self
                .conn
                .prepare_cached(sql)?
                .query_row([], |r| r.get::<_, i64>(0))? as u64)
        };
        Ok(StoreCounts {
            pts: c(&format!("SELECT count(*) FROM pts WHERE {PT_VISIBLE}"))?,
            pending_operations: c("SELECT count(*) FROM operations WHERE state = 'pending'")?,
            active_registrations: c("SELECT count(*) FROM registrations WHERE active = 1")?,
            audit_events: c(LAST_AUDIT_SEQ)?,
            leak_signals: c("SELECT count(*) FROM leak_signals")?,
        })
    }

    fn admin_token(
        &self,
        id: &AdminTokenId,
    ) -> Result<Option<(AdminTokenRecord, [u8; 32])>, Error> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT id, verifier, name, role, created_at, revoked_at FROM admin_tokens WHERE id = ?1",
            )?
            .query_row([&id.to_bytes()[..]], admin_row)
            .optional()?)
    }

    fn list_admin_tokens(&self) -> Result<Vec<AdminTokenRecord>, Error> {
        let mut st = self.conn.prepare_cached(
            "SELECT id, verifier, name, role, created_at, revoked_at FROM admin_tokens ORDER BY created_at",
        )?;
        let rows = st.query_map([], admin_row)?;
        Ok(rows.map(|r| r.map(|(a, _)| a)).collect::<Result<_, _>>()?)
    }
}

fn admin_row(r: &Row<'_>) -> rusqlite::Result<(AdminTokenRecord, [u8; 32])> {
    let id: [u8; PtId::LEN] = r.get(0)?;
    let role: String = r.get(3)?;
    Ok((
        AdminTokenRecord {
            id: AdminTokenId::from_bytes(id),
            name: r.get(2)?,
            role: role.parse().map_err(conversion)?,
            created_at: ts(r.get(4)?),
            revoked_at: ts_opt(r.get(5)?),
        },
        r.get(1)?,
    ))
}

fn block_row(r: &Row<'_>) -> rusqlite::Result<BlockRecord> {
    Ok(BlockRecord {
        device_id: DeviceId::new(r.get::<_, String>(0)?).map_err(conversion)?,
        at: ts(r.get(1)?),
        by: r.get(2)?,
        reason: r.get(3)?,
    })
}

impl StoreTxn for Db<'_> {
    fn set_meta(&mut self, key: &str, value: &str) -> Result<(), Error> {
        self.conn
            .prepare_cached("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)")?
            .execute([key, value])?;
        Ok(())
    }

    fn put_key_epoch(&mut self, rec: &KeyEpochRecord) -> Result<(), Error> {
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO key_epochs (epoch, created_at, rt_keep_until, retired_at) \
                 VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![
                rec.epoch,
                sql_ts(rec.created_at),
                rec.rt_keep_until.map(sql_ts),
                rec.retired_at.map(sql_ts)
            ])?;
        Ok(())
    }

    fn insert_pt(&mut self, rec: &PtRecord, verifier: &[u8; 32]) -> Result<(), Error> {
        self.conn
            .prepare_cached(&format!(
                "INSERT INTO pts ({PT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
            ))?
            .execute(params![
                &rec.id.to_bytes()[..],
                &verifier[..],
                rec.label,
                json(&rec.kind)?,
                json(&rec.approval)?,
                sql_u64(rec.rt_lifetime_secs),
                json(&rec.device_id_policy)?,
                rec.expires_at.map(sql_ts),
                sql_ts(rec.created_at),
                rec.revoked_at.map(sql_ts),
                sql_u64(rec.registrations_created),
                rec.batch,
            ])?;
        Ok(())
    }

    fn update_pt(&mut self, rec: &PtRecord) -> Result<(), Error> {
        self.conn
            .prepare_cached(
                "UPDATE pts SET revoked_at = ?2, registrations_created = ?3 WHERE id = ?1",
            )?
            .execute(params![
                &rec.id.to_bytes()[..],
                rec.revoked_at.map(sql_ts),
                sql_u64(rec.registrations_created)
            ])?;
        Ok(())
    }

    fn insert_operation(&mut self, rec: &OperationRecord) -> Result<(), Error> {
        self.conn
            .prepare_cached(
                "INSERT INTO operations (id, pt_id, state, created_at, expires_at, body, nonce_digest) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                &rec.id.to_bytes()[..],
                &rec.pt_id.to_bytes()[..],
                rec.state.as_str(),
                sql_ts(rec.created_at),
                sql_ts(rec.expires_at),
                json(rec)?,
                &rec.nonce_digest.0[..],
            ])?;
        Ok(())
    }

    fn update_operation(&mut self, rec: &OperationRecord) -> Result<(), Error> {
        self.conn
            .prepare_cached("UPDATE operations SET state = ?2, body = ?3 WHERE id = ?1")?
            .execute(params![
                &rec.id.to_bytes()[..],
                rec.state.as_str(),
                json(rec)?
            ])?;
        Ok(())
    }

    fn insert_registration(&mut self, rec: &RegistrationRecord) -> Result<RegistrationId, Error> {
        self.conn
            .prepare_cached(&format!(
                "INSERT INTO registrations ({REG_COLUMNS}) \
                 VALUES (NULL, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
            ))?
            .execute(params![
                rec.device_id.as_str(),
                &rec.pt_id.to_bytes()[..],
                &rec.operation_id.to_bytes()[..],
                rec.status == RegistrationStatus::Active,
                rec.generation,
                rec.key_epoch,
                sql_u64(rec.issued_at),
                sql_u64(rec.expires_at),
                sql_u64(rec.lifetime_secs),
                sql_ts(rec.created_at),
                rec.revoked_at.map(sql_ts),
                rec.revoke_reason,
                i64::from(rec.binding),
            ])?;
        Ok(RegistrationId::new(self.conn.last_insert_rowid() as u64))
    }

    fn update_registration(&mut self, rec: &RegistrationRecord) -> Result<(), Error> {
        self.conn
            .prepare_cached(
                "UPDATE registrations SET active = ?2, generation = ?3, key_epoch = ?4, \
                 issued_at = ?5, expires_at = ?6, revoked_at = ?7, revoke_reason = ?8 WHERE id = ?1",
            )?
            .execute(params![
                sql_u64(rec.id.get()),
                rec.status == RegistrationStatus::Active,
                rec.generation,
                rec.key_epoch,
                sql_u64(rec.issued_at),
                sql_u64(rec.expires_at),
                rec.revoked_at.map(sql_ts),
                rec.revoke_reason,
            ])?;
        Ok(())
    }

    fn refresh_registration(
        &mut self,
        rec: &RegistrationRecord,
        audit: RefreshAudit<'_>,
    ) -> Result<(), Error> {
        // Appended to the refresh journal rather than updating the row in place (see
        // store/journal.rs); the fold writes it into the row later.
        let conn = self.conn;
        let batch = self.writer_journal()?;
        batch.append(conn, rec.id.get(), RefreshState::of(rec), audit)
    }

    fn block(&mut self, rec: &BlockRecord) -> Result<(), Error> {
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO blocked_devices (device_id, at, by, reason) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![rec.device_id.as_str(), sql_ts(rec.at), rec.by, rec.reason])?;
        Ok(())
    }

    fn unblock(&mut self, d: &DeviceId) -> Result<bool, Error> {
        Ok(self
            .conn
            .prepare_cached("DELETE FROM blocked_devices WHERE device_id = ?1")?
            .execute([d.as_str()])?
            > 0)
    }

    fn append_audit(&mut self, ev: &NewAuditEvent<'_>) -> Result<(), Error> {
        // Numbered by the writer, in one sequence with the refresh events in the journal.
        let seq = self.writer_journal()?.next_seq();
        self.conn
            .prepare_cached(
                "INSERT INTO audit (seq, at, actor, source, action, subject, detail) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                seq,
                sql_ts(ev.at),
                ev.actor,
                ev.source,
                ev.action,
                ev.subject,
                json(&ev.detail)?
            ])?;
        Ok(())
    }

    fn insert_leak(&mut self, s: &NewLeakSignal) -> Result<(), Error> {
        self.conn
            .prepare_cached(
                "INSERT INTO leak_signals (at, kind, pt_id, registration_id, operation_id, source, action, detail) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                sql_ts(s.at),
                s.kind.as_str(),
                s.pt_id.map(|p| p.to_string()),
                s.registration_id.map(|r| sql_u64(r.get())),
                s.operation_id.map(|o| o.to_string()),
                s.source,
                s.action,
                s.detail
            ])?;
        Ok(())
    }

    fn insert_admin_token(
        &mut self,
        rec: &AdminTokenRecord,
        verifier: &[u8; 32],
    ) -> Result<(), Error> {
        self.conn
            .prepare_cached(
                "INSERT INTO admin_tokens (id, verifier, name, role, created_at, revoked_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                &rec.id.to_bytes()[..],
                &verifier[..],
                rec.name,
                rec.role.as_str(),
                sql_ts(rec.created_at),
                rec.revoked_at.map(sql_ts)
            ])?;
        Ok(())
    }

    fn revoke_admin_token(&mut self, id: &AdminTokenId, at: Timestamp) -> Result<bool, Error> {
        Ok(self
            .conn
            .prepare_cached(
                "UPDATE admin_tokens SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
            )?
            .execute(params![&id.to_bytes()[..], sql_ts(at)])?
            > 0)
    }

    fn stage_pt_batch(&mut self, batch: &str, at: Timestamp) -> Result<(), Error> {
        self.conn
            .prepare_cached("INSERT INTO pt_batches_staged (id, created_at) VALUES (?1, ?2)")?
            .execute(params![batch, sql_ts(at)])?;
        Ok(())
    }

    fn commit_pt_batch(&mut self, batch: &str) -> Result<bool, Error> {
        Ok(self
            .conn
            .prepare_cached("DELETE FROM pt_batches_staged WHERE id = ?1 AND abandoned = 0")?
            .execute([batch])?
            > 0)
    }

    fn abandon_pt_batches(&mut self, batch: Option<&str>) -> Result<(), Error> {
        self.conn
            .prepare_cached(
                "UPDATE pt_batches_staged SET abandoned = 1 WHERE ?1 IS NULL OR id = ?1",
            )?
            .execute([batch])?;
        Ok(())
    }

    fn delete_abandoned_pts(&mut self, limit: usize) -> Result<usize, Error> {
        let batch: Option<String> = self
            .conn
            .prepare_cached("SELECT id FROM pt_batches_staged WHERE abandoned = 1 LIMIT 1")?
            .query_row([], |r| r.get(0))
            .optional()?;
        let Some(batch) = batch else {
            return Ok(0);
        };
        let n = self
            .conn
            .prepare_cached(
                "DELETE FROM pts WHERE id IN (SELECT id FROM pts WHERE batch = ?1 LIMIT ?2)",
            )?
            .execute(params![batch, limit_or_default(limit)])?;
        if n < limit {
            self.conn
                .prepare_cached("DELETE FROM pt_batches_staged WHERE id = ?1")?
                .execute([&batch])?;
        }
        Ok(n)
    }

    fn expired_pending(
        &mut self,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<OperationRecord>, Error> {
        let mut st = self.conn.prepare_cached(
            "SELECT body, nonce_digest FROM operations INDEXED BY operations_state_expiry \
             WHERE state = 'pending' AND expires_at <= ?1 LIMIT ?2",
        )?;
        let rows = st.query_map(params![sql_ts(now), limit_or_default(limit)], op_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
