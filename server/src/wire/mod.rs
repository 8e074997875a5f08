//! The wire protocol: frames, message bodies, error codes. Pure (no I/O), so it can be fuzzed
//! and reused by every client.

pub mod frame;
pub mod messages;

pub use frame::{decode, decode_all, encode, Frame, FrameError};
pub use messages::{code, kind, ErrorBody};

use tessera_engine::Error;

/// ALPN of the device endpoint.
pub const DEVICE_ALPN: &[u8] = b"tessera/1";
/// ALPN of the admin endpoint.
pub const ADMIN_ALPN: &[u8] = b"tessera-admin/1";

/// The error body for an engine error. Messages come from the engine's `Display`, which never
/// includes secrets.
pub fn error_body(e: &Error, server_time_ms: u64) -> ErrorBody {
    let (c, retry, remaining) = match e {
        Error::TokenFormat(_) => (code::TOKEN_FORMAT, None, None),
        Error::Unauthenticated => (code::UNAUTHENTICATED, None, None),
        Error::Expired | Error::PtExpired => (code::EXPIRED, None, None),
        Error::Revoked => (code::REVOKED, None, None),
        Error::Superseded => (code::SUPERSEDED, None, None),
        Error::RotationReuse => (code::ROTATION_REUSE, None, None),
        Error::DeviceBlocked => (code::DEVICE_BLOCKED, None, None),
        Error::DeviceIdInUse => (code::DEVICE_ID_IN_USE, None, None),
        Error::InvalidInput(_) => (code::INVALID_INPUT, None, None),
        Error::NotFound(_) => (code::NOT_FOUND, None, None),
        Error::OperationClosed(_) => (code::OPERATION_CLOSED, None, None),
        Error::WrongVerificationCode { remaining } => (code::WRONG_CODE, None, Some(*remaining)),
        Error::VerificationAttemptsExhausted => (code::CODE_ATTEMPTS_EXHAUSTED, None, None),
        Error::VerificationCodeRequired => (code::CODE_REQUIRED, None, None),
        Error::RateLimited { retry_after } => (
            code::RATE_LIMITED,
            Some(retry_after.as_millis() as u64),
            None,
        ),
        Error::TooManyPendingOperations => (code::TOO_MANY_PENDING, None, None),
        Error::RegistrationCapReached => (code::REGISTRATION_CAP, None, None),
        Error::GenerationExhausted => (code::GENERATION_EXHAUSTED, None, None),
        _ => (code::INTERNAL, None, None),
    };
    ErrorBody {
        code: c,
        message: if c == code::INTERNAL {
            "internal error; nothing was changed".into()
        } else {
            e.to_string()
        },
        retry_after_ms: retry,
        remaining_attempts: remaining,
        server_time_ms,
    }
}

/// An error response frame.
pub fn error_frame(body: &ErrorBody) -> Vec<u8> {
    encode(kind::ERROR, &serde_json::to_vec(body).unwrap_or_default())
}

/// A success response frame.
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
