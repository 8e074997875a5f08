//! The engine's error type.

use std::time::Duration;

use tessera_proto::wire::{code, ErrorBody};
pub use tessera_proto::{InputError, TokenFormatError};

/// Every error the engine returns.
///
/// Authentication failures are deliberately opaque ([`Error::Unauthenticated`]); only once a
/// token's MAC has verified may an error say [`Error::Expired`], [`Error::Revoked`] or
/// [`Error::Superseded`].
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The token text or bytes are malformed.
    #[error("malformed token: {0}")]
    TokenFormat(#[from] TokenFormatError),
    /// The credential (PT, RT, or operation id + secret) was not accepted. Carries no detail on
    /// purpose: which part was wrong is a side channel.
    #[error("credential not accepted")]
    Unauthenticated,
    /// The credential is authentic but has expired.
    #[error("credential expired")]
    Expired,
    /// The operation's provisioning token expired before the operation was approved: it can
    /// no longer be approved.
    #[error("the provisioning token has expired; its operations cannot be approved")]
    PtExpired,
    /// The credential is authentic but has been revoked (or its registration no longer exists).
    #[error("credential revoked")]
    Revoked,
    /// The RT is authentic but a newer generation of its family has been issued.
    #[error("registration token superseded by a newer generation")]
    Superseded,
    /// A refresh presented an old generation outside the retry grace: the whole registration has
    /// been revoked and a leak signal raised.
    #[error("registration token reuse detected; registration revoked")]
    RotationReuse,
    /// The device id is blocked from provisioning.
    #[error("device is blocked")]
    DeviceBlocked,
    /// The device id has an active registration under another PT; approving would take it
    /// over. A technician may do so only with an explicit `reassign`.
    #[error("device id is registered under another provisioning token; approve with reassign to move it")]
    DeviceIdInUse,
    /// An argument was rejected; nothing was changed.
    #[error(transparent)]
    InvalidInput(#[from] InputError),
    /// The named object does not exist.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The operation is no longer pending, so it cannot be approved, rejected or cancelled.
    #[error("operation is {0}, not pending")]
    OperationClosed(crate::model::OperationState),
    /// The verification code did not match; the operation stays pending.
    #[error("wrong verification code ({remaining} attempts left)")]
    WrongVerificationCode {
        /// How many more attempts are allowed before the operation is rejected.
        remaining: u32,
    },
    /// Too many wrong verification codes: the operation has been rejected.
    #[error("too many wrong verification codes; operation rejected")]
    VerificationAttemptsExhausted,
    /// A verification code is required by the PT's policy but none was given.
    #[error("verification code required")]
    VerificationCodeRequired,
    /// A rate limit was hit; retry after the given delay. Nothing was changed.
    #[error("rate limited; retry after {} ms", retry_after.as_millis())]
    RateLimited {
        /// How long to wait before retrying.
        retry_after: Duration,
    },
    /// The PT already has as many pending operations as its cap allows.
    #[error("too many pending operations for this provisioning token")]
    TooManyPendingOperations,
    /// A fleet PT has created as many registrations as it may.
    #[error("registration cap of this provisioning token reached")]
    RegistrationCapReached,
    /// The registration's generation counter is exhausted; the device must provision again.
    #[error("registration generation exhausted")]
    GenerationExhausted,
    /// The key keeper failed (HSM unavailable, wrong root, unreadable key file).
    #[error("key keeper: {0}")]
    Keys(String),
    /// The durable store failed; the change was not made. The driver's error, when there was
    /// one, is kept as the source.
    #[error("store: {0}")]
    Store(#[source] StoreError),
    /// This node cannot answer from memory now: it has lost the shared store, or is behind
    /// the other nodes' changes by more than it may be. Retry (on another node).
    #[error("unavailable: {0}")]
    Unavailable(String),
}

/// A store failure: what went wrong, and the driver's error that said so (SQLite's,
/// PostgreSQL's, the file system's), kept whole as [`std::error::Error::source`]. Driver
/// messages name statements, columns and constraints, never bound values, so neither part
/// carries a secret. Two store errors are equal when their messages are.
#[derive(Debug, Clone)]
pub struct StoreError {
    message: String,
    source: Option<std::sync::Arc<dyn std::error::Error + Send + Sync>>,
}

impl StoreError {
    /// A store error with no underlying error.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            source: None,
        }
    }

    /// A store error caused by `source`.
    pub fn caused_by(
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self {
            message: message.into(),
            source: Some(std::sync::Arc::new(source)),
        }
    }
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl PartialEq for StoreError {
    fn eq(&self, other: &Self) -> bool {
        self.message == other.message
    }
}

impl Eq for StoreError {}

impl Error {
    /// A store failure with no underlying error (see [`StoreError`]).
    pub fn store(message: String) -> Self {
        Error::Store(StoreError::new(message))
    }

    /// The wire protocol's code for this error (docs/protocol.md, "Errors"): the one place an
    /// engine error is given its code. The server sends it, the C library and the Python
    /// package map it on (each through one table of wire codes).
    pub fn wire_code(&self) -> u16 {
        match self {
            Error::TokenFormat(_) => code::TOKEN_FORMAT,
            Error::Unauthenticated => code::UNAUTHENTICATED,
            Error::Expired | Error::PtExpired => code::EXPIRED,
            Error::Revoked => code::REVOKED,
            Error::Superseded => code::SUPERSEDED,
            Error::RotationReuse => code::ROTATION_REUSE,
            Error::DeviceBlocked => code::DEVICE_BLOCKED,
            Error::DeviceIdInUse => code::DEVICE_ID_IN_USE,
            Error::InvalidInput(_) => code::INVALID_INPUT,
            Error::NotFound(_) => code::NOT_FOUND,
            Error::OperationClosed(_) => code::OPERATION_CLOSED,
            Error::WrongVerificationCode { .. } => code::WRONG_CODE,
            Error::VerificationAttemptsExhausted => code::CODE_ATTEMPTS_EXHAUSTED,
            Error::VerificationCodeRequired => code::CODE_REQUIRED,
            Error::RateLimited { .. } => code::RATE_LIMITED,
            Error::TooManyPendingOperations => code::TOO_MANY_PENDING,
            Error::RegistrationCapReached => code::REGISTRATION_CAP,
            Error::GenerationExhausted => code::GENERATION_EXHAUSTED,
            Error::Unavailable(_) => code::UNAVAILABLE,
            Error::Keys(_) | Error::Store(_) => code::INTERNAL,
        }
    }

    /// The error as the server sends it. The message is this error's `Display`, which never
    /// includes secrets, except for `INTERNAL`: a key keeper's or store's failure is logged by
    /// the server, and the peer is told only that nothing was changed.
    pub fn to_wire(&self, server_time_ms: u64) -> ErrorBody {
        let c = self.wire_code();
        ErrorBody {
            code: c,
            message: if c == code::INTERNAL {
                "internal error; nothing was changed".into()
            } else {
                self.to_string()
            },
            retry_after_ms: match self {
                Error::RateLimited { retry_after } => Some(retry_after.as_millis() as u64),
                _ => None,
            },
            remaining_attempts: match self {
                Error::WrongVerificationCode { remaining } => Some(*remaining),
                _ => None,
            },
            server_time_ms,
        }
    }
}

impl From<tessera_proto::token::RtRefusal> for Error {
    fn from(r: tessera_proto::token::RtRefusal) -> Self {
        use tessera_proto::token::RtRefusal;
        match r {
            RtRefusal::Unauthenticated => Error::Unauthenticated,
            RtRefusal::Expired => Error::Expired,
            RtRefusal::Revoked => Error::Revoked,
            RtRefusal::Superseded => Error::Superseded,
        }
    }
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        // rusqlite errors name SQL and column types, never bound parameter values, so they
        // carry no secrets.
        Error::Store(StoreError::caused_by(e.to_string(), e))
    }
}
