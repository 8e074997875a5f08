//! Result codes and their messages.

use std::ffi::c_char;

/// The result of every fallible function. Numbers are explicit and never reused.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum tessera_result {
    /// Success.
    TESSERA_OK = 0,
    /// A required pointer argument was NULL.
    TESSERA_NULL_PARAMETER = 1,
    /// A length was zero or larger than allowed.
    TESSERA_INVALID_LENGTH = 2,
    /// Text was not valid UTF-8 (or contained a NUL).
    TESSERA_INVALID_UTF8 = 3,
    /// The output buffer is too small. Nothing was copied into it; the function's size output
    /// (`*written`) holds the size needed, so the call can be retried with a buffer that large.
    /// Every other output is left as it was.
    TESSERA_BUFFER_TOO_SMALL = 4,
    /// A panic was caught at the boundary; the call had no effect.
    TESSERA_PANIC = 5,
    /// An argument was rejected (device id, attribute, address, …).
    TESSERA_INVALID_ARGUMENT = 6,
    /// The object has no such value yet (for example: not registered).
    TESSERA_NOT_AVAILABLE = 7,
    /// Not known yet: the answer is being fetched; ask again shortly.
    TESSERA_PENDING = 8,

    /// Token: wrong prefix.
    TESSERA_TOKEN_WRONG_PREFIX = 100,
    /// Token: wrong length.
    TESSERA_TOKEN_WRONG_LENGTH = 101,
    /// Token: characters outside the alphabet.
    TESSERA_TOKEN_BAD_ENCODING = 102,
    /// Token: checksum mismatch (mistyped, truncated or altered).
    TESSERA_TOKEN_BAD_CHECKSUM = 103,
    /// Token: unknown version.
    TESSERA_TOKEN_UNKNOWN_VERSION = 104,
    /// Token: malformed, as the server found it (its log message says which check failed).
    TESSERA_TOKEN_MALFORMED = 105,

    /// Server: credential not accepted.
    TESSERA_UNAUTHENTICATED = 210,
    /// Server: credential expired.
    TESSERA_EXPIRED = 211,
    /// Server: credential revoked.
    TESSERA_REVOKED = 212,
    /// Server: RT superseded by a newer generation.
    TESSERA_SUPERSEDED = 213,
    /// Server: RT reuse detected; the registration was revoked.
    TESSERA_ROTATION_REUSE = 214,
    /// Server: the device id is blocked.
    TESSERA_DEVICE_BLOCKED = 215,
    /// Server: rate limited; retry later.
    TESSERA_RATE_LIMITED = 230,
    /// Server: unavailable now (shutting down, overloaded, or behind the shared store); retry
    /// later, or on another node.
    TESSERA_UNAVAILABLE = 231,
    /// Server: another error (see the log callback).
    TESSERA_SERVER_ERROR = 299,

    /// Could not connect, or the connection broke.
    TESSERA_CONNECTION = 300,
    /// No answer in time.
    TESSERA_TIMEOUT = 301,
    /// The server's answer was not valid protocol, or the server did not understand the
    /// request (the two ends speak different versions).
    TESSERA_PROTOCOL = 302,
    /// The configuration is incomplete or invalid (CA, pin, PT, address).
    TESSERA_CONFIG = 303,
    /// The local store (a server's data directory) could not be read.
    TESSERA_STORE = 304,
    /// The server's certificate was not accepted: it does not carry the configured server name,
    /// or the CA or pin does not match. Retrying does not help.
    TESSERA_CERTIFICATE = 305,
    /// The technician rejected the provisioning operation.
    TESSERA_PROVISIONING_REJECTED = 310,
    /// The provisioning operation expired.
    TESSERA_PROVISIONING_EXPIRED = 311,
    /// The provisioning operation was cancelled.
    TESSERA_PROVISIONING_CANCELLED = 312,
}

/// The library's version (`MAJOR.MINOR.PATCH`, for example `0.1.0`): a static, NUL-terminated
/// string, never NULL, never to be freed. Firmware logs it at boot.
///
/// Thread safety: may be called from any thread.
#[no_mangle]
pub extern "C" fn tessera_version() -> *const c_char {
    VERSION.as_ptr()
}

