//! The clients' UDP socket: one datagram per receive.
//!
//! quinn sizes an endpoint's receive buffer as `max UDP payload × segments per receive × 32`
//! receives per batch. With Linux UDP GRO on, that is 1,472 × 64 × 32 bytes = 3 MB per endpoint:
//! right for a server taking in a stream of coalesced datagrams, far too much for a device that
//! exchanges a handful of packets per request (docs/reliability.md: peak heap while provisioning
//! fell from 3.1 MB to the figure there). So the clients turn GRO off on their socket and tell
//! quinn to expect (and send) one datagram at a time: a 47 KB receive buffer.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, Runtime, UdpPoller};

/// quinn's socket with receive and send batching limited to one datagram.
#[derive(Debug)]
struct OneDatagram(Arc<dyn AsyncUdpSocket>);

impl AsyncUdpSocket for OneDatagram {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        self.0.clone().create_io_poller()
    }

    fn try_send(&self, transmit: &Transmit<'_>) -> io::Result<()> {
        self.0.try_send(transmit)
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [io::IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        self.0.poll_recv(cx, bufs, meta)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }

    fn max_transmit_segments(&self) -> usize {
        1
    }

    fn max_receive_segments(&self) -> usize {
        1
    }

    fn may_fragment(&self) -> bool {
        self.0.may_fragment()
    }
}

/// Bind a client socket at `addr` on the current Tokio runtime.
pub(crate) fn bind(addr: SocketAddr) -> io::Result<(Arc<dyn AsyncUdpSocket>, Arc<dyn Runtime>)> {
    let runtime = quinn::default_runtime()
        .ok_or_else(|| io::Error::other("no async runtime (call from inside Tokio)"))?;
    let socket = std::net::UdpSocket::bind(addr)?;
    // quinn-udp switches GRO on when it wraps the socket; switch it off again through a second
    // handle to the same socket, so the kernel never hands us a coalesced datagram larger than
    // one receive buffer.
    #[cfg(target_os = "linux")]
    let same_socket = socket.try_clone()?;
    let wrapped = runtime.wrap_udp_socket(socket)?;
    #[cfg(target_os = "linux")]
    nix::sys::socket::setsockopt(
        &same_socket,
        nix::sys::socket::sockopt::UdpGroSegment,
        &false,
    )
    .map_err(io::Error::from)?;
    Ok((Arc::new(OneDatagram(wrapped)), runtime))
}
