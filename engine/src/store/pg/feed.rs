//! The change feed's follower: one thread per node that reads the changes other nodes commit,
//! in commit order, and hands them to the engine.
//!
//! Each transaction that changes what nodes keep in memory writes its changes to `changes`,
//! numbered from the `feed` counter at commit (so in commit order, without gaps), and sends a
//! `NOTIFY`. The follower reads everything after its position, then waits for a notification
//! or for the poll interval, whichever comes first: notifications only make it prompt, a lost
//! one costs at most one poll interval. It records when it last read the feed to its head;
//! validations fail closed when that is longer ago than the engine allows (a lost database
//! connection, a follower that cannot keep up). A lost connection is opened again.
//!
//! The follower also trims the feed: rows more than [`KEEP_ROWS`] behind the head are deleted.
//! A node that falls further behind than that (it was stopped, or cut off for long) finds a gap
//! and rebuilds its state from the tables instead ([`FeedSink::resync`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use postgres::fallible_iterator::FallibleIterator;

use super::{Conn, Manager};
use crate::error::Error;
use crate::store::{Change, FeedHealth, FeedSink};

/// The notification channel.
pub(crate) const CHANNEL: &str = "tessera_changes";

/// Changes read at a time.
const PAGE: i64 = 1000;

/// Feed rows kept behind the head.
pub(crate) const KEEP_ROWS: i64 = 1_000_000;

/// What a follower needs.
pub(crate) struct Follower {
    pub(crate) manager: Manager,
    pub(crate) node: i64,
    pub(crate) position: i64,
    pub(crate) sink: Arc<dyn FeedSink>,
    pub(crate) health: Arc<FeedHealth>,
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) poll: Duration,
}

impl Follower {
    pub(crate) fn run(mut self) {
        let mut conn: Option<Conn> = None;
        let mut trimmed_at = 0;
        while !self.stop.load(Ordering::Acquire) && !self.sink.closed() {
            let c = match conn.as_mut() {
                Some(c) if !c.client.is_closed() => c,
                _ => {
                    conn = self.connect().ok();
                    if conn.is_none() {
                        // The database is unreachable: try again after a poll interval (the
                        // engine fails closed meanwhile).
                        std::thread::sleep(self.poll);
                    }
                    continue;
                }
            };
            match self.step(c) {
                Ok(head) => {
                    if head - trimmed_at > KEEP_ROWS / 10 && trim(c, head).is_ok() {
                        trimmed_at = head;
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

    /// Read and apply everything after the position; the feed's head.
    fn step(&mut self, c: &mut Conn) -> Result<i64, Error> {
        loop {
            // The head and the rows from one snapshot: a row missing below the head is then
            // really gone, not just committed a moment later.
            c.batch("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")?;
            let read = (|| {
                let head = c
                    .query_opt("SELECT value FROM counters WHERE name = 'feed'", &[])?
                    .map(|r| get::<i64>(&r, 0))
                    .transpose()?
                    .unwrap_or(0);
                let rows = c.query(
                    "SELECT seq, node, body FROM changes WHERE seq > $1 ORDER BY seq LIMIT $2",
                    &[&self.position, &PAGE],
                )?;
                Ok::<_, Error>((head, rows))
            })();
            c.batch("COMMIT")?;
            let (head, rows) = read?;
            let first = rows.first().map(|r| get::<i64>(r, 0)).transpose()?;
            if first.map_or(head > self.position, |f| f != self.position + 1) {
                // Rows between the position and the first one left are gone (trimmed): the
                // changes they held are in the tables, so the state is rebuilt from those.
                self.sink.resync()?;
                self.position = first.map_or(head, |f| f - 1);
                continue;
            }
            let mut batch = Vec::with_capacity(rows.len());
            for r in &rows {
                let seq: i64 = get(r, 0)?;
                let node: i64 = get(r, 1)?;
                if node != self.node {
                    let body: &str = get(r, 2)?;
                    let change: Change = serde_json::from_str(body)
                        .map_err(|e| Error::store(format!("change {seq}: {e}")))?;
                    batch.push(change);
                }
                self.position = seq;
            }
            if !batch.is_empty() {
                self.sink.apply(&batch);
            }
            self.health
                .position
                .store(u64::try_from(self.position).unwrap_or(0), Ordering::Release);
            self.health
                .head
                .store(u64::try_from(head).unwrap_or(0), Ordering::Release);
            if (rows.len() as i64) < PAGE {
                self.health.caught_up();
                return Ok(head);
            }
        }
    }
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

fn trim(c: &mut Conn, head: i64) -> Result<u64, Error> {
    c.execute(
        "DELETE FROM changes WHERE seq <= $1",
        &[&(head - KEEP_ROWS)],
    )
}

fn get<'a, T: postgres::types::FromSql<'a>>(r: &'a postgres::Row, i: usize) -> Result<T, Error> {
    r.try_get(i)
        .map_err(|e| Error::store(format!("postgresql: column {i}: {e}")))
}
