//! What the SQLite and PostgreSQL stores' writers share: the queue jobs are submitted to, how a
//! writer takes a batch from it, the commit counters, and stopping the threads.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Mutex;
use std::thread::JoinHandle;

use super::{CommitStats, WriteJob};
use crate::model::RegistrationId;

/// A job waiting for a writer, whether it runs inside a savepoint of its own, and the
/// registration it reads first if it is a refresh.
pub(super) struct Queued {
    pub(super) job: WriteJob,
    pub(super) savepoint: bool,
    pub(super) reads: Option<RegistrationId>,
}

/// Where jobs are submitted; closed when the store is dropped (the writers then finish what
/// is queued and stop).
pub(super) struct JobQueue(Mutex<Option<Sender<Queued>>>);

impl JobQueue {
    pub(super) fn new(tx: Sender<Queued>) -> Self {
        Self(Mutex::new(Some(tx)))
    }

    /// Queue a job; once the queue is closed the job is dropped without running.
    pub(super) fn send(&self, job: WriteJob, savepoint: bool, reads: Option<RegistrationId>) {
        if let Ok(guard) = self.0.lock() {
            if let Some(tx) = guard.as_ref() {
                let queued = Queued {
                    job,
                    savepoint,
                    reads,
                };
                if tx.send(queued).is_ok() {
                    metrics::gauge!("tessera_store_queue_depth").increment(1.0);
                }
            }
        }
    }

    pub(super) fn close(&self) {
        if let Ok(mut tx) = self.0.lock() {
            tx.take();
        }
    }
}

/// Wait for a job, then take it and whatever else is queued, up to `max` in `batch`. False once
/// the queue is closed and empty.
pub(super) fn take_batch(rx: &Receiver<Queued>, max: usize, batch: &mut Vec<Queued>) -> bool {
    let Ok(first) = rx.recv() else {
        return false;
    };
    batch.push(first);
    while batch.len() < max {
        match rx.try_recv() {
            Ok(j) => batch.push(j),
            Err(_) => break,
        }
    }
    metrics::gauge!("tessera_store_queue_depth").decrement(batch.len() as f64);
    true
}

/// The writers' counters.
#[derive(Default)]
pub(super) struct Stats {
    batches: AtomicU64,
    jobs: AtomicU64,
    failed: AtomicU64,
}

impl Stats {
    /// A batch of `jobs` committed (`ok`) or failed, `took` from taking it to its commit's
    /// end; also the metrics `tessera_store_batch_jobs` and `tessera_store_commit_seconds`
    /// (histograms) and `tessera_store_commits_total{result}`.
    pub(super) fn record(&self, jobs: u64, ok: bool, took: std::time::Duration) {
        self.jobs.fetch_add(jobs, Ordering::Relaxed);
        let counter = if ok { &self.batches } else { &self.failed };
        counter.fetch_add(1, Ordering::Relaxed);
        metrics::histogram!("tessera_store_batch_jobs").record(jobs as f64);
        metrics::histogram!("tessera_store_commit_seconds").record(took.as_secs_f64());
        metrics::counter!("tessera_store_commits_total", "result" => if ok { "ok" } else { "failed" })
            .increment(1);
    }

    pub(super) fn snapshot(&self) -> CommitStats {
        CommitStats {
            batches: self.batches.load(Ordering::Relaxed),
            jobs: self.jobs.load(Ordering::Relaxed),
            failed_commits: self.failed.load(Ordering::Relaxed),
        }
    }
}

/// Wait for a store thread to end, unless this is that thread: the last handle to a store may
/// be released by a callback running on one of its own threads, which then ends by itself.
pub(super) fn join(t: JoinHandle<()>) {
    if t.thread().id() != std::thread::current().id() {
        let _ = t.join();
    }
}
