//! The change feed's follower: one thread per node that reads the changes every node commits
//! and hands them to the engine; on one node at a time it is also the sequencer, which numbers
//! audit events and leak signals once they have committed.
//!
//! Each transaction that changes what nodes keep in memory writes its changes to `changes`;
//! each row carries the id of the transaction that wrote it (`pg_current_xact_id()`). A
//! follower's position is a snapshot (`pg_snapshot`): the set of transactions that had
//! committed when it last read. One statement reads the rows whose transaction is visible in
//! the statement's own snapshot but was not in the position, and that snapshot becomes the
//! new position. So a transaction that commits late (after one that started after it) is read
//! in the next poll after its commit, never skipped, and no row or counter is locked through
//! anyone's commit. Rows of one read are applied in the order they were inserted: two
//! transactions that change the same thing are ordered by the row lock the second one waited
//! for, so it inserted its rows after the first one's commit.
//!
//! A writer sends a `NOTIFY` after each commit that wrote changes or events (never inside the
//! transaction, where PostgreSQL would hold a cluster-wide lock through the commit). The
//! follower reads, then waits for a notification or for the poll interval, whichever comes
//! first: notifications only make it prompt, a lost one costs at most one poll interval. It
//! records when it last read the feed; validations fail closed when that is longer ago than the
//! engine allows. A lost connection is opened again.
//!
//! The node's own rows are read too: those whose commit the writer saw acknowledged are
//! skipped; one whose acknowledgement was lost (the commit succeeded, the connection broke
//! before the answer) is applied, so no node keeps a memory that misses its own committed
//! change. Applying a change twice changes nothing.
//!
//! Audit events and leak signals are numbered after they commit, one numbering transaction at
//! a time ([`number`]), by the sequencer (the node whose follower holds a session advisory
//! lock; another takes over when its session ends) as soon as its follower sees committed
//! events without a number, so no writer waits for it; a node about to list events numbers
//! its own committed ones first, so a caller sees what its requests wrote. The sequencer also
//! trims the feed: rows more than [`KEEP_ROWS`] behind the newest are deleted and the newest
//! deleted transaction recorded; a node whose position is older than that (it was stopped, or
//! cut off for long) rebuilds its state from the tables instead ([`FeedSink::resync`]).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use postgres::fallible_iterator::FallibleIterator;

use super::{Conn, Manager};
use crate::error::Error;
use crate::store::{Change, FeedHealth, FeedSink};

/// The notification channel.
pub(crate) const CHANNEL: &str = "tessera_changes";

/// More new rows than this in one read: the state is rebuilt from the tables instead.
const MOST_ROWS: i64 = 100_000;

/// Feed rows kept behind the newest.
pub(crate) const KEEP_ROWS: i64 = 1_000_000;

/// The session advisory lock whose holder is the sequencer.
const SEQUENCER_LOCK: i64 = 0x7465_7373_6572_6103;

/// The transaction advisory lock each numbering transaction holds (another key than the
/// sequencer's: a session that holds one lock waits for nobody on the other).
const NUMBERING_LOCK: i64 = 0x7465_7373_6572_6104;

/// Events numbered in one sequencer transaction, at most.
const NUMBER_AT_ONCE: i64 = 10_000;

/// The transactions whose commits this node's writers saw acknowledged, whose feed rows the
/// follower then skips. Bounded: an entry the follower never meets (it read the rows before
/// the writer recorded them) is dropped eventually, and a row whose entry was dropped is
/// applied again, which changes nothing.
#[derive(Default)]
pub(crate) struct Acknowledged(Mutex<VecDeque<u64>>);

impl Acknowledged {
    const MOST: usize = 4096;

    pub(crate) fn record(&self, xid: u64) {
        let mut q = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if q.len() == Self::MOST {
            q.pop_front();
        }
        q.push_back(xid);
    }

    fn take(&self, xid: u64) -> bool {
        let mut q = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match q.iter().position(|x| *x == xid) {
            Some(i) => {
                q.remove(i);
                true
            }
            None => false,
        }
    }
}

/// What a follower needs.
pub(crate) struct Follower {
    pub(crate) manager: Manager,
    pub(crate) node: i64,
    /// The snapshot (`pg_snapshot` text) of the last read.
    pub(crate) position: String,
    pub(crate) acknowledged: Arc<Acknowledged>,
    pub(crate) sink: Arc<dyn FeedSink>,
    pub(crate) health: Arc<FeedHealth>,
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) poll: Duration,
}

