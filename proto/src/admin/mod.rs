//! The admin protocol as types: one request type per admin kind, tied to its answer type by
//! [`AdminRequest`], and the records the answers carry.
//!
//! On the wire nothing is new: an admin request is the frame of its kind with the body
//! `{"token": "tsat_…", "args": {…}}` (see [`AdminCall`]), where `args` is the request type's
//! JSON, and the OK answer's body is its answer type's JSON (docs/protocol.md). The server, the
//! Rust client, the CLI, the C service validator and the Python package all use these types, so
//! a field renamed on one side is a compile error on the other.
//!
//! ```
//! use tessera_proto::admin::{AdminCall, AdminRequest, requests::PtShow};
//! use tessera_proto::wire::kind;
//!
//! let req = PtShow { id: "pt_x".into() };
//! assert_eq!(PtShow::KIND, kind::PT_SHOW);
//! let body = serde_json::to_string(&AdminCall { token: "tsat_…", args: &req }).unwrap();
//! assert_eq!(body, r#"{"token":"tsat_…","args":{"id":"pt_x"}}"#);
//! ```

use serde::de::DeserializeOwned;
use serde::Serialize;

pub mod answers;
pub mod records;
pub mod requests;
pub mod whole;

pub use answers::*;
pub use records::*;

/// An admin request: its kind on the wire and the type of its OK answer.
pub trait AdminRequest: Serialize + DeserializeOwned {
    /// The frame kind (`wire::kind`).
    const KIND: u8;
    /// What the server answers with.
    type Answer: Serialize + DeserializeOwned;
}

/// The body of an admin request frame as a client sends it: the token and the request.
///
/// The server reads the same body as [`AdminReq`](crate::wire::messages::AdminReq), checking
/// the token before it looks at the arguments.
#[derive(Serialize)]
pub struct AdminCall<'a, R> {
    /// The admin token (`tsat_…`).
    pub token: &'a str,
    /// The request.
    pub args: &'a R,
}

impl<R> core::fmt::Debug for AdminCall<'_, R> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("AdminCall")
            .field("token", &"<redacted>")
            .finish_non_exhaustive()
    }
}