const VERSION: &std::ffi::CStr = match std::ffi::CStr::from_bytes_with_nul(
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes(),
) {
    Ok(v) => v,
    Err(_) => c"unknown",
};

/// A static, NUL-terminated English message for a result code (never NULL; unknown codes give
/// "unknown result code"). The string must not be freed.
///
/// Thread safety: may be called from any thread.
#[no_mangle]
pub extern "C" fn tessera_result_message(code: u32) -> *const c_char {
    MESSAGES
        .iter()
        .find(|(r, _)| *r as u32 == code)
        .map_or(c"unknown result code", |(_, m)| *m)
        .as_ptr()
}

/// Every result code and its message.
const MESSAGES: &[(tessera_result, &std::ffi::CStr)] = &[
    (tessera_result::TESSERA_OK, c"success"),
    (
        tessera_result::TESSERA_NULL_PARAMETER,
        c"a required pointer argument was NULL",
    ),
    (
        tessera_result::TESSERA_INVALID_LENGTH,
        c"a length was zero or too large",
    ),
    (
        tessera_result::TESSERA_INVALID_UTF8,
        c"text was not valid UTF-8",
    ),
    (
        tessera_result::TESSERA_BUFFER_TOO_SMALL,
        c"the output buffer is too small",
    ),
    (
        tessera_result::TESSERA_PANIC,
        c"internal error (panic caught); the call had no effect",
    ),
    (
        tessera_result::TESSERA_INVALID_ARGUMENT,
        c"an argument was rejected",
    ),
    (tessera_result::TESSERA_NOT_AVAILABLE, c"no such value yet"),
    (
        tessera_result::TESSERA_PENDING,
        c"not known yet: being asked; try again shortly",
    ),
    (
        tessera_result::TESSERA_TOKEN_WRONG_PREFIX,
        c"token has the wrong prefix",
    ),
    (
        tessera_result::TESSERA_TOKEN_WRONG_LENGTH,
        c"token has the wrong length",
    ),
    (
        tessera_result::TESSERA_TOKEN_BAD_ENCODING,
        c"token contains invalid characters",
    ),
    (
        tessera_result::TESSERA_TOKEN_BAD_CHECKSUM,
        c"token checksum mismatch",
    ),
    (
        tessera_result::TESSERA_TOKEN_MALFORMED,
        c"the server found the token malformed",
    ),
    (
        tessera_result::TESSERA_TOKEN_UNKNOWN_VERSION,
        c"unknown token version",
    ),
    (
        tessera_result::TESSERA_UNAUTHENTICATED,
        c"credential not accepted",
    ),
    (tessera_result::TESSERA_EXPIRED, c"credential expired"),
    (tessera_result::TESSERA_REVOKED, c"credential revoked"),
    (
        tessera_result::TESSERA_SUPERSEDED,
        c"registration token superseded",
    ),
    (
        tessera_result::TESSERA_ROTATION_REUSE,
        c"registration token reuse detected; registration revoked",
    ),
    (tessera_result::TESSERA_DEVICE_BLOCKED, c"device is blocked"),
    (
        tessera_result::TESSERA_RATE_LIMITED,
        c"rate limited; retry later",
    ),
    (
        tessera_result::TESSERA_UNAVAILABLE,
        c"the server is unavailable now; retry later or on another node",
    ),
    (
        tessera_result::TESSERA_SERVER_ERROR,
        c"the server refused the request",
    ),
    (tessera_result::TESSERA_CONNECTION, c"connection failed"),
    (tessera_result::TESSERA_TIMEOUT, c"timed out"),
    (tessera_result::TESSERA_PROTOCOL, c"protocol error"),
    (
        tessera_result::TESSERA_CONFIG,
        c"invalid or incomplete configuration",
    ),
    (
        tessera_result::TESSERA_STORE,
        c"the local store could not be read",
    ),
    (
        tessera_result::TESSERA_CERTIFICATE,
        c"the server's certificate was not accepted (server name, CA or pin)",
    ),
    (
        tessera_result::TESSERA_PROVISIONING_REJECTED,
        c"provisioning rejected by a technician",
    ),
    (
        tessera_result::TESSERA_PROVISIONING_EXPIRED,
        c"provisioning operation expired",
    ),
    (
        tessera_result::TESSERA_PROVISIONING_CANCELLED,
        c"provisioning operation cancelled",
    ),
];

