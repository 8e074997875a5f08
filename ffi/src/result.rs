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
    /// The output buffer is too small; nothing was written.
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
    /// Server: another error (see the log callback).
    TESSERA_SERVER_ERROR = 299,

    /// Could not connect, or the connection broke.
    TESSERA_CONNECTION = 300,
    /// No answer in time.
    TESSERA_TIMEOUT = 301,
    /// The server's answer was not valid protocol.
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

#[cfg(feature = "platform")]
impl From<&tessera_engine::Error> for tessera_result {
    fn from(e: &tessera_engine::Error) -> Self {
        use tessera_engine::Error as E;
        match e {
            E::TokenFormat(f) => (*f).into(),
            E::Unauthenticated => Self::TESSERA_UNAUTHENTICATED,
            E::Expired => Self::TESSERA_EXPIRED,
            E::Revoked => Self::TESSERA_REVOKED,
            E::Superseded => Self::TESSERA_SUPERSEDED,
            E::RotationReuse => Self::TESSERA_ROTATION_REUSE,
            E::DeviceBlocked => Self::TESSERA_DEVICE_BLOCKED,
            E::RateLimited { .. } => Self::TESSERA_RATE_LIMITED,
            E::Store(_) => Self::TESSERA_STORE,
            E::Keys(_) => Self::TESSERA_CONFIG,
            _ => Self::TESSERA_INVALID_ARGUMENT,
        }
    }
}

impl From<&tessera_client::ClientError> for tessera_result {
    fn from(e: &tessera_client::ClientError) -> Self {
        use tessera_client::ClientError as C;
        use tessera_proto::wire::code;
        match e {
            C::Config(_) => Self::TESSERA_CONFIG,
            C::Connection(_) => Self::TESSERA_CONNECTION,
            C::Certificate(_) => Self::TESSERA_CERTIFICATE,
            C::Timeout => Self::TESSERA_TIMEOUT,
            C::Protocol(_) => Self::TESSERA_PROTOCOL,
            C::Server(b) => match b.code {
                code::UNAUTHENTICATED => Self::TESSERA_UNAUTHENTICATED,
                code::EXPIRED => Self::TESSERA_EXPIRED,
                code::REVOKED => Self::TESSERA_REVOKED,
                code::SUPERSEDED => Self::TESSERA_SUPERSEDED,
                code::ROTATION_REUSE => Self::TESSERA_ROTATION_REUSE,
                code::DEVICE_BLOCKED => Self::TESSERA_DEVICE_BLOCKED,
                code::RATE_LIMITED => Self::TESSERA_RATE_LIMITED,
                code::TOKEN_FORMAT => Self::TESSERA_TOKEN_BAD_CHECKSUM,
                _ => Self::TESSERA_SERVER_ERROR,
            },
        }
    }
}
