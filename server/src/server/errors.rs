//! How engine errors go on the wire: the error code and body for each engine error.

use tessera_engine::Error;
use tessera_proto::wire::{code, ErrorBody};

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
        Error::Unavailable(_) => (code::UNAVAILABLE, None, None),
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
