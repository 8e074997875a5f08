//! Message bodies and codes. Every body is a JSON object; see docs/protocol.md for each field.

use alloc::collections::BTreeMap;
use alloc::string::String;

use serde::{Deserialize, Serialize};

/// Frame kinds.
pub mod kind {
    /// Success response.
    pub const OK: u8 = 0x00;
    /// Error response (body: [`super::ErrorBody`]).
    pub const ERROR: u8 = 0x01;
    /// One chunk of a streamed response; more frames follow.
    pub const CHUNK: u8 = 0x02;

    /// Device: begin (or resume) a provisioning operation.
    pub const BEGIN: u8 = 0x10;
    /// Device: wait for an operation's outcome (long poll); collects the RT once approved.
    pub const WAIT: u8 = 0x11;
    /// Device: refresh an RT.
    pub const REFRESH: u8 = 0x12;
    /// Service: validate an RT and learn the device identity it carries.
    pub const INTROSPECT: u8 = 0x13;
    /// Device: cancel its pending operation.
    pub const CANCEL: u8 = 0x14;

    /// Admin: server and engine status.
    pub const STATUS: u8 = 0x40;
    /// Admin: create one PT.
    pub const PT_CREATE: u8 = 0x41;
    /// Admin: create a batch of PTs (streamed response).
    pub const PT_BATCH: u8 = 0x42;
    /// Admin: list PTs.
    pub const PT_LIST: u8 = 0x43;
    /// Admin: show one PT.
    pub const PT_SHOW: u8 = 0x44;
    /// Admin: revoke a PT (cascades).
    pub const PT_REVOKE: u8 = 0x45;
    /// Technician: list operations.
    pub const OP_LIST: u8 = 0x50;
    /// Technician: show one operation.
    pub const OP_SHOW: u8 = 0x51;
    /// Technician: approve an operation.
    pub const OP_APPROVE: u8 = 0x52;
    /// Technician: reject an operation.
    pub const OP_REJECT: u8 = 0x53;
    /// Technician: list registrations.
    pub const DEVICE_LIST: u8 = 0x60;
    /// Technician: show a device.
    pub const DEVICE_SHOW: u8 = 0x61;
    /// Admin: revoke a registration (or all of a device's).
    pub const DEVICE_REVOKE: u8 = 0x62;
    /// Admin: block a device id.
    pub const DEVICE_BLOCK: u8 = 0x63;
    /// Admin: unblock a device id.
    pub const DEVICE_UNBLOCK: u8 = 0x64;
    /// Admin: audit events.
    pub const AUDIT: u8 = 0x70;
    /// Admin: leak signals.
    pub const LEAKS: u8 = 0x71;
    /// Service: registrations revoked after a cursor (long poll); at most
    /// [`REVOCATIONS_MAX`](super::REVOCATIONS_MAX) ids per answer.
    pub const REVOCATIONS: u8 = 0x72;
    /// Admin: rotate keys.
    pub const KEYS_ROTATE: u8 = 0x80;
    /// Admin: list key epochs.
    pub const KEYS_LIST: u8 = 0x81;
    /// Admin: retire a key epoch.
    pub const KEYS_RETIRE: u8 = 0x82;
    /// Admin: create an admin token.
    pub const TOKEN_CREATE: u8 = 0x90;
    /// Admin: list admin tokens.
    pub const TOKEN_LIST: u8 = 0x91;
    /// Admin: revoke an admin token.
    pub const TOKEN_REVOKE: u8 = 0x92;

    /// Requests a technician token may make.
    pub const TECHNICIAN: &[u8] = &[
        STATUS,
        OP_LIST,
        OP_SHOW,
        OP_APPROVE,
        OP_REJECT,
        DEVICE_LIST,
        DEVICE_SHOW,
    ];

    /// Requests a service token may make (on the admin endpoint): check RTs and follow
    /// revocations.
    pub const SERVICE: &[u8] = &[INTROSPECT, REVOCATIONS];

