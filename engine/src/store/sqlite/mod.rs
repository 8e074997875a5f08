//! The embedded SQLite store: WAL mode, `synchronous=FULL`, one group-commit writer thread and
//! a small pool of read connections.
//!
//! - this file: the store (opening, the writer thread and its batches, the checkpointer, the
//!   read connections) and the reader another process opens;
//! - `db`: the data layer the engine reads and writes through (`db/read.rs`, `db/write.rs`);
//! - `schema`: the tables and their migrations; `journal`: the refresh journal;
//! - `backup`: online backups.

mod backup;
mod db;
mod journal;
mod schema;
pub use schema::migration_backup_path;

pub use backup::{backup, BackupReport};

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use rusqlite::{Connection, OpenFlags};

use super::queue::{self, JobQueue, Queued, Stats};
use journal::{BatchJournal, Follower, Overlay};

use super::{CommitCallback, CommitStats, JobOutcome, Store, StoreRead, WriteJob};
use crate::error::Error;
use crate::model::RegistrationId;
use db::{Db, View};

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
        schema::migrate(&mut conn, &path)?;
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
        let started = std::time::Instant::now();
        let result = run_batch(&conn, w, &mut journal, &mut batch, &mut done);
        stats.record(n, result.is_ok(), started.elapsed());
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
    for Queued { job, savepoint, .. } in batch.drain(..) {
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
        self.writer.queue.send(job, true, None);
    }

    fn submit_refresh(&self, job: WriteJob, _reads: RegistrationId) {
        self.writer.queue.send(job, false, None);
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
