//! Errors about the form of what was presented: decided before any key or store is used.

/// Why a token's text or bytes could not be parsed.
///
/// These errors describe the *format* of what was presented (they are decided before any key is
/// used), so they may be precise without revealing anything about secrets.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenFormatError {
    /// The text does not start with the prefix of the expected token kind.
    #[error("wrong token prefix")]
    WrongPrefix,
    /// The text or byte string has the wrong length (truncated or trailing data).
    #[error("wrong token length")]
    WrongLength,
    /// The body contains characters outside the token alphabet or non-canonical trailing bits.
    #[error("invalid characters in token")]
    BadEncoding,
    /// The checksum does not match: the token was mistyped, truncated or altered.
    #[error("token checksum mismatch")]
    BadChecksum,
    /// The token has a version this engine does not know.
    #[error("unknown token version")]
    UnknownVersion,
}

/// Which input was rejected, and why (the engine reports it as its `Error::InvalidInput`).
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field}: {reason}")]
pub struct InputError {
    /// The name of the offending input (for example `device_id`).
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl InputError {
    /// An input error for `field`.
    pub fn new(field: &'static str, reason: &'static str) -> Self {
        Self { field, reason }
    }
}
