//! The outbox: refresh answers, which complete on the store's writer, written in batches.
//!
//! A refresh is answered once its group commit is durable. The writer completes a whole group
//! at once; if each answer woke its own task, each task's write would wake its connection's
//! driver straight away and every answer would leave in a UDP datagram (and a system call) of
//! its own. Instead the writer drops the completed answers into the outbox, one task writes them
//! all in one go, and each connection's driver then runs once and packs the answers that are
//! ready for it into as few packets as fit.

use std::sync::{Arc, Mutex, PoisonError};

use tessera_proto::wire::ErrorBody;
use tokio::sync::Notify;

use super::reply::{Handled, Reply};

/// A refresh whose result is known, waiting for the outbox to answer it.
pub(crate) struct Deferred {
    pub(crate) reply: Reply,
    pub(crate) refreshed: Result<tessera_engine::Refreshed, tessera_engine::Error>,
    /// Server time when the result was known, Unix milliseconds (the answer carries it).
    pub(crate) at_ms: u64,
}

/// Builds a refresh's answer from its result and `at_ms`.
pub(crate) type Answer =
    fn(Result<tessera_engine::Refreshed, tessera_engine::Error>, u64) -> Result<Handled, ErrorBody>;

/// Answers completed off the async threads, written by one task in batches.
#[derive(Default)]
pub(crate) struct Outbox {
    queue: Mutex<Vec<Deferred>>,
    ready: Notify,
}

impl Outbox {
    /// Queue an answer (from any thread). Wakes the writing task when the queue was empty.
    pub(crate) fn push(&self, d: Deferred) {
        let was_empty = {
            let mut q = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
            q.push(d);
            q.len() == 1
        };
        if was_empty {
            self.ready.notify_one();
        }
    }

    /// Write queued answers as they arrive, each built by `answer`; runs for the server's
    /// lifetime.
    pub(crate) async fn run(self: Arc<Self>, answer: Answer) {
        let mut batch = Vec::new();
        loop {
            self.ready.notified().await;
            std::mem::swap(
                &mut batch,
                &mut *self.queue.lock().unwrap_or_else(PoisonError::into_inner),
            );
            for d in batch.drain(..) {
                let result = answer(d.refreshed, d.at_ms);
                d.reply.finish(result);
            }
        }
    }
}