/// What one read found.
struct Read {
    snapshot: String,
    gap: bool,
    sequencer: bool,
    /// The oldest audit event and leak signal without a number.
    unnumbered: Vec<Option<i64>>,
    rows: Vec<(u64, i64, String)>,
    newest: i64,
}

/// The follower's one statement per poll: the statement's snapshot, whether rows it never read
/// were trimmed, whether this node is (or just became) the sequencer, whether events wait for
/// numbers (the oldest of each kind), and the rows of transactions that committed since the
/// position. The rows are found by transaction id (index `changes_xid`) before they are
/// ordered: ordered and limited in one step, the planner walked the whole table in id order.
const READ: &str = "\
    WITH s AS MATERIALIZED (SELECT pg_current_snapshot() AS snap), \
    found AS MATERIALIZED (SELECT c.id, c.xid, c.node, c.body FROM changes c \
        WHERE c.xid >= pg_snapshot_xmin($1::text::pg_snapshot) \
        AND NOT pg_visible_in_snapshot(c.xid, $1::text::pg_snapshot)), \
    n AS MATERIALIZED (SELECT * FROM found ORDER BY id LIMIT $2) \
    SELECT (SELECT snap::text FROM s), \
        (SELECT xid FROM feed_trimmed) >= pg_snapshot_xmin($1::text::pg_snapshot), \
        CASE WHEN $3 THEN true ELSE pg_try_advisory_lock($4) END, \
        ARRAY[(SELECT min(id) FROM audit WHERE seq IS NULL), \
            (SELECT min(rid) FROM leak_signals WHERE id IS NULL)], \
        ARRAY(SELECT xid::text FROM n ORDER BY id), \
        ARRAY(SELECT node FROM n ORDER BY id), \
        ARRAY(SELECT body FROM n ORDER BY id), \
        coalesce((SELECT max(id) FROM n), 0)";

impl Follower {
    pub(crate) fn run(mut self) {
        let mut conn: Option<Conn> = None;
        let mut sequencer = false;
        let mut trimmed_at = 0;
        while !self.stop.load(Ordering::Acquire) && !self.sink.closed() {
            let c = match conn.as_mut() {
                Some(c) if !c.client.is_closed() => c,
                _ => {
                    // A new session holds no lock: the sequencer is whoever takes it next.
                    sequencer = false;
                    conn = self.connect().ok();
                    if conn.is_none() {
                        // The database is unreachable: try again after a poll interval (the
                        // engine fails closed meanwhile).
                        std::thread::sleep(self.poll);
                    }
                    continue;
                }
            };
            match self.step(c, &mut sequencer) {
                Ok((unnumbered, newest)) => {
                    if sequencer {
                        // Committed events without a number: their `logged` change wakes
                        // every follower, this one included.
                        if unnumbered.iter().any(Option::is_some) {
                            let _ = number(c, self.node);
                        }
                        if newest - trimmed_at > KEEP_ROWS / 10 && trim(c).is_ok() {
                            trimmed_at = newest;
                        }
                    }
                    wait(c, self.poll);
                }
                Err(_) => {
                    // Read again on a new connection (this one may be broken).
                    conn = None;
                }
            }
        }
    }

    fn connect(&self) -> Result<Conn, Error> {
        let mut c = self.manager.open()?;
        c.batch(&format!("LISTEN {CHANNEL}"))?;
        Ok(c)
    }

    fn read(&self, c: &mut Conn, sequencer: bool) -> Result<Read, Error> {
        let r = c
            .query_opt(
                READ,
                &[&self.position, &MOST_ROWS, &sequencer, &SEQUENCER_LOCK],
            )?
            .ok_or_else(|| Error::store("the feed read returned no row".into()))?;
        let xids: Vec<String> = get(&r, 4)?;
        let nodes: Vec<i64> = get(&r, 5)?;
        let bodies: Vec<String> = get(&r, 6)?;
        let rows = xids
            .into_iter()
            .zip(nodes)
            .zip(bodies)
            .map(|((x, n), b)| (x.parse().unwrap_or(0), n, b))
            .collect();
        Ok(Read {
            snapshot: get(&r, 0)?,
            gap: get::<Option<bool>>(&r, 1)?.unwrap_or(false),
            sequencer: get(&r, 2)?,
            unnumbered: get(&r, 3)?,
            rows,
            newest: get(&r, 7)?,
        })
    }

