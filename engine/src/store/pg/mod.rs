//! The PostgreSQL store, for several nodes on one database: the same traits as the SQLite
//! store, with the same group commit (a writer thread per node, or several side by side with
//! [`PostgresOptions::writers`]; each batch of jobs is one transaction, each job in a savepoint
//! of its own) and a pool of read connections (`r2d2`).
//!
//! What makes the engine's rules hold across nodes is PostgreSQL's locking, not a node's
//! memory. A write job's reads lock what they read for the rest of its batch's transaction:
//! the row of a PT, an operation or a registration (`SELECT … FOR UPDATE`), a device id (a
//! transaction-scoped advisory lock, so that one that has no row yet is locked too) and the key
//! epochs (an advisory lock). A job on another node that reads the same thing waits until the
//! first batch has committed and then reads what it committed (each statement at READ
//! COMMITTED sees the latest committed data), so the check it makes and the change it writes
//! are never based on a stale read: one successor per generation, the caps, the code attempts
//! and every revocation hold across nodes. A deadlock between two nodes' batches is broken by
//! PostgreSQL, which fails one of the batches: nothing in it is acknowledged and its callers
//! get a store error (and retry).
//!
//! Audit sequence numbers and leak signal ids must grow in commit order, or a reader that
//! follows them from a cursor (REVOCATIONS, the console's audit tail) could skip a row that
//! commits after a higher number was read. Numbering them inside the transaction would hold the
//! numbering row locked through every commit (a cluster-wide lock: batches then commit one
//! after another whatever the number of nodes). So a batch writes them without a number, and
//! they are numbered after commit, one numbering transaction at a time (see `feed.rs`): a
//! number is given only to a committed row, and only after every lower one. A reader of this
//! node's events settles its own first ([`Store::settle_numbers`]).

mod db;
mod feed;
mod schema;

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::str::FromStr;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use postgres::types::ToSql;
use postgres::{Client, NoTls, Row, Statement};

use super::queue::{self, JobQueue, Queued, Stats};
use super::sql::sql_u64;
use super::{CommitCallback, CommitStats, JobOutcome, Store, StoreRead, WriteJob};
use crate::error::Error;
use crate::model::RegistrationId;
use db::{Db, PendingLog};

/// The store's error for a PostgreSQL error. The driver's messages name statements, columns and
/// constraints, never bound parameter values.
pub(crate) fn pg_err(e: postgres::Error) -> Error {
    let message = match e.as_db_error() {
        Some(db) => format!("postgresql: {}", db.message()),
        None => format!("postgresql: {e}"),
    };
    Error::Store(crate::error::StoreError::caused_by(message, e))
}

/// How to open the PostgreSQL store.
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    max_batch: usize,
    writers: usize,
    read_connections: u32,
    connect_timeout: Duration,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            max_batch: 1024,
            writers: 1,
            read_connections: 4,
            connect_timeout: Duration::from_secs(5),
        }
    }
}

impl PostgresOptions {
    /// Most jobs committed together in one transaction. Defaults to 1024.
    pub fn max_batch(&mut self, n: usize) -> &mut Self {
        self.max_batch = n.max(1);
        self
    }

    /// Writer threads, each with its own connection, committing batches side by side (as the
    /// writers of several nodes do: the locks keep the rules). Defaults to 1.
    pub fn writers(&mut self, n: usize) -> &mut Self {
        self.writers = n.clamp(1, 64);
        self
    }

    /// Connections in the read pool. Defaults to 4.
    pub fn read_connections(&mut self, n: u32) -> &mut Self {
        self.read_connections = n.max(1);
        self
    }

    /// How long opening a connection may take. Defaults to 5 s.
    pub fn connect_timeout(&mut self, d: Duration) -> &mut Self {
        self.connect_timeout = d;
        self
    }
}

/// One connection with its prepared statements.
pub(crate) struct Conn {
    client: Client,
    statements: HashMap<String, Statement>,
}