    /// A request kind's name, lower case (`refresh`, `op_approve`), for logs and metric labels;
    /// `unknown` for a code that is not a request.
    pub const fn name(kind: u8) -> &'static str {
        match kind {
            BEGIN => "begin",
            WAIT => "wait",
            REFRESH => "refresh",
            INTROSPECT => "introspect",
            CANCEL => "cancel",
            STATUS => "status",
            PT_CREATE => "pt_create",
            PT_BATCH => "pt_batch",
            PT_LIST => "pt_list",
            PT_SHOW => "pt_show",
            PT_REVOKE => "pt_revoke",
            OP_LIST => "op_list",
            OP_SHOW => "op_show",
            OP_APPROVE => "op_approve",
            OP_REJECT => "op_reject",
            DEVICE_LIST => "device_list",
            DEVICE_SHOW => "device_show",
            DEVICE_REVOKE => "device_revoke",
            DEVICE_BLOCK => "device_block",
            DEVICE_UNBLOCK => "device_unblock",
            AUDIT => "audit",
            LEAKS => "leaks",
            REVOCATIONS => "revocations",
            KEYS_ROTATE => "keys_rotate",
            KEYS_LIST => "keys_list",
            KEYS_RETIRE => "keys_retire",
            TOKEN_CREATE => "token_create",
            TOKEN_LIST => "token_list",
            TOKEN_REVOKE => "token_revoke",
            _ => "unknown",
        }
    }
}

/// The most registration ids one REVOCATIONS answer carries (its `limit`, 1 to this).
pub const REVOCATIONS_MAX: usize = 4096;

/// Stable numeric error codes. Numbers are never reused.
pub mod code {
    /// The frame or its JSON body is malformed.
    pub const MALFORMED: u16 = 1;
    /// Unsupported protocol version.
    pub const UNSUPPORTED_VERSION: u16 = 2;
    /// Unknown request kind on this endpoint.
    pub const UNKNOWN_REQUEST: u16 = 3;
    /// Request larger than the endpoint's cap.
    pub const TOO_LARGE: u16 = 4;
    /// An argument was rejected.
    pub const INVALID_INPUT: u16 = 5;
    /// A token is malformed (prefix, length, characters, checksum, version).
    pub const TOKEN_FORMAT: u16 = 6;
    /// Credential not accepted (opaque on purpose).
    pub const UNAUTHENTICATED: u16 = 10;
    /// Credential expired.
    pub const EXPIRED: u16 = 11;
    /// Credential revoked.
    pub const REVOKED: u16 = 12;
    /// RT superseded by a newer generation.
    pub const SUPERSEDED: u16 = 13;
    /// RT reuse detected; the registration was revoked.
    pub const ROTATION_REUSE: u16 = 14;
    /// Device id blocked.
    pub const DEVICE_BLOCKED: u16 = 15;
    /// Object not found.
    pub const NOT_FOUND: u16 = 20;
    /// Operation not pending.
    pub const OPERATION_CLOSED: u16 = 21;
    /// Wrong verification code.
    pub const WRONG_CODE: u16 = 22;
    /// Too many wrong codes; operation rejected.
    pub const CODE_ATTEMPTS_EXHAUSTED: u16 = 23;
    /// Verification code required.
    pub const CODE_REQUIRED: u16 = 24;
    /// The device id is registered under another PT; approve with `reassign` to move it.
    pub const DEVICE_ID_IN_USE: u16 = 25;
    /// Rate limited; see `retry_after_ms`.
    pub const RATE_LIMITED: u16 = 30;
    /// Too many pending operations on the PT.
    pub const TOO_MANY_PENDING: u16 = 31;
    /// Fleet PT registration cap reached.
    pub const REGISTRATION_CAP: u16 = 32;
    /// Generation counter exhausted; provision again.
    pub const GENERATION_EXHAUSTED: u16 = 33;
    /// The admin token's role may not make this request.
    pub const FORBIDDEN: u16 = 40;
    /// The request was not received within the per-request deadline.
    pub const TIMEOUT: u16 = 41;
    /// Internal failure (store, keys); nothing was changed.
    pub const INTERNAL: u16 = 50;
    /// The server is shutting down or overloaded; retry later.
    pub const UNAVAILABLE: u16 = 51;