    /// Read and apply what committed since the position; the oldest events without a number,
    /// and the newest row read.
    fn step(
        &mut self,
        c: &mut Conn,
        sequencer: &mut bool,
    ) -> Result<(Vec<Option<i64>>, i64), Error> {
        let read = self.read(c, *sequencer)?;
        *sequencer = read.sequencer;
        if read.gap || read.rows.len() as i64 >= MOST_ROWS {
            // Rows this node never read are gone (trimmed), or too many to read at once: the
            // changes are in the tables, so the state is rebuilt from those.
            self.sink.resync()?;
        } else {
            let mut batch = Vec::with_capacity(read.rows.len());
            for (xid, node, body) in &read.rows {
                if *node == self.node && self.acknowledged.take(*xid) {
                    continue;
                }
                let change: Change = serde_json::from_str(body)
                    .map_err(|e| Error::store(format!("feed row of transaction {xid}: {e}")))?;
                batch.push(change);
            }
            if !batch.is_empty() {
                self.sink.apply(&batch);
            }
        }
        self.position = read.snapshot;
        // The newest row read: a read takes everything committed, so the position is the head.
        let newest = u64::try_from(read.newest).unwrap_or(0);
        self.health.position.fetch_max(newest, Ordering::AcqRel);
        self.health.head.fetch_max(newest, Ordering::AcqRel);
        self.health.caught_up();
        Ok((read.unnumbered, read.newest))
    }
}

/// Number the committed audit events and leak signals that have no number yet, after the
/// highest number given, and wake every node: one round trip, one transaction, under a
/// transaction lock, so that two numbering transactions never overlap and a number is given
/// only after every lower one has committed. Writes a `logged` change when it numbered
/// anything (the nodes' waiters, REVOCATIONS and the audit tail, look again). Run by the
/// sequencer as soon as it learns of committed events without a number, and by a node that
/// is about to list events its own requests wrote (`Store::settle_numbers`).
pub(crate) fn number(c: &mut Conn, node: i64) -> Result<(), Error> {
    let logged = serde_json::to_string(&Change::Logged)
        .map_err(|e| Error::store(format!("feed row: {e}")))?;
    // The lock, then the numbering in a statement of its own: its snapshot is taken after the
    // lock, so it sees the numbers the previous holder committed.
    let sql = format!(
        "BEGIN; SELECT pg_advisory_xact_lock({NUMBERING_LOCK}); \
         WITH a AS (UPDATE audit t SET seq = n.base + n.rn \
             FROM (SELECT id, row_number() OVER (ORDER BY id) AS rn, \
                   (SELECT coalesce(max(seq), 0) FROM audit) AS base \
                   FROM audit WHERE seq IS NULL ORDER BY id LIMIT {NUMBER_AT_ONCE}) n \
             WHERE t.id = n.id RETURNING 1), \
         l AS (UPDATE leak_signals t SET id = n.base + n.rn \
             FROM (SELECT rid, row_number() OVER (ORDER BY rid) AS rn, \
                   (SELECT coalesce(max(id), 0) FROM leak_signals) AS base \
                   FROM leak_signals WHERE id IS NULL ORDER BY rid LIMIT {NUMBER_AT_ONCE}) n \
             WHERE t.rid = n.rid RETURNING 1) \
         INSERT INTO changes (node, body) SELECT {node}, '{logged}' \
             WHERE EXISTS (SELECT 1 FROM a) OR EXISTS (SELECT 1 FROM l); \
         COMMIT; NOTIFY {CHANNEL}"
    );
    let r = c.batch(&sql);
    if r.is_err() {
        let _ = c.batch("ROLLBACK");
    }
    r
}

/// Wait for a notification, at most `poll`; any that arrived meanwhile are taken too.
fn wait(c: &mut Conn, poll: Duration) {
    let mut n = c.client.notifications();
    let woken = matches!(n.timeout_iter(poll).next(), Ok(Some(_)));
    if woken {
        // Several commits may have notified: one read covers them all.
        let mut pending = n.iter();
        while let Ok(Some(_)) = pending.next() {}
    }
}

/// Delete the rows more than [`KEEP_ROWS`] behind the newest, recording the newest deleted
/// transaction (a follower whose position is older than it rebuilds its state).
fn trim(c: &mut Conn) -> Result<u64, Error> {
    c.execute(
        "WITH d AS (DELETE FROM changes \
             WHERE id <= (SELECT max(id) FROM changes) - $1 RETURNING xid) \
         UPDATE feed_trimmed SET xid = greatest(xid, \
             coalesce((SELECT xid FROM d ORDER BY xid DESC LIMIT 1), xid))",
        &[&KEEP_ROWS],
    )
}

fn get<'a, T: postgres::types::FromSql<'a>>(r: &'a postgres::Row, i: usize) -> Result<T, Error> {
    r.try_get(i)
        .map_err(|e| Error::store(format!("postgresql: column {i}: {e}")))
}
