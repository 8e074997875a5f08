//! One type per admin request kind, with the fields its `args` object takes (docs/protocol.md).
//! Every type refuses fields it does not name; absent optional fields take their defaults. The
//! server decodes a request's `args` into its type, and clients build the type, so both sides
//! agree at compile time on every field.
//!
//! Ids stay text here: the server parses them, so that a malformed id is refused with the
//! field's name (error 5), as it always was.

use alloc::string::String;

use serde::{Deserialize, Serialize};

use super::answers::*;
use super::AdminRequest;
use crate::wire::kind;
use crate::wire::messages::IntrospectResp;

/// Tie a request type to its kind and answer.
macro_rules! request {
    ($($req:ty => $kind:ident, $answer:ty;)*) => {$(
        impl AdminRequest for $req {
            const KIND: u8 = kind::$kind;
            type Answer = $answer;
        }
    )*};
}

request! {
    Status => STATUS, StatusAnswer;
    PtCreate => PT_CREATE, PtCreated;
    PtBatch => PT_BATCH, PtBatchDone;
    PtList => PT_LIST, PtPage;
    PtShow => PT_SHOW, PtShown;
    PtRevoke => PT_REVOKE, Revoked;
    OpList => OP_LIST, OperationPage;
    OpShow => OP_SHOW, OperationShown;
    OpApprove => OP_APPROVE, Approved;
    OpReject => OP_REJECT, Done;
    DeviceList => DEVICE_LIST, RegistrationPage;
    DeviceShow => DEVICE_SHOW, DeviceShown;
    DeviceRevoke => DEVICE_REVOKE, Revoked;
    DeviceBlock => DEVICE_BLOCK, Revoked;
    DeviceUnblock => DEVICE_UNBLOCK, Unblocked;
    Audit => AUDIT, AuditPage;
    Leaks => LEAKS, LeakPage;
    Revocations => REVOCATIONS, RevocationPage;
    Introspect => INTROSPECT, IntrospectResp;
    KeysRotate => KEYS_ROTATE, Rotated;
    KeysList => KEYS_LIST, Epochs;
    KeysRetire => KEYS_RETIRE, Done;
    TokenCreate => TOKEN_CREATE, TokenCreated;
    TokenList => TOKEN_LIST, AdminTokens;
    TokenRevoke => TOKEN_REVOKE, TokenRevoked;
}

/// Requests without arguments.
macro_rules! no_args {
    ($($(#[$doc:meta])* $name:ident;)*) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = NoArgs))]
        #[serde(deny_unknown_fields)]
        pub struct $name {}
    )*};
}

no_args! {
    /// `STATUS`: the server's counters (technician).
    Status;
    /// `KEYS_ROTATE`: start a new key epoch.
    KeysRotate;
    /// `KEYS_LIST`: every key epoch.
    KeysList;
    /// `TOKEN_LIST`: every admin token.
    TokenList;
}

/// Requests whose only argument is an `id`.
macro_rules! id_args {
    ($($(#[$doc:meta])* $name:ident;)*) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = IdArgs))]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            /// The id (`pt_…`, `op_…` or `at_…`).
            pub id: String,
        }
    )*};
}

id_args! {
    /// `PT_SHOW`: one PT.
    PtShow;
    /// `OP_SHOW`: one operation (technician).
    OpShow;
    /// `TOKEN_REVOKE`: revoke an admin token.
    TokenRevoke;
}

/// Requests that name an `id` and give a `reason`.
macro_rules! id_reason_args {
    ($($(#[$doc:meta])* $name:ident;)*) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = IdReasonArgs))]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            /// The id.
            pub id: String,
            /// Why (recorded in the audit log; "no reason given" when absent).
            #[serde(default)]
            pub reason: Option<String>,
        }
    )*};
}

id_reason_args! {
    /// `PT_REVOKE`: revoke a PT and every registration it produced.
    PtRevoke;
    /// `OP_REJECT`: reject an operation (technician).
    OpReject;
}

/// What a PT is made with: the arguments of `PT_CREATE` and `PT_BATCH`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PtArgs {
    /// Label.
    pub label: String,
    /// `single` (default) or `fleet`.
    #[serde(default)]
    pub kind: Option<String>,
    /// Cap for fleet PTs.
    #[serde(default)]
    pub max_registrations: Option<u64>,
    /// `manual` (default), `manual_with_code`, `automatic`, or `rule`.
    #[serde(default)]
    pub approval: Option<String>,
    /// The attribute rule when `approval` is `rule`.
    #[serde(default)]
    pub rule: Option<String>,
    /// RT lifetime in seconds (default 30 days).
    #[serde(default)]
    pub rt_lifetime_secs: Option<u64>,
    /// `device`, `technician` or `either` (default).
    #[serde(default)]
    pub device_id_policy: Option<String>,
    /// Expiry, Unix milliseconds.
    #[serde(default)]
    pub expires_at_ms: Option<u64>,
    /// For `PT_BATCH`: how many.
    #[serde(default)]
    pub count: Option<u64>,
}

impl PtArgs {
    /// A PT labelled `label`, every other argument at its default.
    pub fn new(label: impl Into<String>) -> Self {
        Self {
            label: label.into(),
            ..Self::default()
        }
    }
}

/// `PT_CREATE`: one PT, its text shown once.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PtCreate(pub PtArgs);

/// `PT_BATCH`: `count` PTs at once, streamed as `pt_id<TAB>token` lines (all or nothing).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PtBatch(pub PtArgs);

/// `PT_LIST`: one page of PTs, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
#[serde(deny_unknown_fields, default)]
pub struct PtList {
    /// At most this many, newest first (1–1,000; 0 or absent: 100).
    pub limit: usize,
    /// Revoked PTs too.
    pub include_revoked: bool,
    /// The `next` of the previous page: the PTs after it.
    pub before: Option<String>,
}

