//! Answering requests: one [`Reply`] per request stream, and the [`Outbox`] through which
//! answers that complete on the store's writer (refreshes) are written in batches.
//!
//! A refresh is answered once its group commit is durable. The writer completes a whole group
//! at once; if each answer woke its own task, each task's write would wake its connection's
//! driver straight away and every answer would leave in a UDP datagram (and a system call) of
//! its own. Instead the writer drops the completed answers into the outbox, one task writes them
//! all in one go, and each connection's driver then runs once and packs the answers that are
//! ready for it into as few packets as fit.

use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use tessera_engine::RegistrationId;
use tokio::sync::Notify;

use super::registry::ConnState;
use super::{Handled, Shared};
use tessera_proto::wire::{self, code, ErrorBody};

/// The answering half of one request stream, with the bookkeeping that ends with it.
pub(crate) struct Reply {
    send: quinn::SendStream,
    started: Instant,
    in_flight: InFlight,
}

/// Counts a request as in flight (for draining at shutdown, and so a revocation closes the
/// connection only after its answers) until dropped — also when an answer never comes because
/// the store's writer stopped.
struct InFlight {
    shared: Arc<Shared>,
    state: Arc<ConnState>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.state.request_done();
        self.shared.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Reply {
    pub(crate) fn new(send: quinn::SendStream, shared: Arc<Shared>, state: Arc<ConnState>) -> Self {
        shared.in_flight.fetch_add(1, Ordering::Relaxed);
        state.request_started();
        Self {
            send,
            started: Instant::now(),
            in_flight: InFlight { shared, state },
        }
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.in_flight.shared
    }

    /// The peer's IP address.
    pub(crate) fn remote_ip(&self) -> std::net::IpAddr {
        self.in_flight.state.conn.remote_address().ip()
    }

    /// The stream, for handlers that send several frames (PT batches).
    pub(crate) fn stream(&mut self) -> &mut quinn::SendStream {
        &mut self.send
    }

    /// Write the answer and finish the stream. Never waits: the answer is queued on the stream
    /// at once (answers are small and the stream's flow-control window is far larger), and only
    /// if QUIC cannot take it all does a task finish the job.
    pub(crate) fn finish(mut self, result: Result<Handled, ErrorBody>) {
        let (frames, attach, outcome) = match result {
            Ok(h) => (h.frames, h.attach, "ok"),
            Err(e) => {
                let outcome = if e.code == code::INTERNAL {
                    "internal"
                } else {
                    "error"
                };
                // The code only: messages are free of secrets, but the code is all a log needs.
                tracing::debug!(code = e.code, "answered with an error");
                (wire::error_frame(&e), None, outcome)
            }
        };
        // Answers carry RTs and operation secrets: wiped once written.
        let frames = zeroize::Zeroizing::new(frames);
        metrics::counter!("tessera_requests_total", "outcome" => outcome).increment(1);
        metrics::histogram!("tessera_request_seconds").record(self.started.elapsed().as_secs_f64());
        let written = write_now(&mut self.send, &frames);
        if written == frames.len() && !self.in_flight.state.close_pending() {
            let _ = self.send.finish();
            self.attach(attach);
            return;
        }
        tokio::spawn(async move {
            let _ = self.send.write_all(&frames[written..]).await;
            let _ = self.send.finish();
            if self.in_flight.state.close_pending() {
                // A revocation is about to close this connection: let the peer receive the
                // whole answer first (bounded), so closing does not cut it off.
                let _ = tokio::time::timeout(Duration::from_secs(2), self.send.stopped()).await;
            }
            self.attach(attach);
        });
    }

    /// Remember the registration this connection used, then end the request.
    fn attach(self, reg: Option<RegistrationId>) {
        if let Some(reg) = reg {
            let InFlight { shared, state } = &self.in_flight;
            shared
                .connections
                .attach(reg, state, |r| shared.engine.is_registration_live(r));
        }
    }
}

/// Write as much of `buf` as the stream takes without waiting; returns how much it took.
fn write_now(send: &mut quinn::SendStream, mut buf: &[u8]) -> usize {
    let total = buf.len();
    let mut cx = Context::from_waker(Waker::noop());
    while !buf.is_empty() {
        match Pin::new(&mut *send).poll_write(&mut cx, buf) {
            Poll::Ready(Ok(n)) if n > 0 => buf = &buf[n..],
            // Stopped or closed: nothing more will be taken; the caller's task sees the error.
            Poll::Ready(_) | Poll::Pending => break,
        }
    }
    total - buf.len()
}

/// A refresh whose result is known, waiting for the outbox to answer it.
pub(crate) struct Deferred {
    pub(crate) reply: Reply,
    pub(crate) refreshed: Result<tessera_engine::Refreshed, tessera_engine::Error>,
}

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

    /// Write queued answers as they arrive; runs for the server's lifetime.
    pub(crate) async fn run(self: Arc<Self>) {
        let mut batch = Vec::new();
        loop {
            self.ready.notified().await;
            std::mem::swap(
                &mut batch,
                &mut *self.queue.lock().unwrap_or_else(PoisonError::into_inner),
            );
            for d in batch.drain(..) {
                let result = super::device::refresh_answer(d.reply.shared(), d.refreshed);
                d.reply.finish(result);
            }
        }
    }
}
