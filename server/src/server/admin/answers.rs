//! The answers of the admin requests, as types: the admin layer builds each answer as one of
//! these, and the OpenAPI document's response schemas are derived from the same types, so the
//! document cannot drift from what either front end sends.

use std::collections::BTreeMap;

use serde::Serialize;
use tessera_engine::model::{
    AdminTokenRecord, AuditEvent, BlockRecord, LeakSignal, OperationRecord, PtRecord,
    RegistrationRecord,
};
use tessera_engine::{EngineStatus, KeyEpochInfo};
use utoipa::ToSchema;

/// STATUS.
#[derive(Serialize, ToSchema)]
pub(crate) struct StatusAnswer {
    /// The engine's counters.
    pub(crate) engine: EngineStatus,
    /// Device and admin QUIC connections open now.
    pub(crate) open_connections: u64,
    /// Devices waiting in a long poll for a decision.
    pub(crate) long_polls: u64,
    /// REVOCATIONS requests waiting for a revocation.
    pub(crate) revocation_polls: u64,
    /// Retry packets sent (address validation under load).
    pub(crate) retries_sent: u64,
    /// Device handshakes that resumed a TLS session (from a session ticket) instead of a full
    /// handshake, since start.
    pub(crate) tls_resumed: u64,
    /// The server's clock, Unix milliseconds.
    pub(crate) server_time_ms: u64,
}

/// PT_CREATE: the PT's record and its text, shown this once.
#[derive(Serialize, ToSchema)]
pub(crate) struct PtCreated<'a> {
    pub(crate) pt: PtRecord,
    /// The PT (`tspt_…`): the server keeps only its verifier.
    pub(crate) token: &'a str,
}

/// PT_LIST: one page, newest first.
#[derive(Serialize, ToSchema)]
pub(crate) struct PtPage {
    pub(crate) pts: Vec<PtRecord>,
    /// The cursor of the next page (`before`), null on the last.
    pub(crate) next: Option<String>,
}

/// PT_SHOW.
#[derive(Serialize, ToSchema)]
pub(crate) struct PtShown {
    pub(crate) pt: PtRecord,
}

/// PT_REVOKE, DEVICE_REVOKE and DEVICE_BLOCK: how many registrations were revoked.
#[derive(Serialize, ToSchema)]
pub(crate) struct Revoked {
    pub(crate) registrations_revoked: u64,
}

/// What a technician weighs about an operation's PT: how full it is.
#[derive(Serialize, ToSchema)]
pub(crate) struct PtFill {
    pub(crate) label: String,
    pub(crate) registrations_created: u64,
    /// A fleet PT's cap (absent for a single-device PT).
    pub(crate) max_registrations: Option<u64>,
}

/// OP_LIST: one page, newest first, with the PTs of its operations.
#[derive(Serialize, ToSchema)]
pub(crate) struct OperationPage {
    pub(crate) operations: Vec<OperationRecord>,
    /// The cursor of the next page (`before`), null on the last.
    pub(crate) next: Option<String>,
    /// The page's PTs by id.
    pub(crate) pts: BTreeMap<String, PtFill>,
}

/// OP_SHOW.
#[derive(Serialize, ToSchema)]
pub(crate) struct OperationShown {
    pub(crate) operation: OperationRecord,
}

/// OP_APPROVE: the registration the approval created.
#[derive(Serialize, ToSchema)]
pub(crate) struct Approved {
    pub(crate) registration: RegistrationRecord,
}

/// OP_REJECT and KEYS_RETIRE: done, nothing to tell.
#[derive(Serialize, ToSchema)]
pub(crate) struct Done {}

/// DEVICE_LIST: one page, newest first.
#[derive(Serialize, ToSchema)]
pub(crate) struct RegistrationPage {
    pub(crate) registrations: Vec<RegistrationRecord>,
    /// The cursor of the next page (`before`), null on the last.
    pub(crate) next: Option<u64>,
}

/// DEVICE_SHOW: a device id's registrations, and its block if it is blocked.
#[derive(Serialize, ToSchema)]
pub(crate) struct DeviceShown {
    pub(crate) registrations: Vec<RegistrationRecord>,
    pub(crate) blocked: Option<BlockRecord>,
}

/// DEVICE_UNBLOCK.
#[derive(Serialize, ToSchema)]
pub(crate) struct Unblocked {
    /// The device id was blocked until now.
    pub(crate) was_blocked: bool,
}

/// AUDIT.
#[derive(Serialize, ToSchema)]
pub(crate) struct AuditPage {
    pub(crate) events: Vec<AuditEvent>,
}

/// LEAKS.
#[derive(Serialize, ToSchema)]
pub(crate) struct LeakPage {
    pub(crate) signals: Vec<LeakSignal>,
}

/// REVOCATIONS: registrations revoked after the cursor, and the cursor to ask from next.
#[derive(Serialize, ToSchema)]
pub(crate) struct RevocationPage {
    pub(crate) revocations: Vec<u64>,
    pub(crate) cursor: u64,
}

/// KEYS_ROTATE: the new current epoch.
#[derive(Serialize, ToSchema)]
pub(crate) struct Rotated {
    pub(crate) epoch: u32,
}

/// KEYS_LIST.
#[derive(Serialize, ToSchema)]
pub(crate) struct Epochs {
    pub(crate) epochs: Vec<KeyEpochInfo>,
}

/// TOKEN_CREATE: the token's record and its text, shown this once.
#[derive(Serialize, ToSchema)]
pub(crate) struct TokenCreated<'a> {
    pub(crate) admin_token: AdminTokenRecord,
    /// The admin token (`tsat_…`): the server keeps only its verifier.
    pub(crate) token: &'a str,
}

/// TOKEN_LIST.
#[derive(Serialize, ToSchema)]
pub(crate) struct TokenList {
    pub(crate) admin_tokens: Vec<AdminTokenRecord>,
}

/// TOKEN_REVOKE.
#[derive(Serialize, ToSchema)]
pub(crate) struct TokenRevoked {
    /// The token was live until now.
    pub(crate) revoked: bool,
}

/// An answer as the JSON both front ends send.
pub(crate) fn json<T: Serialize>(a: &T) -> serde_json::Value {
    // These types hold only strings, numbers and maps with string keys: serializing cannot fail.
    serde_json::to_value(a).unwrap_or_default()
}
