//! The QUIC side: the two endpoints (devices, operators), accepting connections (capacity,
//! address validation, per-source limits), reading each request stream within its deadline and
//! size cap, and dispatching the request to the device or admin handlers.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use quinn::{Endpoint, IdleTimeout, TransportConfig, VarInt};
use tessera_proto::wire::{self, code, ErrorBody};

use super::config::ServerConfig;
use super::error::ServerError;
use super::registry::{self, CLOSE_PROTOCOL};
use super::reply::{err, Reply};
use super::shared::{Role, Shared};
use super::{admin, device, tickets, tls};

fn transport(config: &ServerConfig, role: Role) -> TransportConfig {
    let mut t = TransportConfig::default();
    // An admin connection starts with a few streams; its first request whose token verifies
    // raises them (see `registry::ConnState::authenticated`).
    let streams = match role {
        Role::Device => config.max_streams_per_connection,
        Role::Admin => registry::PRE_AUTH_STREAMS,
    };
    t.max_concurrent_bidi_streams(VarInt::from_u32(streams))
        .max_concurrent_uni_streams(VarInt::from_u32(0))
        .stream_receive_window(VarInt::from_u32(match role {
            Role::Device => 64 * 1024,
            Role::Admin => 2 * 1024 * 1024,
        }))
        .receive_window(VarInt::from_u32(match role {
            Role::Device => 256 * 1024,
            Role::Admin => 8 * 1024 * 1024,
        }))
        .send_window(8 * 1024 * 1024)
        .max_idle_timeout(IdleTimeout::try_from(Duration::from_millis(config.idle_timeout_ms)).ok())
        .mtu_discovery_config(None);
    t
}

fn bind(addr: SocketAddr, buffer: usize) -> Result<std::net::UdpSocket, ServerError> {
    let domain = if addr.is_ipv4() {
        socket2::Domain::IPV4
    } else {
        socket2::Domain::IPV6
    };
    let s = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))
        .map_err(|e| ServerError::Io(format!("socket: {e}")))?;
    // The kernel may cap these (net.core.rmem_max); what it grants is logged.
    let _ = s.set_recv_buffer_size(buffer);
    let _ = s.set_send_buffer_size(buffer);
    s.bind(&addr.into())
        .map_err(|e| ServerError::Io(format!("bind {addr}: {e}")))?;
    tracing::debug!(%addr, recv_buffer = s.recv_buffer_size().unwrap_or(0), "bound UDP socket");
    Ok(s.into())
}

pub(crate) fn endpoint(
    config: &ServerConfig,
    cert: &Arc<tls::ServerCert>,
    role: Role,
    tickets: Arc<tickets::RootTicketer>,
) -> Result<Endpoint, ServerError> {
    let addr = match role {
        Role::Device => config.device_addr,
        Role::Admin => config.admin_addr,
    };
    let crypto = tls::server_config(cert.clone(), role.alpn(), Some(tickets))?;
    let quic = quinn::crypto::rustls::QuicServerConfig::try_from(crypto)
        .map_err(|e| ServerError::Io(format!("quic tls config: {e}")))?;
    let mut sc = quinn::ServerConfig::with_crypto(Arc::new(quic));
    sc.transport_config(Arc::new(transport(config, role)));
    sc.migration(false);
    sc.max_incoming(config.max_connections.min(65_536));
    let socket = bind(addr, config.socket_buffer_bytes)?;
    Endpoint::new(
        quinn::EndpointConfig::default(),
        Some(sc),
        socket,
        Arc::new(quinn::TokioRuntime),
    )
    .map_err(|e| ServerError::Io(format!("endpoint {addr}: {e}")))
}

pub(crate) async fn accept_loop(ep: Endpoint, shared: Arc<Shared>, role: Role) {
    let admin = role == Role::Admin;
    let per_source = if admin {
        shared.config.admin_max_connections_per_source
    } else {
        shared.config.max_connections_per_source
    };
    while let Some(incoming) = ep.accept().await {
        if shared.shutting_down.load(Ordering::Relaxed) {
            incoming.refuse();
            continue;
        }
        let ip = incoming.remote_address().ip();
        let endpoint = if admin { "admin" } else { "device" };
        if role == Role::Device
            && shared.open_connections.load(Ordering::Relaxed) >= shared.config.max_connections
        {
            metrics::counter!("tessera_connections_refused_total", "reason" => "capacity", "endpoint" => endpoint)
                .increment(1);
            incoming.refuse();
            continue;
        }
        // Under load (many handshakes at once, on either endpoint), a client proves its address
        // first: a spoofed source cannot make the server spend a handshake.
        if shared.handshakes.load(Ordering::Relaxed) >= shared.config.retry_above_handshakes
            && !incoming.remote_address_validated()
            && incoming.may_retry()
        {
            metrics::counter!("tessera_retry_sent_total", "endpoint" => endpoint).increment(1);
            shared.retries_sent.fetch_add(1, Ordering::Relaxed);
            let _ = incoming.retry();
            continue;
        }
        if !shared.connections.admit_source(ip, per_source, admin) {
            metrics::counter!("tessera_connections_refused_total", "reason" => "per_source", "endpoint" => endpoint)
                .increment(1);
            incoming.refuse();
            continue;
        }
        match incoming.accept() {
            Ok(connecting) => {
                tokio::spawn(connection(connecting, shared.clone(), role, ip));
            }
            Err(e) => {
                shared.connections.release_source(ip, admin);
                tracing::debug!(error = %e, "incoming connection failed");
            }
        }
    }
}