impl From<tessera_proto::token::RtRefusal> for tessera_result {
    fn from(r: tessera_proto::token::RtRefusal) -> Self {
        use tessera_proto::token::RtRefusal as R;
        match r {
            R::Unauthenticated => tessera_result::TESSERA_UNAUTHENTICATED,
            R::Expired => tessera_result::TESSERA_EXPIRED,
            R::Revoked => tessera_result::TESSERA_REVOKED,
            R::Superseded => tessera_result::TESSERA_SUPERSEDED,
        }
    }
}

impl From<tessera_proto::TokenFormatError> for tessera_result {
    fn from(e: tessera_proto::TokenFormatError) -> Self {
        use tessera_proto::TokenFormatError as T;
        match e {
            T::WrongPrefix => Self::TESSERA_TOKEN_WRONG_PREFIX,
            T::WrongLength => Self::TESSERA_TOKEN_WRONG_LENGTH,
            T::BadEncoding => Self::TESSERA_TOKEN_BAD_ENCODING,
            T::BadChecksum => Self::TESSERA_TOKEN_BAD_CHECKSUM,
            _ => Self::TESSERA_TOKEN_UNKNOWN_VERSION,
        }
    }
}

impl tessera_result {
    /// The result code for a wire protocol error code: the one table from the protocol's codes
    /// (docs/protocol.md) to the C library's. Codes a device or a broker can act on get a code
    /// of their own; the rest are `TESSERA_SERVER_ERROR` (the log callback has the message).
    pub(crate) fn from_wire_code(c: u16) -> Self {
        use tessera_proto::wire::code;
        match c {
            code::MALFORMED
            | code::UNSUPPORTED_VERSION
            | code::UNKNOWN_REQUEST
            | code::TOO_LARGE => Self::TESSERA_PROTOCOL,
            code::INVALID_INPUT => Self::TESSERA_INVALID_ARGUMENT,
            code::TOKEN_FORMAT => Self::TESSERA_TOKEN_MALFORMED,
            code::UNAUTHENTICATED => Self::TESSERA_UNAUTHENTICATED,
            code::EXPIRED => Self::TESSERA_EXPIRED,
            code::REVOKED => Self::TESSERA_REVOKED,
            code::SUPERSEDED => Self::TESSERA_SUPERSEDED,
            code::ROTATION_REUSE => Self::TESSERA_ROTATION_REUSE,
            code::DEVICE_BLOCKED => Self::TESSERA_DEVICE_BLOCKED,
            code::RATE_LIMITED | code::TOO_MANY_PENDING => Self::TESSERA_RATE_LIMITED,
            code::TIMEOUT => Self::TESSERA_TIMEOUT,
            code::UNAVAILABLE => Self::TESSERA_UNAVAILABLE,
            _ => Self::TESSERA_SERVER_ERROR,
        }
    }
}

/// An engine error (the local validator's): its wire code through the one table, except what
/// only happens locally: a malformed token says which check failed, and the store and the key
/// file are this process's own.
#[cfg(feature = "platform")]
impl From<&tessera_engine::Error> for tessera_result {
    fn from(e: &tessera_engine::Error) -> Self {
        use tessera_engine::Error as E;
        match e {
            E::TokenFormat(f) => (*f).into(),
            E::Store(_) => Self::TESSERA_STORE,
            E::Keys(_) => Self::TESSERA_CONFIG,
            e => Self::from_wire_code(e.wire_code()),
        }
    }
}

