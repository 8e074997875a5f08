//! Frames: the unit of the wire protocol. Pure: no I/O. See docs/protocol.md.
//!
//! ```text
//! offset 0  u8   version (1)
//! offset 1  u8   kind: a request code (client to server) or a response code (server to client)
//! offset 2  u16  flags, must be 0
//! offset 4  u32  body length, big-endian, at most the endpoint's cap
//! offset 8  ...  body: one JSON object, UTF-8
//! ```

use alloc::vec::Vec;

/// The only protocol version.
pub const VERSION: u8 = 1;
/// Length of the frame header.
pub const HEADER_LEN: usize = 8;
/// Largest request body the device endpoint accepts.
pub const DEVICE_REQUEST_MAX: usize = 16 * 1024;
/// Largest request body the admin endpoint accepts.
pub const ADMIN_REQUEST_MAX: usize = 1024 * 1024;
/// Largest response body a client accepts in one frame.
pub const RESPONSE_MAX: usize = 4 * 1024 * 1024;

/// Why bytes are not a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Fewer bytes than the header says.
    #[error("truncated frame")]
    Truncated,
    /// Bytes after the frame.
    #[error("trailing bytes after frame")]
    Trailing,
    /// A version other than 1.
    #[error("unsupported protocol version")]
    UnsupportedVersion,
    /// Flags other than 0.
    #[error("unknown frame flags")]
    BadFlags,
    /// Body larger than the cap.
    #[error("frame too large")]
    TooLarge,
}

/// A decoded frame, borrowing its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// Request or response code.
    pub kind: u8,
    /// The JSON body.
    pub body: &'a [u8],
}

/// Encode a frame. The caller keeps bodies under the receiving side's cap.
pub fn encode(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.push(VERSION);
    out.push(kind);
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// Decode the header of the next frame in `buf`: `(kind, body length)`, checking the cap.
pub fn decode_header(buf: &[u8], max_body: usize) -> Result<(u8, usize), FrameError> {
    let h: &[u8; HEADER_LEN] = buf
        .get(..HEADER_LEN)
        .and_then(|h| h.try_into().ok())
        .ok_or(FrameError::Truncated)?;
    if h[0] != VERSION {
        return Err(FrameError::UnsupportedVersion);
    }
    if h[2] != 0 || h[3] != 0 {
        return Err(FrameError::BadFlags);
    }
    let len = u32::from_be_bytes([h[4], h[5], h[6], h[7]]) as usize;
    if len > max_body {
        return Err(FrameError::TooLarge);
    }
    Ok((h[1], len))
}

/// Decode exactly one frame occupying all of `buf`.
pub fn decode(buf: &[u8], max_body: usize) -> Result<Frame<'_>, FrameError> {
    let (kind, len) = decode_header(buf, max_body)?;
    let body = buf
        .get(HEADER_LEN..HEADER_LEN + len)
        .ok_or(FrameError::Truncated)?;
    if buf.len() > HEADER_LEN + len {
        return Err(FrameError::Trailing);
    }
    Ok(Frame { kind, body })
}

/// Split a stream of frames (a streamed response) into frames.
pub fn decode_all(mut buf: &[u8], max_body: usize) -> Result<Vec<Frame<'_>>, FrameError> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let (kind, len) = decode_header(buf, max_body)?;
        let body = buf
            .get(HEADER_LEN..HEADER_LEN + len)
            .ok_or(FrameError::Truncated)?;
        out.push(Frame { kind, body });
        buf = &buf[HEADER_LEN + len..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_truncation() {
        let f = encode(0x12, br#"{"rt":"x"}"#);
        assert_eq!(
            decode(&f, 100).unwrap(),
            Frame {
                kind: 0x12,
                body: br#"{"rt":"x"}"#
            }
        );
        for n in 0..f.len() {
            assert!(decode(&f[..n], 100).is_err());
        }
        let mut long = f.clone();
        long.push(0);
        assert_eq!(decode(&long, 100), Err(FrameError::Trailing));
        assert_eq!(decode(&f, 5), Err(FrameError::TooLarge));
        let mut v = f.clone();
        v[0] = 2;
        assert_eq!(decode(&v, 100), Err(FrameError::UnsupportedVersion));
        let mut fl = f.clone();
        fl[3] = 1;
        assert_eq!(decode(&fl, 100), Err(FrameError::BadFlags));
        let two = [encode(2, b"{}"), encode(0, b"{}")].concat();
        assert_eq!(decode_all(&two, 10).unwrap().len(), 2);
    }
}