/// `OP_LIST`: one page of operations, newest first (technician).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
#[serde(deny_unknown_fields, default)]
pub struct OpList {
    /// At most this many, newest first (1–1,000; 0 or absent: 100).
    pub limit: usize,
    /// Only operations in this state (`pending`, `approved`, `completed`, `rejected`,
    /// `expired`, `cancelled`).
    pub state: Option<String>,
    /// Only operations of this PT.
    pub pt_id: Option<String>,
    /// The `next` of the previous page: the operations after it.
    pub before: Option<String>,
}

/// `OP_APPROVE`: approve an operation (technician).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = ApproveArgs))]
#[serde(deny_unknown_fields)]
pub struct OpApprove {
    /// The operation.
    pub id: String,
    /// The verification code read off the device, when its PT's policy uses one.
    #[serde(default)]
    pub code: Option<String>,
    /// The device id to register (within the PT's device-id policy).
    #[serde(default)]
    pub device_id: Option<String>,
    /// The RT lifetime in seconds, at most the PT's.
    #[serde(default)]
    pub rt_lifetime_secs: Option<u64>,
    /// Take the device id over from a registration under another PT.
    #[serde(default)]
    pub reassign: bool,
}

impl core::fmt::Debug for OpApprove {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // The code proves presence at the device: not for logs.
        f.debug_struct("OpApprove")
            .field("id", &self.id)
            .field("code", &self.code.as_ref().map(|_| "<redacted>"))
            .field("device_id", &self.device_id)
            .field("rt_lifetime_secs", &self.rt_lifetime_secs)
            .field("reassign", &self.reassign)
            .finish()
    }
}

impl Drop for OpApprove {
    fn drop(&mut self) {
        if let Some(c) = self.code.as_mut() {
            zeroize::Zeroize::zeroize(c);
        }
    }
}

/// `DEVICE_LIST`: one page of registrations, newest first (technician).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
#[serde(deny_unknown_fields, default)]
pub struct DeviceList {
    /// At most this many, newest first (1–1,000; 0 or absent: 100).
    pub limit: usize,
    /// Only registrations of this device id.
    pub device_id: Option<String>,
    /// Only registrations made through this PT.
    pub pt_id: Option<String>,
    /// Only registrations whose RTs validate.
    pub active_only: bool,
    /// The `next` of the previous page: the registrations after it.
    pub before: Option<u64>,
}

/// Requests whose only argument is a `device_id`.
macro_rules! device_id_args {
    ($($(#[$doc:meta])* $name:ident;)*) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = DeviceIdArgs))]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            /// The device id (required).
            #[serde(default)]
            pub device_id: Option<String>,
        }
    )*};
}

device_id_args! {
    /// `DEVICE_SHOW`: a device id's registrations, and its block (technician).
    DeviceShow;
    /// `DEVICE_UNBLOCK`: let a device id provision again.
    DeviceUnblock;
}

/// `DEVICE_REVOKE`: revoke one registration, or every active registration of a device id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = DeviceRevokeArgs))]
#[serde(deny_unknown_fields)]
pub struct DeviceRevoke {
    /// Every active registration of this device id.
    #[serde(default)]
    pub device_id: Option<String>,
    /// This registration (takes precedence over `device_id`).
    #[serde(default)]
    pub registration_id: Option<u64>,
    /// Why.
    #[serde(default)]
    pub reason: Option<String>,
}

/// `DEVICE_BLOCK`: refuse a device id's provisioning, and revoke its registrations.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = DeviceBlockArgs))]
#[serde(deny_unknown_fields)]
pub struct DeviceBlock {
    /// The device id (required).
    #[serde(default)]
    pub device_id: Option<String>,
    /// Why.
    #[serde(default)]
    pub reason: Option<String>,
}

/// `AUDIT`: audit events after a sequence number, or the newest ones.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
#[serde(deny_unknown_fields, default)]
pub struct Audit {
    /// At most this many (0: 100).
    pub limit: usize,
    /// Events after this sequence number.
    pub after: u64,
    /// The newest events (ignoring `after`), oldest first.
    pub newest: bool,
}

/// `LEAKS`: leak signals after an id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
#[serde(deny_unknown_fields, default)]
pub struct Leaks {
    /// At most this many (0: 100).
    pub limit: usize,
    /// Signals after this id.
    pub after: u64,
}

/// `REVOCATIONS`: where to start, how many at most, how long to wait for one (service).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
#[serde(deny_unknown_fields, default)]
pub struct Revocations {
    /// The cursor of the previous answer (absent: from the newest change).
    pub after: Option<u64>,
    /// At most this many (1–4,096; absent: 1,000).
    pub limit: Option<usize>,
    /// Wait up to this long for a revocation when there is none yet (at most 30,000).
    pub wait_ms: u64,
}

/// `INTROSPECT` on the admin endpoint (service): what a valid RT says about its device.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = RtArgs))]
#[serde(deny_unknown_fields)]
pub struct Introspect {
    /// The RT (`tsrt_…`).
    pub rt: String,
}

impl core::fmt::Debug for Introspect {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Introspect { rt: <redacted> }")
    }
}

impl Drop for Introspect {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.rt);
    }
}

/// `KEYS_RETIRE`: retire a key epoch at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = EpochArgs))]
#[serde(deny_unknown_fields)]
pub struct KeysRetire {
    /// The epoch.
    pub epoch: u32,
}

/// `TOKEN_CREATE`: an admin, technician or service token, its text shown once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = TokenArgs))]
#[serde(deny_unknown_fields)]
pub struct TokenCreate {
    /// Who holds it.
    pub name: String,
    /// `technician`, `admin` or `service`.
    pub role: String,
}
