//! Errors become the exception classes of `tessera.errors`, chosen by a stable numeric code.
//!
//! Codes below 100 are the wire protocol's (docs/protocol.md); codes from 100 are the client's
//! own (connection, timeout, provisioning outcomes). The Python side keeps the table
//! (`tessera.errors.CODES`); this side only says which code, the message, and the details.

use pyo3::prelude::*;
use tessera_client::ClientError;
use tessera_client::DeviceError;
use tessera_engine::{Error, TokenFormatError};
use tessera_proto::wire::{code, ErrorBody};

/// Client-side codes (the wire protocol's end at 99).
pub(crate) mod client_code {
    pub(crate) const CONNECTION: u16 = 100;
    pub(crate) const TIMEOUT: u16 = 101;
    pub(crate) const PROTOCOL: u16 = 102;
    pub(crate) const CONFIG: u16 = 103;
    pub(crate) const CERTIFICATE: u16 = 104;
    pub(crate) const REJECTED: u16 = 110;
    pub(crate) const OPERATION_EXPIRED: u16 = 111;
    pub(crate) const CANCELLED: u16 = 112;
    pub(crate) const PENDING_APPROVAL: u16 = 113;
    pub(crate) const DEADLINE: u16 = 114;
    pub(crate) const NOT_REGISTERED: u16 = 115;
}

/// Everything an exception carries besides its class.
#[derive(Debug, Default)]
pub(crate) struct Raised {
    pub(crate) code: u16,
    pub(crate) message: String,
    pub(crate) detail: Option<&'static str>,
    pub(crate) retry_after_ms: Option<u64>,
    pub(crate) remaining_attempts: Option<u32>,
}

impl Raised {
    pub(crate) fn new(code: u16, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            ..Self::default()
        }
    }

    /// The exception instance, made by `tessera.errors._make`.
    pub(crate) fn into_pyerr(self, py: Python<'_>) -> PyErr {
        let made = py
            .import("tessera.errors")
            .and_then(|m| m.getattr("_make"))
            .and_then(|f| {
                f.call1((
                    self.code,
                    self.message,
                    self.detail,
                    self.retry_after_ms,
                    self.remaining_attempts,
                ))
            });
        match made {
            Ok(exc) => PyErr::from_value(exc),
            Err(e) => e,
        }
    }
}

fn format_detail(e: TokenFormatError) -> &'static str {
    match e {
        TokenFormatError::WrongPrefix => "wrong_prefix",
        TokenFormatError::WrongLength => "wrong_length",
        TokenFormatError::BadEncoding => "bad_encoding",
        TokenFormatError::BadChecksum => "bad_checksum",
        _ => "unknown_version",
    }
}

/// An engine error, as the local `Engine` raises it.
pub(crate) fn engine(py: Python<'_>, e: &Error) -> PyErr {
    let mut r = match e {
        // The wire maps these to INTERNAL with a fixed message; locally the caller owns the
        // engine, and key-keeper and store messages carry no secrets.
        Error::Keys(_) | Error::Store(_) => Raised::new(code::INTERNAL, e.to_string()),
        _ => wire(e.to_wire(0)),
    };
    if let Error::TokenFormat(f) = e {
        r.detail = Some(format_detail(*f));
    }
    r.into_pyerr(py)
}

/// A token-format error from the key-free helpers.
pub(crate) fn token_format(py: Python<'_>, e: TokenFormatError) -> PyErr {
    let mut r = Raised::new(code::TOKEN_FORMAT, format!("malformed token: {e}"));
    r.detail = Some(format_detail(e));
    r.into_pyerr(py)
}

fn wire(b: ErrorBody) -> Raised {
    Raised {
        code: b.code,
        message: b.message,
        detail: None,
        retry_after_ms: b.retry_after_ms,
        remaining_attempts: b.remaining_attempts,
    }
}

fn client_raised(e: &ClientError) -> Raised {
    match e {
        ClientError::Config(m) => Raised::new(client_code::CONFIG, format!("configuration: {m}")),
        ClientError::Connection(m) => {
            Raised::new(client_code::CONNECTION, format!("connection: {m}"))
        }
        ClientError::Certificate(m) => Raised::new(
            client_code::CERTIFICATE,
            format!("server certificate not accepted: {m}"),
        ),
        ClientError::Timeout => Raised::new(client_code::TIMEOUT, "request timed out"),
        ClientError::Protocol(m) => Raised::new(client_code::PROTOCOL, format!("protocol: {m}")),
        ClientError::Server(b) => wire(b.clone()),
    }
}

/// A client error (admin or device request).
pub(crate) fn client(py: Python<'_>, e: &ClientError) -> PyErr {
    client_raised(e).into_pyerr(py)
}

/// A device-client error; `pending` says whether an operation was still waiting for approval
/// when a deadline passed.
pub(crate) fn device(py: Python<'_>, e: &DeviceError, pending: bool) -> PyErr {
    let r = match e {
        DeviceError::Rejected(_) => Raised::new(client_code::REJECTED, e.to_string()),
        DeviceError::Expired => Raised::new(client_code::OPERATION_EXPIRED, e.to_string()),
        DeviceError::Cancelled => Raised::new(client_code::CANCELLED, e.to_string()),
        DeviceError::Deadline if pending => Raised::new(
            client_code::PENDING_APPROVAL,
            "deadline passed while the operation waits for approval",
        ),
        DeviceError::Deadline => Raised::new(client_code::DEADLINE, e.to_string()),
        DeviceError::NotRegistered => Raised::new(client_code::NOT_REGISTERED, e.to_string()),
        DeviceError::Client(c) => client_raised(c),
    };
    r.into_pyerr(py)
}

/// A configuration error raised before anything is sent.
pub(crate) fn config(py: Python<'_>, message: impl Into<String>) -> PyErr {
    Raised::new(client_code::CONFIG, message).into_pyerr(py)
}