    /// Every code and its name as docs/protocol.md lists it: what the C and Python error
    /// tables are checked against (each code must map to an outcome of its own there).
    pub const ALL: &[(u16, &str)] = &[
        (MALFORMED, "MALFORMED"),
        (UNSUPPORTED_VERSION, "UNSUPPORTED_VERSION"),
        (UNKNOWN_REQUEST, "UNKNOWN_REQUEST"),
        (TOO_LARGE, "TOO_LARGE"),
        (INVALID_INPUT, "INVALID_INPUT"),
        (TOKEN_FORMAT, "TOKEN_FORMAT"),
        (UNAUTHENTICATED, "UNAUTHENTICATED"),
        (EXPIRED, "EXPIRED"),
        (REVOKED, "REVOKED"),
        (SUPERSEDED, "SUPERSEDED"),
        (ROTATION_REUSE, "ROTATION_REUSE"),
        (DEVICE_BLOCKED, "DEVICE_BLOCKED"),
        (NOT_FOUND, "NOT_FOUND"),
        (OPERATION_CLOSED, "OPERATION_CLOSED"),
        (WRONG_CODE, "WRONG_CODE"),
        (CODE_ATTEMPTS_EXHAUSTED, "CODE_ATTEMPTS_EXHAUSTED"),
        (CODE_REQUIRED, "CODE_REQUIRED"),
        (DEVICE_ID_IN_USE, "DEVICE_ID_IN_USE"),
        (RATE_LIMITED, "RATE_LIMITED"),
        (TOO_MANY_PENDING, "TOO_MANY_PENDING"),
        (REGISTRATION_CAP, "REGISTRATION_CAP"),
        (GENERATION_EXHAUSTED, "GENERATION_EXHAUSTED"),
        (FORBIDDEN, "FORBIDDEN"),
        (TIMEOUT, "TIMEOUT"),
        (INTERNAL, "INTERNAL"),
        (UNAVAILABLE, "UNAVAILABLE"),
    ];

    /// A code's name (`RATE_LIMITED`), for logs and metric labels; `UNKNOWN` for a code not in
    /// [`ALL`].
    pub fn name(code: u16) -> &'static str {
        ALL.iter()
            .find(|(c, _)| *c == code)
            .map_or("UNKNOWN", |(_, n)| n)
    }
}

/// The body of an error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// A code from [`code`].
    pub code: u16,
    /// Short human-readable message (never contains secrets).
    pub message: String,
    /// For rate limits and unavailability: when to retry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
    /// For wrong codes: attempts left.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remaining_attempts: Option<u32>,
    /// Server time, Unix milliseconds.
    pub server_time_ms: u64,
}

/// `BEGIN` request.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BeginReq {
    /// The provisioning token.
    pub pt: String,
    /// Requested device id.
    #[serde(default)]
    pub device_id: Option<String>,
    /// Attributes (at most 16).
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// Instance nonce, 16–64 bytes of text (at least 128 random bits, for example 32 hex
    /// digits), kept secret by the device across retries and reboots.
    pub instance_nonce: String,
}

impl core::fmt::Debug for BeginReq {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("BeginReq")
            .field("pt", &"<redacted>")
            .field("device_id", &self.device_id)
            .field("attributes", &self.attributes)
            .field("instance_nonce", &"<redacted>")
            .finish()
    }
}

/// `BEGIN` response.
#[derive(Clone, Serialize, Deserialize)]
pub struct BeginResp {
    /// Operation id (`op_…`).
    pub operation_id: String,
    /// Operation secret (`tsos_…`).
    pub secret: String,
    /// Code to show on the device, if the policy uses one (absent otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification_code: Option<String>,
    /// `pending` or `approved`.
    pub state: String,
    /// Suggested poll interval.
    pub poll_interval_ms: u64,
    /// Operation expiry, Unix milliseconds.
    pub expires_at_ms: u64,
    /// True when an existing pending operation was resumed.
    pub resumed: bool,
    /// Server time, Unix milliseconds.
    pub server_time_ms: u64,
}

impl core::fmt::Debug for BeginResp {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("BeginResp")
            .field("operation_id", &self.operation_id)
            .field("secret", &"<redacted>")
            .field("verification_code", &"<redacted>")
            .field("state", &self.state)
            .field("poll_interval_ms", &self.poll_interval_ms)
            .field("expires_at_ms", &self.expires_at_ms)
            .field("resumed", &self.resumed)
            .field("server_time_ms", &self.server_time_ms)
            .finish()
    }
}

/// `WAIT` request.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitReq {
    /// Operation id.
    pub operation_id: String,
    /// Operation secret.
    pub secret: String,
    /// How long to hold the request while pending (capped by the server, 0 = answer at once).
    #[serde(default)]
    pub timeout_ms: u64,
}

impl core::fmt::Debug for WaitReq {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("WaitReq")
            .field("operation_id", &self.operation_id)
            .field("secret", &"<redacted>")
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

/// `WAIT` response.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WaitResp {
    /// `pending`, `provisioned`, `rejected`, `expired` or `cancelled`.
    pub state: String,
    /// Why it was rejected or cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// While pending: suggested poll interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll_interval_ms: Option<u64>,
    /// While pending: operation expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<u64>,
    /// Once provisioned: the registration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration: Option<RtBody>,
    /// Server time, Unix milliseconds.
    pub server_time_ms: u64,
}