async fn connection(
    connecting: quinn::Connecting,
    shared: Arc<Shared>,
    role: Role,
    ip: std::net::IpAddr,
) {
    shared.handshakes.fetch_add(1, Ordering::Relaxed);
    let conn = tokio::time::timeout(Duration::from_secs(10), connecting).await;
    shared.handshakes.fetch_sub(1, Ordering::Relaxed);
    let conn = match conn {
        Ok(Ok(c)) => c,
        _ => {
            shared.connections.release_source(ip, role == Role::Admin);
            return;
        }
    };
    let expected = if role == Role::Device {
        wire::DEVICE_ALPN
    } else {
        wire::ADMIN_ALPN
    };
    let alpn_ok = conn
        .handshake_data()
        .and_then(|h| h.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|h| h.protocol)
        .is_some_and(|p| p == expected);
    shared.open_connections.fetch_add(1, Ordering::Relaxed);
    let endpoint = if role == Role::Device {
        "device"
    } else {
        "admin"
    };
    metrics::gauge!("tessera_open_connections", "endpoint" => endpoint).increment(1.0);
    let mut attached: Vec<tessera_engine::RegistrationId> = Vec::new();
    if !alpn_ok {
        conn.close(VarInt::from_u32(CLOSE_PROTOCOL), b"wrong ALPN");
    } else {
        let state = registry::ConnState::new(conn.clone());
        while let Ok((send, mut recv)) = conn.accept_bi().await {
            let reply = Reply::new(
                send,
                shared.clone(),
                state.clone(),
                match role {
                    Role::Device => "device",
                    Role::Admin => "admin",
                },
            );
            // A request usually arrives whole in one packet before its stream is accepted.
            // Then a refresh is handled right here (it only checks the RT and queues the
            // rotation); anything else, or a request still arriving, gets a task of its own.
            // The request may carry a PT, an RT or a secret: wiped when dropped.
            let mut buf = zeroize::Zeroizing::new(Vec::new());
            let cap = request_cap(role, &state);
            match read_arrived(&mut recv, &mut buf, cap) {
                Ok(true) => {
                    if let Some(reply) = dispatch_now(&shared, &buf, reply, role) {
                        tokio::spawn(dispatch(shared.clone(), buf, reply, role));
                    }
                }
                Ok(false) => {
                    tokio::spawn(stream(shared.clone(), recv, buf, reply, role, cap));
                }
                Err(ReadError::TooLong) => reply.finish(Err(too_large())),
                Err(ReadError::Gone) => {}
            }
        }
        attached = state.attached();
    }
    shared.connections.detach_all(&conn, &attached);
    shared.open_connections.fetch_sub(1, Ordering::Relaxed);
    metrics::gauge!("tessera_open_connections", "endpoint" => endpoint).decrement(1.0);
    shared.connections.release_source(ip, role == Role::Admin);
}

fn max_request(role: Role) -> usize {
    wire::frame::HEADER_LEN
        + match role {
            Role::Device => wire::frame::DEVICE_REQUEST_MAX,
            Role::Admin => wire::frame::ADMIN_REQUEST_MAX,
        }
}

/// The largest request a stream of this connection may carry now: an admin connection whose
/// token has not verified yet gets a small one, so that a client without a token cannot make
/// the server hold much.
fn request_cap(role: Role, state: &registry::ConnState) -> usize {
    if role == Role::Admin && !state.is_authenticated() {
        wire::frame::HEADER_LEN + registry::PRE_AUTH_REQUEST_MAX
    } else {
        max_request(role)
    }
}

fn too_large() -> ErrorBody {
    err(code::TOO_LARGE, "request too large")
}

enum ReadError {
    /// More than the request size cap.
    TooLong,
    /// The peer reset the stream or the connection ended: nobody to answer.
    Gone,
}

