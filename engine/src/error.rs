//! The engine's error type.

use std::time::Duration;

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
    /// The durable store failed; the change was not made.
    #[error("store: {0}")]
    Store(String),
    /// This node cannot answer from memory now: it has lost the shared store, or is behind
    /// the other nodes' changes by more than it may be. Retry (on another node).
    #[error("unavailable: {0}")]
    Unavailable(String),
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        // rusqlite errors name SQL and column types, never bound parameter values, so they
        // carry no secrets.
        Error::Store(e.to_string())
    }
}