impl Conn {
    fn statement(&mut self, sql: &str) -> Result<Statement, Error> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(sql).map_err(pg_err)?;
        self.statements.insert(sql.to_owned(), s.clone());
        Ok(s)
    }

    pub(crate) fn query(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, Error> {
        let st = self.statement(sql)?;
        self.client.query(&st, params).map_err(pg_err)
    }

    pub(crate) fn query_opt(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, Error> {
        let st = self.statement(sql)?;
        self.client.query_opt(&st, params).map_err(pg_err)
    }

    pub(crate) fn execute(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, Error> {
        let st = self.statement(sql)?;
        self.client.execute(&st, params).map_err(pg_err)
    }

    pub(crate) fn batch(&mut self, sql: &str) -> Result<(), Error> {
        self.client.batch_execute(sql).map_err(pg_err)
    }
}

/// Opens connections for the writer and the read pool.
#[derive(Clone)]
struct Manager {
    config: postgres::Config,
}

impl Manager {
    fn open(&self) -> Result<Conn, Error> {
        let client = self.config.connect(NoTls).map_err(|e| {
            Error::store(format!(
                "cannot connect to PostgreSQL at {}: {}",
                describe(&self.config),
                pg_err(e)
            ))
        })?;
        Ok(Conn {
            client,
            statements: HashMap::new(),
        })
    }
}

impl r2d2::ManageConnection for Manager {
    type Connection = Conn;
    type Error = Error;

    fn connect(&self) -> Result<Conn, Error> {
        self.open()
    }

    fn is_valid(&self, c: &mut Conn) -> Result<(), Error> {
        c.client.simple_query("").map(|_| ()).map_err(pg_err)
    }

    fn has_broken(&self, c: &mut Conn) -> bool {
        c.client.is_closed()
    }
}

/// A PostgreSQL URL without its password (`postgres://user:***@host:port/db`), to show
/// settings; the URL as given when it does not parse.
pub fn redacted_url(url: &str) -> String {
    match url.parse::<postgres::Config>() {
        Ok(c) => {
            let user = c.get_user().unwrap_or("");
            let password = if c.get_password().is_some() {
                ":***"
            } else {
                ""
            };
            format!("postgres://{user}{password}@{}", describe(&c))
        }
        Err(_) => "<a URL that does not parse>".into(),
    }
}

/// Where a configuration points, without its password.
fn describe(c: &postgres::Config) -> String {
    let host = c
        .get_hosts()
        .first()
        .map(|h| match h {
            postgres::config::Host::Tcp(s) => s.clone(),
            postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .unwrap_or_default();
    let port = c.get_ports().first().copied().unwrap_or(5432);
    format!(
        "{host}:{port}/{}",
        c.get_dbname().unwrap_or(c.get_user().unwrap_or(""))
    )
}

/// The PostgreSQL store. Dropping it finishes queued jobs and stops the writer.
pub struct PostgresStore {
    target: String,
    manager: Manager,
    /// This node's id in the change feed.
    node: i64,
    /// The snapshot when the store was opened: a follower starts after it.
    feed_start: String,
    /// Transactions whose commit a writer saw acknowledged (the follower skips their rows).
    acknowledged: Arc<feed::Acknowledged>,
    /// This node's commits that wrote events, and how many of them are known numbered.
    events: Arc<Events>,
    follower: Mutex<Option<(Arc<std::sync::atomic::AtomicBool>, JoinHandle<()>)>>,
    queue: JobQueue,
    threads: Mutex<Vec<JoinHandle<()>>>,
    readers: Option<r2d2::Pool<Manager>>,
    stats: Arc<Stats>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connect to the database at `url` (`postgres://user[:password]@host[:port]/database`, or
    /// the key=value form), migrate its schema and start the writer.
    pub fn open(url: &str, options: &PostgresOptions) -> Result<Self, Error> {
        let mut config = postgres::Config::from_str(url).map_err(|e| {
            // The driver's message never repeats the URL (which may hold a password).
            Error::store(format!("not a PostgreSQL connection URL: {e}"))
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(options.connect_timeout);
        }
        config.application_name("tessera");
        let manager = Manager { config };
        let target = describe(&manager.config);
        let mut writer = manager.open()?;
        schema::migrate(&mut writer.client)?;
        let mut writers = vec![writer];
        for _ in 1..options.writers {
            writers.push(manager.open()?);
        }
        let feed_start: String = writers[0]
            .query_opt("SELECT pg_current_snapshot()::text", &[])?
            .map(|r| r.try_get(0))
            .transpose()
            .map_err(pg_err)?
            .ok_or_else(|| Error::store("no snapshot".into()))?;
        let acknowledged = Arc::new(feed::Acknowledged::default());
        let events = Arc::new(Events::default());
        let node = node_id()?;
        let readers = r2d2::Pool::builder()
            .max_size(options.read_connections)
            .min_idle(Some(1))
            .connection_timeout(options.connect_timeout.max(Duration::from_secs(1)))
            .build(manager.clone())
            .map_err(|e| Error::store(format!("read pool: {e}")))?;
        let (tx, rx) = mpsc::channel();
        // The writers take turns at the queue: one waits for jobs and takes what is queued
        // (a batch), then runs it while the next one waits.
        let rx = Arc::new(Mutex::new(rx));
        let stats = Arc::new(Stats::default());
        let max_batch = options.max_batch;
        let mut threads = Vec::with_capacity(writers.len());
        for writer in writers {
            let (wm, rx) = (manager.clone(), rx.clone());
            let shared = WriterShared {
                node,
                acknowledged: acknowledged.clone(),
                events: events.clone(),
                stats: stats.clone(),
            };
            threads.push(
                std::thread::Builder::new()
                    .name("tessera-store-writer".into())
                    .spawn(move || writer_loop(writer, &wm, &rx, max_batch, &shared))
                    .map_err(|e| Error::store(format!("cannot start writer thread: {e}")))?,
            );
        }
        Ok(Self {
            target,
            manager,
            node,
            feed_start,
            acknowledged,
            events,
            follower: Mutex::new(None),
            queue: JobQueue::new(tx),
            threads: Mutex::new(threads),
            readers: Some(readers),
            stats,
        })
    }

    /// The URL of `schema` inside the database at `url`, creating the schema if it does not
    /// exist: several independent deployments (or test runs) can share one database, each in a
    /// schema of its own. `schema` is a lower-case SQL identifier.
    pub fn schema_url(url: &str, schema: &str) -> Result<String, Error> {
        let ok = !schema.is_empty()
            && schema.len() <= 63
            && schema.starts_with(|c: char| c.is_ascii_lowercase())
            && schema
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !ok {
            return Err(Error::store(format!("not a schema name: {schema:?}")));
        }
        let config = postgres::Config::from_str(url)
            .map_err(|e| Error::store(format!("not a PostgreSQL connection URL: {e}")))?;
        let mut conn = Manager { config }.open()?;
        conn.batch(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))?;
        let sep = if url.contains('?') { '&' } else { '?' };
        Ok(format!("{url}{sep}options=-c%20search_path%3D{schema}"))
    }

    /// Where the store is (host, port and database; never a password).
    pub fn target(&self) -> &str {
        &self.target
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        let follower = self.follower.lock().ok().and_then(|mut f| f.take());
        // The last handle may be released on the follower itself (while it applies a change):
        // it then stops on its own.
        let follower = follower.filter(|(stop, t)| {
            stop.store(true, Ordering::Release);
            t.thread().id() != std::thread::current().id()
        });
        let pool = self.readers.take();
        // The driver blocks on a runtime of its own, which it cannot do on a thread that
        // drives an async runtime (the server's): the follower is woken and the pool closed
        // on a thread of their own.
        let _ = std::thread::Builder::new()
            .name("tessera-store-close".into())
            .spawn(move || {
                if let Some((_, t)) = follower {
                    // Wake it from its wait (it also wakes the other nodes' followers, which
                    // then find nothing new).
                    if let Some(mut c) = pool.as_ref().and_then(|p| p.get().ok()) {
                        let _ = c.batch(&format!("NOTIFY {}", feed::CHANNEL));
                    }
                    let _ = t.join();
                }
                drop(pool);
            })
            .map(|t| t.join());
        self.queue.close();
        if let Ok(mut threads) = self.threads.lock() {
            threads.drain(..).for_each(queue::join);
        }
    }
}

/// Counts of this node's commits that wrote audit events or leak signals, and of those known
/// to be numbered (a reader settles the difference first).
#[derive(Default)]
struct Events {
    committed: std::sync::atomic::AtomicU64,
    numbered: std::sync::atomic::AtomicU64,
}

/// A random id for this node's rows in the change feed.
fn node_id() -> Result<i64, Error> {
    let mut b = [0u8; 8];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b)
        .map_err(|_| Error::Keys("system random generator failed".into()))?;
    Ok(i64::from_le_bytes(b))
}

/// What every writer of a node shares.
struct WriterShared {
    node: i64,
    acknowledged: Arc<feed::Acknowledged>,
    events: Arc<Events>,
    stats: Arc<Stats>,
}

fn writer_loop(
    conn: Conn,
    manager: &Manager,
    rx: &Mutex<Receiver<Queued>>,
    max_batch: usize,
    shared: &WriterShared,
) {
    let mut conn = Some(conn);
    let mut batch: Vec<Queued> = Vec::with_capacity(max_batch);
    let mut done: Vec<CommitCallback> = Vec::with_capacity(max_batch);
    loop {
        // The writers take turns at the queue.
        let taken = rx
            .lock()
            .is_ok_and(|rx| queue::take_batch(&rx, max_batch, &mut batch));
        if !taken {
            return;
        }
        // A lost connection is opened again for the next batch; until then batches fail.
        if conn.as_ref().is_none_or(|c| c.client.is_closed()) {
            conn = manager.open().ok();
        }
        let n = batch.len() as u64;
        let started = std::time::Instant::now();
        let result = match conn.as_mut() {
            Some(c) => {
                run_batch(c, shared.node, &shared.events, &mut batch, &mut done).map(|xid| {
                    if let Some(x) = xid {
                        shared.acknowledged.record(x);
                    }
                })
            }
            None => {
                batch.clear();
                Err(Error::store("the database cannot be reached".into()))
            }
        };
        shared.stats.record(n, result.is_ok(), started.elapsed());
        for cb in done.drain(..) {
            cb(result.clone());
        }
    }
}

/// Run a batch in one transaction, one commit at the end. A job runs inside a savepoint of its
/// own (rolled back alone if it fails) unless it was submitted as writing last; such a job that
/// fails after writing, or whose statement failed, fails the whole batch. The id of the
/// transaction when it wrote feed rows.
fn run_batch(
    conn: &mut Conn,
    node: i64,
    events: &Events,
    batch: &mut Vec<Queued>,
    done: &mut Vec<CommitCallback>,
) -> Result<Option<u64>, Error> {
    if let Err(e) = conn.batch("BEGIN") {
        batch.clear();
        return Err(e);
    }
    let mut log = PendingLog::new(node);
    // Refreshes first (the order of jobs queued together is free): their registrations are
    // locked in one statement and they run against those rows without a statement of their
    // own, until a job with a savepoint comes.
    batch.sort_by_key(|q| q.reads.is_none());
    let mut reads: Vec<i64> = batch
        .iter()
        .filter_map(|q| q.reads)
        .map(|r| sql_u64(r.get()))
        .collect();
    let mut failure: Option<Error> = log.locked.get_mut().lock(conn, &mut reads).err();
    for Queued { job, savepoint, .. } in batch.drain(..) {
        if failure.is_some() {
            continue; // dropped without running: its caller sees the job vanish
        }
        if savepoint {
            // What the refreshes before it changed is written first: a job rolled back to its
            // savepoint must not take them with it.
            if let Err(e) = log.locked.get_mut().flush(conn) {
                failure = Some(e);
                continue;
            }
            if let Err(e) = conn.batch("SAVEPOINT job") {
                failure = Some(e);
                continue;
            }
        }
        log.begin_job();
        let (outcome, wrote, failed) = {
            let mut txn = Db::writer(conn, &mut log);
            let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| job(&mut txn)));
            (outcome, txn.wrote(), txn.failed())
        };
        let keep = matches!(&outcome, Ok(JobOutcome { keep: true, .. }));
        if !keep {
            log.rollback_job();
        }
        let step = match (savepoint, keep) {
            (true, true) => conn.batch("RELEASE job"),
            (true, false) => conn.batch("ROLLBACK TO job; RELEASE job"),
            // A failed statement aborts the whole transaction in PostgreSQL.
            (false, _) if failed => Err(Error::store(
                "a statement failed; the batch was rolled back".into(),
            )),
            (false, false) if wrote => Err(Error::store(
                "a write failed part-way; the batch was rolled back".into(),
            )),
            (false, _) => Ok(()),
        };
        if let Err(e) = step {
            failure = Some(e);
        }
        if let Ok(o) = outcome {
            done.push(o.on_commit);
        }
    }
    let notify = log.notifies();
    let numbers = log.numbers();
    let result = match failure {
        Some(e) => Err(e),
        // The wake-up for the followers and the sequencer goes after the commit, in the same
        // round trip: inside the transaction PostgreSQL would hold its notification lock (one
        // for the whole cluster) through the commit's flush.
        None => log.write(conn).and_then(|xid| {
            if notify {
                conn.batch(&format!("COMMIT; NOTIFY {}", feed::CHANNEL))
            } else {
                conn.batch("COMMIT")
            }
            .map(|()| xid)
        }),
    };
    if result.is_ok() && numbers {
        // Committed: the sequencer, woken by the notification, numbers its events; a reader
        // of this node settles them first (`settle_numbers`).
        events.committed.fetch_add(1, Ordering::AcqRel);
    }
    if result.is_err() {
        let _ = conn.batch("ROLLBACK");
    }
    result
}

impl Store for PostgresStore {
    fn submit(&self, job: WriteJob) {
        self.queue.send(job, true, None);
    }

    fn submit_refresh(&self, job: WriteJob, reads: RegistrationId) {
        self.queue.send(job, false, Some(reads));
    }

    fn read(&self, f: &mut dyn FnMut(&dyn StoreRead) -> Result<(), Error>) -> Result<(), Error> {
        let pool = self
            .readers
            .as_ref()
            .ok_or_else(|| Error::store("the store is closed".into()))?;
        // The read pool's figures: how long a read waited for a connection, and the
        // connections open and idle.
        let asked = std::time::Instant::now();
        let got = pool.get();
        metrics::histogram!("tessera_pg_pool_wait_seconds").record(asked.elapsed().as_secs_f64());
        let state = pool.state();
        metrics::gauge!("tessera_pg_pool_connections").set(f64::from(state.connections));
        metrics::gauge!("tessera_pg_pool_idle_connections").set(f64::from(state.idle_connections));
        let mut conn = got.map_err(|e| Error::store(format!("no read connection: {e}")))?;
        conn.batch("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")?;
        let r = f(&Db::reader(&mut conn));
        let end = conn.batch("ROLLBACK");
        r.and(end)
    }

    fn follow(
        &self,
        sink: Arc<dyn super::FeedSink>,
        poll: Duration,
    ) -> Result<Option<Arc<super::FeedHealth>>, Error> {
        let health = Arc::new(super::FeedHealth::default());
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let follower = feed::Follower {
            manager: self.manager.clone(),
            node: self.node,
            position: self.feed_start.clone(),
            acknowledged: self.acknowledged.clone(),
            sink,
            health: health.clone(),
            stop: stop.clone(),
            poll,
        };
        let t = std::thread::Builder::new()
            .name("tessera-feed".into())
            .spawn(move || follower.run())
            .map_err(|e| Error::store(format!("cannot start the feed follower: {e}")))?;
        if let Ok(mut f) = self.follower.lock() {
            *f = Some((stop, t));
        }
        Ok(Some(health))
    }

    fn commit_stats(&self) -> CommitStats {
        self.stats.snapshot()
    }
    fn describe(&self) -> String {
        format!("PostgreSQL {}", self.target)
    }

    fn settle_numbers(&self) -> Result<(), Error> {
        let committed = self.events.committed.load(Ordering::Acquire);
        if self.events.numbered.load(Ordering::Acquire) >= committed {
            return Ok(());
        }
        let pool = self
            .readers
            .as_ref()
            .ok_or_else(|| Error::store("the store is closed".into()))?;
        let mut conn = pool
            .get()
            .map_err(|e| Error::store(format!("no read connection: {e}")))?;
        // Numbers everything committed so far, this node's `committed` commits among it.
        feed::number(&mut conn, self.node)?;
        self.events.numbered.fetch_max(committed, Ordering::AcqRel);
        Ok(())
    }
}
