//! The answers of the admin requests. The server builds each answer as one of these and the
//! clients read the same type back; the HTTPS API's response schemas are derived from them.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

use super::records::{
    AdminTokenRecord, AuditEvent, BlockRecord, EngineStatus, KeyEpochInfo, LeakSignal,
    OperationRecord, PtRecord, RegistrationRecord,
};

/// `STATUS`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StatusAnswer {
    /// The engine's counters.
    pub engine: EngineStatus,
    /// Device and admin QUIC connections open now.
    pub open_connections: u64,
    /// Devices waiting in a long poll for a decision.
    pub long_polls: u64,
    /// REVOCATIONS requests waiting for a revocation.
    pub revocation_polls: u64,
    /// Retry packets sent (address validation under load).
    pub retries_sent: u64,
    /// Device handshakes that resumed a TLS session (from a session ticket) instead of a full
    /// handshake, since start.
    pub tls_resumed: u64,
    /// The server's clock, Unix milliseconds.
    pub server_time_ms: u64,
}

/// A secret shown once in an answer: wiped when the answer is dropped, never in `Debug`.
macro_rules! shown_once {
    ($name:ident, $field:literal) => {
        impl core::fmt::Debug for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.debug_struct(stringify!($name))
                    .field($field, &self.record())
                    .field("token", &"<redacted>")
                    .finish()
            }
        }

        impl Drop for $name {
            fn drop(&mut self) {
                zeroize::Zeroize::zeroize(&mut self.token);
            }
        }
    };
}

/// `PT_CREATE`: the PT's record and its text, shown this once.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PtCreated {
    /// The PT's record.
    pub pt: PtRecord,
    /// The PT (`tspt_…`): the server keeps only its verifier.
    pub token: String,
}

impl PtCreated {
    fn record(&self) -> &PtRecord {
        &self.pt
    }
}

shown_once!(PtCreated, "pt");

/// `PT_BATCH`'s final answer: the batch is committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PtBatchDone {
    /// The batch id recorded on every PT of the batch.
    pub batch_id: String,
    /// How many PTs were created.
    pub count: u64,
}

/// `PT_LIST`: one page, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PtPage {
    /// The PTs.
    pub pts: Vec<PtRecord>,
    /// The cursor of the next page (`before`), null on the last.
    pub next: Option<String>,
}

/// `PT_SHOW`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PtShown {
    /// The PT.
    pub pt: PtRecord,
}

/// `PT_REVOKE`, `DEVICE_REVOKE` and `DEVICE_BLOCK`: how many registrations were revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Revoked {
    /// Registrations revoked by this request.
    pub registrations_revoked: u64,
}

/// What a technician weighs about an operation's PT: how full it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PtFill {
    /// The PT's label.
    pub label: String,
    /// Registrations it has created.
    pub registrations_created: u64,
    /// A fleet PT's cap (absent for a single-device PT).
    pub max_registrations: Option<u64>,
}

/// `OP_LIST`: one page, newest first, with the PTs of its operations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OperationPage {
    /// The operations.
    pub operations: Vec<OperationRecord>,
    /// The cursor of the next page (`before`), null on the last.
    pub next: Option<String>,
    /// The page's PTs by id.
    pub pts: BTreeMap<String, PtFill>,
}

/// `OP_SHOW`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OperationShown {
    /// The operation, in its state now.
    pub operation: OperationRecord,
}

/// `OP_APPROVE`: the registration the approval created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Approved {
    /// The new registration.
    pub registration: RegistrationRecord,
}

/// `OP_REJECT` and `KEYS_RETIRE`: done, nothing to tell.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Done {}

/// `DEVICE_LIST`: one page, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RegistrationPage {
    /// The registrations.
    pub registrations: Vec<RegistrationRecord>,
    /// The cursor of the next page (`before`), null on the last.
    pub next: Option<u64>,
}

/// `DEVICE_SHOW`: a device id's registrations, and its block if it is blocked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceShown {
    /// Every registration of the device id, newest first.
    pub registrations: Vec<RegistrationRecord>,
    /// The block, when the device id is blocked.
    pub blocked: Option<BlockRecord>,
}

/// `DEVICE_UNBLOCK`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Unblocked {
    /// The device id was blocked until now.
    pub was_blocked: bool,
}

/// `AUDIT`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditPage {
    /// The events, oldest first.
    pub events: Vec<AuditEvent>,
}

/// `LEAKS`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LeakPage {
    /// The signals, oldest first.
    pub signals: Vec<LeakSignal>,
}

/// `REVOCATIONS`: registrations revoked after the cursor, and the cursor to ask from next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RevocationPage {
    /// Registration ids, oldest revocation first.
    pub revocations: Vec<u64>,
    /// The `after` of the next request.
    pub cursor: u64,
}

/// `KEYS_ROTATE`: the new current epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Rotated {
    /// The new epoch.
    pub epoch: u32,
}

/// `KEYS_LIST`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Epochs {
    /// Every epoch, oldest first.
    pub epochs: Vec<KeyEpochInfo>,
}

/// `TOKEN_CREATE`: the token's record and its text, shown this once.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenCreated {
    /// The token's record.
    pub admin_token: AdminTokenRecord,
    /// The admin token (`tsat_…`): the server keeps only its verifier.
    pub token: String,
}

impl TokenCreated {
    fn record(&self) -> &AdminTokenRecord {
        &self.admin_token
    }
}

shown_once!(TokenCreated, "admin_token");

/// `TOKEN_LIST`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = TokenList))]
pub struct AdminTokens {
    /// Every admin token.
    pub admin_tokens: Vec<AdminTokenRecord>,
}

/// `TOKEN_REVOKE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenRevoked {
    /// The token was live until now.
    pub revoked: bool,
}