impl From<&tessera_client::ClientError> for tessera_result {
    fn from(e: &tessera_client::ClientError) -> Self {
        use tessera_client::ClientError as C;
        match e {
            C::Config(_) => Self::TESSERA_CONFIG,
            C::Connection(_) => Self::TESSERA_CONNECTION,
            C::Certificate(_) => Self::TESSERA_CERTIFICATE,
            C::Timeout => Self::TESSERA_TIMEOUT,
            C::Protocol(_) => Self::TESSERA_PROTOCOL,
            C::Server(b) => Self::from_wire_code(b.code),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;
    use tessera_proto::wire::code;

    fn message(r: tessera_result) -> &'static str {
        // SAFETY: `tessera_result_message` returns a static NUL-terminated string.
        unsafe { CStr::from_ptr(tessera_result_message(r as u32)) }
            .to_str()
            .unwrap()
    }

    /// Every wire code, through the C table: each gets a code with a message of its own, the
    /// credential and rate codes keep their meaning, and nothing maps to a code that blames
    /// the caller's arguments or the token's checksum when the server said otherwise.
    #[test]
    fn every_wire_code_maps_to_a_c_code_with_a_message() {
        for &(c, name) in code::ALL {
            let r = tessera_result::from_wire_code(c);
            assert_ne!(r, tessera_result::TESSERA_OK, "{name}");
            assert_ne!(message(r), "unknown result code", "{name}");
            let want = match c {
                code::UNAUTHENTICATED => Some(tessera_result::TESSERA_UNAUTHENTICATED),
                code::EXPIRED => Some(tessera_result::TESSERA_EXPIRED),
                code::REVOKED => Some(tessera_result::TESSERA_REVOKED),
                code::SUPERSEDED => Some(tessera_result::TESSERA_SUPERSEDED),
                code::ROTATION_REUSE => Some(tessera_result::TESSERA_ROTATION_REUSE),
                code::DEVICE_BLOCKED => Some(tessera_result::TESSERA_DEVICE_BLOCKED),
                code::RATE_LIMITED => Some(tessera_result::TESSERA_RATE_LIMITED),
                code::TOKEN_FORMAT => Some(tessera_result::TESSERA_TOKEN_MALFORMED),
                code::UNAVAILABLE => Some(tessera_result::TESSERA_UNAVAILABLE),
                code::INVALID_INPUT => Some(tessera_result::TESSERA_INVALID_ARGUMENT),
                _ => None,
            };
            if let Some(want) = want {
                assert_eq!(r, want, "{name}");
            }
        }
        assert_eq!(
            tessera_result::from_wire_code(9_999),
            tessera_result::TESSERA_SERVER_ERROR
        );
    }

    /// The local validator's errors agree with the server's: an engine error gives the same
    /// C code locally as the server's answer about it gives over the network.
    #[cfg(feature = "platform")]
    #[test]
    fn an_engine_error_gives_the_code_its_wire_answer_gives() {
        use std::time::Duration;
        use tessera_engine::{Error, InputError, TokenFormatError};
        let errors = [
            Error::Unauthenticated,
            Error::Expired,
            Error::PtExpired,
            Error::Revoked,
            Error::Superseded,
            Error::RotationReuse,
            Error::DeviceBlocked,
            Error::DeviceIdInUse,
            Error::InvalidInput(InputError::new("device_id", "too long")),
            Error::NotFound("registration"),
            Error::VerificationAttemptsExhausted,
            Error::VerificationCodeRequired,
            Error::WrongVerificationCode { remaining: 2 },
            Error::RateLimited {
                retry_after: Duration::from_secs(1),
            },
            Error::TooManyPendingOperations,
            Error::RegistrationCapReached,
            Error::GenerationExhausted,
            Error::Unavailable("behind".into()),
        ];
        for e in &errors {
            let remote = tessera_client::ClientError::Server(e.to_wire(0));
            assert_eq!(
                tessera_result::from(e),
                tessera_result::from(&remote),
                "{e}"
            );
        }
        // The two that differ on purpose: which format check failed is known locally, and a
        // local store or key file is this process's own.
        let format = Error::TokenFormat(TokenFormatError::BadChecksum);
        assert_eq!(
            tessera_result::from(&format),
            tessera_result::TESSERA_TOKEN_BAD_CHECKSUM
        );
        assert_eq!(
            tessera_result::from(&Error::Unavailable("x".into())),
            tessera_result::TESSERA_UNAVAILABLE
        );
        assert_eq!(
            tessera_result::from(&Error::store("x".into())),
            tessera_result::TESSERA_STORE
        );
    }
}