/// An RT with its public fields.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RtBody {
    /// The RT text (`tsrt_…`).
    pub rt: String,
    /// The device id.
    pub device_id: String,
    /// The registration id.
    pub registration_id: u64,
    /// Generation.
    pub generation: u32,
    /// Issue time, Unix seconds.
    pub issued_at: u64,
    /// Expiry, Unix seconds.
    pub expires_at: u64,
}

impl core::fmt::Debug for RtBody {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RtBody")
            .field("rt", &"<redacted>")
            .field("device_id", &self.device_id)
            .field("registration_id", &self.registration_id)
            .field("generation", &self.generation)
            .field("issued_at", &self.issued_at)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// `REFRESH` / `INTROSPECT` request.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RtReq {
    /// The RT text.
    pub rt: String,
}

impl Drop for RtReq {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.rt);
    }
}

impl core::fmt::Debug for RtReq {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RtReq").field("rt", &"<redacted>").finish()
    }
}

/// `REFRESH` response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RefreshResp {
    /// The successor RT.
    pub registration: RtBody,
    /// True when this was a retry that returned the same successor.
    pub retried: bool,
    /// Server time, Unix milliseconds.
    pub server_time_ms: u64,
}

/// `INTROSPECT` response.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IntrospectResp {
    /// Always true (inactive RTs get an error response).
    pub active: bool,
    /// The device id.
    pub device_id: String,
    /// The registration id.
    pub registration_id: u64,
    /// The PT the device was provisioned through.
    pub pt_id: String,
    /// Generation of the presented RT.
    pub generation: u32,
    /// Expiry of the presented RT, Unix seconds.
    pub expires_at: u64,
    /// Server time, Unix milliseconds.
    pub server_time_ms: u64,
}

/// `CANCEL` request.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelReq {
    /// Operation id.
    pub operation_id: String,
    /// Operation secret.
    pub secret: String,
}

impl core::fmt::Debug for CancelReq {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("CancelReq")
            .field("operation_id", &self.operation_id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Every admin request: the admin token and the request's arguments.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminReq {
    /// The admin token (`tsat_…`).
    pub token: String,
    /// Arguments (an object; its fields depend on the request kind).
    #[serde(default)]
    pub args: serde_json::Value,
}

impl Drop for AdminReq {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.token);
    }
}

impl core::fmt::Debug for AdminReq {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Argument values may be secrets (INTROSPECT's `rt`): only their names are shown.
        let names: alloc::vec::Vec<&str> = self
            .args
            .as_object()
            .map(|o| o.keys().map(alloc::string::String::as_str).collect())
            .unwrap_or_default();
        f.debug_struct("AdminReq")
            .field("token", &"<redacted>")
            .field("args", &names)
            .finish()
    }
}

pub use crate::admin::requests::PtArgs;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_redacts_every_secret_field() {
        let s = "tsxx_SECRET-VALUE-0123456789".to_string();
        let rt = RtBody {
            rt: s.clone(),
            device_id: "d".into(),
            registration_id: 1,
            generation: 1,
            issued_at: 1,
            expires_at: 2,
        };
        let all = format!(
            "{:?}{:?}{:?}{:?}{:?}{:?}{:?}{:?}{:?}",
            BeginReq {
                pt: s.clone(),
                device_id: None,
                attributes: Default::default(),
                instance_nonce: "n".into()
            },
            BeginResp {
                operation_id: "op".into(),
                secret: s.clone(),
                verification_code: Some(s.clone()),
                state: "pending".into(),
                poll_interval_ms: 1,
                expires_at_ms: 1,
                resumed: false,
                server_time_ms: 1,
            },
            WaitReq {
                operation_id: "op".into(),
                secret: s.clone(),
                timeout_ms: 0
            },
            WaitResp {
                state: "provisioned".into(),
                registration: Some(rt.clone()),
                ..WaitResp::default()
            },
            RefreshResp {
                registration: rt.clone(),
                retried: false,
                server_time_ms: 1
            },
            rt,
            RtReq { rt: s.clone() },
            CancelReq {
                operation_id: "op".into(),
                secret: s.clone()
            },
            AdminReq {
                token: s.clone(),
                args: serde_json::Value::Null
            },
        );
        assert!(!all.contains("SECRET-VALUE"), "{all}");
        // An admin request's arguments may carry one (a service's INTROSPECT): names only.
        let introspect = format!(
            "{:?}",
            AdminReq {
                token: s.clone(),
                args: serde_json::json!({ "rt": s.clone() })
            }
        );
        assert!(!introspect.contains("SECRET-VALUE"), "{introspect}");
        assert!(introspect.contains("\"rt\""), "{introspect}");
        assert!(all.contains("<redacted>"));
    }
}
