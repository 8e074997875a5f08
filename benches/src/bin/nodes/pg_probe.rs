//! PostgreSQL's own figures for a phase of the several-node run: how much of the backends' time
//! went to waiting on the locks that serialise writers (sampled from `pg_stat_activity`), the
//! statements per request (`pg_stat_statements`, when the server preloads it), how many row
//! updates of `registrations` were HOT (in place), and the WAL and the database's CPU per
//! request.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use postgres::{Client, NoTls};
use serde_json::{json, Value};

/// The lock waits the run reports: a row or transaction lock held through another commit, or
/// the lock `NOTIFY` takes at commit.
const SERIALISING: &[&str] = &["transactionid", "tuple", "object"];

/// A connection to the database the nodes use, for its statistics.
pub(crate) struct Probe {
    client: Client,
    schema: String,
}

/// Counters read before a phase.
pub(crate) struct Mark {
    updates: i64,
    hot: i64,
    wal: String,
    postgres_cpu: f64,
}

/// Samples `pg_stat_activity` until dropped.
pub(crate) struct Sampler {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<(u64, u64, u64)>>,
}

impl Probe {
    /// Connect to `url` (the configuration's schema is named `schema`).
    pub(crate) fn connect(url: &str, schema: &str) -> Option<Self> {
        let client = Client::connect(url, NoTls).ok()?;
        Some(Self {
            client,
            schema: schema.to_owned(),
        })
    }

    /// The schema of `pg_stat_statements` when it is there (the server preloads it; the
    /// extension is made in the first configuration's schema if the database lacks it).
    fn statements(&mut self) -> Option<String> {
        let _ = self
            .client
            .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements");
        let schema: String = self
            .client
            .query_opt(
                "SELECT n.nspname::text FROM pg_extension e \
                 JOIN pg_namespace n ON n.oid = e.extnamespace \
                 WHERE e.extname = 'pg_stat_statements'",
                &[],
            )
            .ok()
            .flatten()?
            .get(0);
        self.client
            .query_one(
                &format!("SELECT count(*) FROM {schema}.pg_stat_statements"),
                &[],
            )
            .ok()
            .map(|_| schema)
    }

    /// Read the counters and reset the statement statistics.
    pub(crate) fn mark(&mut self) -> Mark {
        if let Some(schema) = self.statements() {
            let _ = self
                .client
                .batch_execute(&format!("SELECT {schema}.pg_stat_statements_reset()"));
        }
        let (updates, hot) = self.updates();
        Mark {
            updates,
            hot,
            wal: self.lsn(),
            postgres_cpu: postgres_cpu(),
        }
    }

    fn updates(&mut self) -> (i64, i64) {
        // The statistics are flushed by each backend when it goes idle (at most once a second).
        let _ = self.client.batch_execute("SELECT pg_stat_clear_snapshot()");
        self.client
            .query_opt(
                "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables \
                 WHERE schemaname = $1 AND relname = 'registrations'",
                &[&self.schema],
            )
            .ok()
            .flatten()
            .map_or((0, 0), |r| (r.get(0), r.get(1)))
    }

    fn lsn(&mut self) -> String {
        self.client
            .query_one("SELECT pg_current_wal_lsn()::text", &[])
            .map(|r| r.get(0))
            .unwrap_or_default()
    }

    /// Statements and WAL per request since `mark`, over `requests` requests.
    pub(crate) fn since(&mut self, mark: &Mark, requests: u64) -> Value {
        let n = requests.max(1) as f64;
        let statements: Option<i64> = self.statements().and_then(|schema| {
            self.client
                .query_one(
                    &format!(
                        "SELECT coalesce(sum(calls), 0)::bigint FROM {schema}.pg_stat_statements s \
                         WHERE s.dbid = (SELECT oid FROM pg_database \
                                         WHERE datname = current_database()) \
                         AND s.query NOT LIKE '%pg_stat%' \
                         AND s.query NOT LIKE '%pg_current_wal_lsn%' \
                         AND s.query NOT LIKE '%pg_extension%'"
                    ),
                    &[],
                )
                .ok()
                .map(|r| r.get(0))
        });
        let wal: Option<i64> = self
            .client
            .query_one(
                "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::text::pg_lsn)::bigint",
                &[&mark.wal],
            )
            .ok()
            .map(|r| r.get(0));
        let round = |x: f64| (x * 100.0).round() / 100.0;
        json!({
            "statements_per_request": statements.map(|s| round(s as f64 / n)),
            "wal_bytes_per_request": wal.map(|w| (w as f64 / n).round()),
            "postgres_cpu_us_per_request": ((postgres_cpu() - mark.postgres_cpu) / n * 1e6).round(),
        })
    }

    /// The share of `registrations` updates since `mark` that were HOT.
    pub(crate) fn hot_share(&mut self, mark: &Mark) -> Value {
        let (updates, hot) = self.updates();
        let (u, h) = (updates - mark.updates, hot - mark.hot);
        json!({
            "updates": u,
            "hot_updates": h,
            "hot_share": if u > 0 { Some(((h as f64 / u as f64) * 1000.0).round() / 1000.0) } else { None },
        })
    }
}

impl Sampler {
    /// Sample the nodes' backends (`application_name = 'tessera'`) every 10 ms.
    pub(crate) fn start(url: &str) -> Option<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let url = url.to_owned();
        let thread = std::thread::spawn(move || {
            let (mut samples, mut busy, mut locked) = (0u64, 0u64, 0u64);
            let Ok(mut client) = Client::connect(&url, NoTls) else {
                return (samples, busy, locked);
            };
            while !s.load(Ordering::Relaxed) {
                if let Ok(rows) = client.query(
                    "SELECT state, wait_event_type, wait_event FROM pg_stat_activity \
                     WHERE application_name = 'tessera'",
                    &[],
                ) {
                    for r in rows {
                        let state: Option<String> = r.get(0);
                        let kind: Option<String> = r.get(1);
                        let event: Option<String> = r.get(2);
                        samples += 1;
                        if state.as_deref() != Some("idle") {
                            busy += 1;
                        }
                        if kind.as_deref() == Some("Lock")
                            && event.as_deref().is_some_and(|e| SERIALISING.contains(&e))
                        {
                            locked += 1;
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            (samples, busy, locked)
        });
        Some(Self {
            stop,
            thread: Some(thread),
        })
    }

    /// Stop; the share of sampled backend time (not idle) spent waiting on a serialising lock.
    pub(crate) fn finish(mut self) -> Value {
        self.stop.store(true, Ordering::Relaxed);
        let (samples, busy, locked) = self
            .thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default();
        json!({
            "backend_samples": samples,
            "busy_samples": busy,
            "serialising_lock_samples": locked,
            "serialising_lock_share": if busy > 0 {
                Some(((locked as f64 / busy as f64) * 10000.0).round() / 10000.0)
            } else {
                None
            },
        })
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Run `f` on a thread of its own: the driver blocks on a runtime of its own, which it cannot do
/// on a thread that drives the generator's.
pub(crate) fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| s.spawn(f).join().expect("probe thread"))
}

/// CPU seconds of every `postgres` process on this machine (the run's database is the only
/// one).
fn postgres_cpu() -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    dir.filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter(|e| {
            std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == "postgres")
        })
        .map(|e| tessera_benches::cpu_secs(&e.path().to_string_lossy()))
        .sum()
}
