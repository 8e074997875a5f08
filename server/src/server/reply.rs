//! Answering requests: one [`Reply`] per request stream, what a handler produces
//! ([`Handled`]) and the error answers ([`err`], [`engine_err`]). Answers that complete on the
//! store's writer go out through the outbox (`outbox.rs`).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use tessera_engine::RegistrationId;

use super::registry::ConnState;
use tessera_engine::Timestamp;
use tessera_proto::wire::{self, code, ErrorBody};

/// The answering half of one request stream, with the bookkeeping that ends with it.
pub(crate) struct Reply {
    send: quinn::SendStream,
    started: Instant,
    in_flight: InFlight,
    /// `device` or `admin` (a metric label).
    endpoint: &'static str,
    /// The request's kind, once its frame is read (a metric label).
    kind: u8,
}

/// Counts a request as in flight (for draining at shutdown, and so a revocation closes the
/// connection only after its answers) until dropped — also when an answer never comes because
/// the store's writer stopped.
struct InFlight {
    tracker: Arc<dyn Tracker>,
    state: Arc<ConnState>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.state.request_done();
        self.tracker.request_done();
    }
}

/// Who counts requests in flight and tracks which registrations a connection uses (the
/// server's shared state).
pub(crate) trait Tracker: Send + Sync {
    /// A request started.
    fn request_started(&self);
    /// A request ended (answered, or never to be).
    fn request_done(&self);
    /// The connection of `state` used `reg` (it is closed if `reg` is revoked).
    fn attach(&self, reg: RegistrationId, state: &Arc<ConnState>);
}

impl Reply {
    pub(crate) fn new(
        send: quinn::SendStream,
        tracker: Arc<dyn Tracker>,
        state: Arc<ConnState>,
        endpoint: &'static str,
    ) -> Self {
        tracker.request_started();
        state.request_started();
        Self {
            send,
            started: Instant::now(),
            in_flight: InFlight { tracker, state },
            endpoint,
            kind: 0,
        }
    }

    /// The request's kind, for its metrics (set once its frame is read).
    pub(crate) fn set_kind(&mut self, kind: u8) {
        self.kind = kind;
    }

    /// The peer's IP address.
    pub(crate) fn remote_ip(&self) -> std::net::IpAddr {
        self.in_flight.state.conn.remote_address().ip()
    }

    /// The connection the request came on.
    pub(crate) fn conn_state(&self) -> &Arc<ConnState> {
        &self.in_flight.state
    }

    /// The stream, for handlers that send several frames (PT batches).
    pub(crate) fn stream(&mut self) -> &mut quinn::SendStream {
        &mut self.send
    }

    /// Write the answer and finish the stream. Never waits: the answer is queued on the stream
    /// at once (answers are small and the stream's flow-control window is far larger), and only
    /// if QUIC cannot take it all does a task finish the job.
    pub(crate) fn finish(mut self, result: Result<Handled, ErrorBody>) {
        let (frames, attach, result) = match result {
            Ok(h) => (h.frames, h.attach, "OK"),
            Err(e) => {
                // The code only: messages are free of secrets, but the code is all a log needs.
                tracing::debug!(code = e.code, "answered with an error");
                (wire::error_frame(&e), None, code::name(e.code))
            }
        };
        // Answers carry RTs and operation secrets: wiped once written.
        let frames = zeroize::Zeroizing::new(frames);
        let kind = wire::kind::name(self.kind);
        metrics::counter!("tessera_requests_total", "endpoint" => self.endpoint, "kind" => kind,
                          "result" => result)
        .increment(1);
        metrics::histogram!("tessera_request_seconds", "endpoint" => self.endpoint, "kind" => kind,
                            "result" => result)
        .record(self.started.elapsed().as_secs_f64());
        if self.endpoint == "device" {
            super::summary::DEVICE.count(self.kind, result == "OK");
        }
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
            let InFlight { tracker, state } = &self.in_flight;
            tracker.attach(reg, state);
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

/// An error answer (server time from the system clock: error bodies are for logs and
/// retries, request handling uses the server's clock).
pub(crate) fn err(code: u16, message: &str) -> ErrorBody {
    ErrorBody {
        code,
        message: message.into(),
        retry_after_ms: None,
        remaining_attempts: None,
        server_time_ms: Timestamp::now_from_system_clock().unix_millis(),
    }
}

/// The answer for an engine error.
pub(crate) fn engine_err(e: &tessera_engine::Error) -> ErrorBody {
    e.to_wire(Timestamp::now_from_system_clock().unix_millis())
}

/// What a request handler produced.
pub(crate) struct Handled {
    /// Frames to send.
    pub(crate) frames: Vec<u8>,
    /// A registration this connection now uses (for closing on revocation).
    pub(crate) attach: Option<tessera_engine::RegistrationId>,
}

impl Handled {
    pub(crate) fn ok<T: serde::Serialize>(body: &T) -> Self {
        Self {
            frames: wire::ok_frame(body),
            attach: None,
        }
    }
}
