//! # tessera-proto
//!
//! Tessera's protocol as data: the token text formats, the ids and limits, and the wire frame
//! codec and message bodies. It does no I/O, reads no clock, runs no async runtime and keeps no
//! store, in the way `quinn-proto` is the sans-IO half of quinn. The engine, the server, the
//! clients, the C library, the Python package and the fuzz targets all take these definitions
//! from here.
//!
//! The crate is `#![no_std]` with `alloc` when the default `std` feature is off, so token
//! handling can run on a microcontroller. The keyed parts of the formats (a PT's verifier, an
//! RT's MAC, a verification code) are behind the `mac` feature, which only key holders need.
//!
//! ```
//! use tessera_proto::token::{UntrustedRt, RT_TEXT_LEN};
//! use tessera_proto::wire::{self, kind, messages::RtReq};
//!
//! // A device checks the form of a token it read back from flash before sending it
//! // (this one is the RT of docs/token-vectors.json)…
//! let text = "tsrt_AgAAAAEAAAAAAAAE0rrcrwAAAAcAAAAAa0nSAAAAAABrcV8AnUZiWpZbL65axQtWlU4E6i_7O48sjQXL2ufqgNMbtUlo31Kf";
//! assert_eq!(text.len(), RT_TEXT_LEN);
//! let rt = UntrustedRt::parse(text.as_bytes())?;
//! assert_eq!(rt.untrusted_claims().registration_id.get(), 1234);
//!
//! // …and frames a REFRESH request: an 8-byte header and a JSON body.
//! let body = serde_json::to_vec(&RtReq { rt: text.into() }).unwrap();
//! let frame = wire::encode(kind::REFRESH, &body);
//! let decoded = wire::decode(&frame, wire::frame::DEVICE_REQUEST_MAX)?;
//! assert_eq!((decoded.kind, decoded.body), (kind::REFRESH, &body[..]));
//! # Ok::<(), Box<dyn core::error::Error>>(())
//! ```
#![cfg_attr(not(feature = "std"), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

pub mod admin;
pub mod codec;
mod error;
pub mod ids;
mod secret;
mod time;
pub mod token;
pub mod wire;

pub use error::{InputError, TokenFormatError};
pub use ids::{limits, AdminTokenId, Attributes, DeviceId, OperationId, PtId, RegistrationId};
pub use secret::{
    AdminToken, OperationSecret, ProvisioningToken, RegistrationToken, VerificationCode,
};
pub use time::Timestamp;
