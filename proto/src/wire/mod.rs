//! The wire protocol: frames, message bodies, error codes. Pure (no I/O), so it can be fuzzed
//! and reused by every client and the server. docs/protocol.md specifies every frame.

use alloc::vec::Vec;

pub mod frame;
pub mod messages;

pub use frame::{decode, decode_all, encode, Frame, FrameError};
pub use messages::{code, kind, ErrorBody};

/// ALPN of the device endpoint.
pub const DEVICE_ALPN: &[u8] = b"tessera/1";
/// ALPN of the admin endpoint.
pub const ADMIN_ALPN: &[u8] = b"tessera-admin/1";

/// An error response frame.
pub fn error_frame(body: &ErrorBody) -> Vec<u8> {
    encode(kind::ERROR, &serde_json::to_vec(body).unwrap_or_default())
}

/// A success response frame.
#[cfg(feature = "std")]
pub fn ok_frame<T: serde::Serialize>(body: &T) -> Vec<u8> {
    // Serialise straight after a header placeholder: one buffer, no copy.
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(&[frame::VERSION, kind::OK, 0, 0, 0, 0, 0, 0]);
    if serde_json::to_writer(&mut out, body).is_err() {
        out.truncate(frame::HEADER_LEN);
    }
    let len = u32::try_from(out.len() - frame::HEADER_LEN).unwrap_or(u32::MAX);
    out[4..8].copy_from_slice(&len.to_be_bytes());
    out
}

/// A success response frame.
#[cfg(not(feature = "std"))]
pub fn ok_frame<T: serde::Serialize>(body: &T) -> Vec<u8> {
    encode(kind::OK, &serde_json::to_vec(body).unwrap_or_default())
}