fn add_chunk(buf: &mut Vec<u8>, chunk: &[u8], limit: usize) -> Result<(), ReadError> {
    if buf.len() + chunk.len() > limit {
        return Err(ReadError::TooLong);
    }
    buf.extend_from_slice(chunk);
    Ok(())
}

/// Take what has already arrived on `recv` without waiting; `Ok(true)` once the stream has
/// ended (the whole request is in `buf`).
fn read_arrived(
    recv: &mut quinn::RecvStream,
    buf: &mut Vec<u8>,
    limit: usize,
) -> Result<bool, ReadError> {
    use std::future::Future;
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    loop {
        // `read_chunk` takes data only when it returns it, so dropping a pending one loses
        // nothing; the task that goes on reading registers its own waker.
        let read = std::pin::pin!(recv.read_chunk(usize::MAX, true));
        match read.poll(&mut cx) {
            std::task::Poll::Ready(Ok(Some(chunk))) => add_chunk(buf, &chunk.bytes, limit)?,
            std::task::Poll::Ready(Ok(None)) => return Ok(true),
            std::task::Poll::Ready(Err(_)) => return Err(ReadError::Gone),
            std::task::Poll::Pending => return Ok(false),
        }
    }
}

/// Read the rest of a request into `buf`.
async fn read_rest(
    recv: &mut quinn::RecvStream,
    buf: &mut Vec<u8>,
    limit: usize,
) -> Result<(), ReadError> {
    loop {
        match recv.read_chunk(usize::MAX, true).await {
            Ok(Some(chunk)) => add_chunk(buf, &chunk.bytes, limit)?,
            Ok(None) => return Ok(()),
            Err(_) => return Err(ReadError::Gone),
        }
    }
}

/// A request still arriving: read the rest within the deadline, then dispatch it.
async fn stream(
    shared: Arc<Shared>,
    mut recv: quinn::RecvStream,
    mut buf: zeroize::Zeroizing<Vec<u8>>,
    reply: Reply,
    role: Role,
    cap: usize,
) {
    let deadline = Duration::from_millis(shared.config.request_deadline_ms);
    match tokio::time::timeout(deadline, read_rest(&mut recv, &mut buf, cap)).await {
        Err(_) => reply.finish(Err(err(
            code::TIMEOUT,
            "request not received within the deadline",
        ))),
        Ok(Err(ReadError::TooLong)) => reply.finish(Err(too_large())),
        Ok(Err(ReadError::Gone)) => {}
        Ok(Ok(())) => dispatch(shared, buf, reply, role).await,
    }
}

fn decode(buf: &[u8], role: Role) -> Result<wire::Frame<'_>, ErrorBody> {
    let max_body = max_request(role) - wire::frame::HEADER_LEN;
    wire::decode(buf, max_body).map_err(|e| match e {
        wire::FrameError::UnsupportedVersion => {
            err(code::UNSUPPORTED_VERSION, "unsupported protocol version")
        }
        wire::FrameError::TooLarge => too_large(),
        e => err(code::MALFORMED, &e.to_string()),
    })
}

/// Answer a whole request that needs no waiting (a malformed frame, a refresh) at once; hands
/// the reply back for any other request.
fn dispatch_now(shared: &Shared, buf: &[u8], mut reply: Reply, role: Role) -> Option<Reply> {
    match decode(buf, role) {
        Err(e) => {
            reply.finish(Err(e));
            None
        }
        Ok(frame) if role == Role::Device && frame.kind == wire::kind::REFRESH => {
            reply.set_kind(frame.kind);
            tracing::debug!(endpoint = ?role, kind = frame.kind, "request");
            device::refresh_frame(shared, frame, reply);
            None
        }
        Ok(_) => Some(reply),
    }
}

/// Handle a whole request that may wait (for the store, a long poll, an admin stream).
async fn dispatch(
    shared: Arc<Shared>,
    buf: zeroize::Zeroizing<Vec<u8>>,
    mut reply: Reply,
    role: Role,
) {
    let frame = match decode(&buf, role) {
        Ok(f) => f,
        Err(e) => return reply.finish(Err(e)),
    };
    // The kind only: bodies carry tokens and secrets.
    tracing::debug!(endpoint = ?role, kind = frame.kind, "request");
    reply.set_kind(frame.kind);
    match role {
        Role::Device => device::handle(&shared, frame, reply).await,
        Role::Admin => {
            let source = reply.remote_ip();
            let conn = reply.conn_state().clone();
            let result = admin::handle(&shared, frame, source, &conn, reply.stream()).await;
            reply.finish(result);
        }
    }
}
