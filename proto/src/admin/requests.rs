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

// The rules the server applies to the arguments, as the API document states them (utoipa
// attributes need literals, so they are written out where they are used):
//   an id: `pt_`/`at_` and 27 base64url characters, `op_` and 22, the last one carrying no
//   bits beyond the id's bytes; a device id: 1–64 of `A-Z a-z 0-9 . _ : -`; a label, name or
//   reason: at most 128 characters, none a control character; a page: 1–1,000 (0: 100).

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

/// Requests whose only argument is an `id`, with its schema's name and the id's pattern.
macro_rules! id_args {
    ($($(#[$doc:meta])* $name:ident as $schema:ident, $pattern:literal;)*) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = $schema))]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            /// The id.
            #[cfg_attr(feature = "openapi", schema(pattern = $pattern))]
            pub id: String,
        }
    )*};
}

id_args! {
    /// `PT_SHOW`: one PT.
    PtShow as PtIdArgs, "^pt_[A-Za-z0-9_-]{26}[AEIMQUYcgkosw048]$";
    /// `OP_SHOW`: one operation (technician).
    OpShow as OpIdArgs, "^op_[A-Za-z0-9_-]{21}[AQgw]$";
    /// `TOKEN_REVOKE`: revoke an admin token.
    TokenRevoke as TokenIdArgs, "^at_[A-Za-z0-9_-]{26}[AEIMQUYcgkosw048]$";
}

/// Requests that name an `id` and give a `reason`, with their schema's name and the id's
/// pattern.
macro_rules! id_reason_args {
    ($($(#[$doc:meta])* $name:ident as $schema:ident, $pattern:literal;)*) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = $schema))]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            /// The id.
            #[cfg_attr(feature = "openapi", schema(pattern = $pattern))]
            pub id: String,
            /// Why (recorded in the audit log; "no reason given" when absent).
            #[serde(default)]
            #[cfg_attr(feature = "openapi", schema(max_length = 128, pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$"))]
            pub reason: Option<String>,
        }
    )*};
}

id_reason_args! {
    /// `PT_REVOKE`: revoke a PT and every registration it produced.
    PtRevoke as PtRevokeArgs, "^pt_[A-Za-z0-9_-]{26}[AEIMQUYcgkosw048]$";
    /// `OP_REJECT`: reject an operation (technician).
    OpReject as OpRejectArgs, "^op_[A-Za-z0-9_-]{21}[AQgw]$";
}

/// What a PT is made with: the arguments of `PT_CREATE` and `PT_BATCH`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PtArgs {
    /// Label.
    #[cfg_attr(
        feature = "openapi",
        schema(max_length = 128, pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$")
    )]
    pub label: String,
    /// `single` (default) or `fleet`.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(pattern = "^(single|fleet)$"))]
    pub kind: Option<String>,
    /// Cap for fleet PTs (required with `kind` `fleet`).
    #[serde(default, deserialize_with = "super::whole::opt")]
    #[cfg_attr(
        feature = "openapi",
        schema(minimum = 1, maximum = 9223372036854775807_u64)
    )]
    pub max_registrations: Option<u64>,
    /// `manual` (default), `manual_with_code` (or `code`), `automatic`, or `rule`.
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = "^(manual|manual_with_code|code|automatic|rule)$")
    )]
    pub approval: Option<String>,
    /// The attribute rule when `approval` is `rule` (required then): 1–16 conditions
    /// `key=value` or `key^=prefix`, separated by `;`.
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(
            pattern = "^ *[a-z0-9._-]{1,32} *\\^?=[^;^]*(; *[a-z0-9._-]{1,32} *\\^?=[^;^]*){0,15}$"
        )
    )]
    pub rule: Option<String>,
    /// RT lifetime in seconds (default 30 days; at least 60, at most the server's maximum, a
    /// year unless configured otherwise).
    #[serde(default, deserialize_with = "super::whole::opt")]
    #[cfg_attr(feature = "openapi", schema(minimum = 60, maximum = 31536000))]
    pub rt_lifetime_secs: Option<u64>,
    /// `device`, `technician` or `either` (default).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(pattern = "^(device|technician|either)$"))]
    pub device_id_policy: Option<String>,
    /// Expiry, Unix milliseconds.
    #[serde(default, deserialize_with = "super::whole::opt")]
    #[cfg_attr(
        feature = "openapi",
        schema(minimum = 0, maximum = 9223372036854775807_u64)
    )]
    pub expires_at_ms: Option<u64>,
    /// For `PT_BATCH`: how many (1–10,000,000 on the QUIC admin endpoint; at most 10,000 a
    /// request over HTTPS). `PT_CREATE` ignores it.
    #[serde(default, deserialize_with = "super::whole::opt")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 10000))]
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
    #[serde(deserialize_with = "super::whole::query_num")]
    #[cfg_attr(feature = "openapi", param(minimum = 0, maximum = 1000))]
    pub limit: usize,
    /// Revoked PTs too.
    pub include_revoked: bool,
    /// The `next` of the previous page: the PTs after it.
    #[cfg_attr(
        feature = "openapi",
        param(pattern = "^[0-9]{1,15}\\.pt_[A-Za-z0-9_-]{26}[AEIMQUYcgkosw048]$")
    )]
    pub before: Option<String>,
}

/// `OP_LIST`: one page of operations, newest first (technician).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
#[serde(deny_unknown_fields, default)]
pub struct OpList {
    /// At most this many, newest first (1–1,000; 0 or absent: 100).
    #[serde(deserialize_with = "super::whole::query_num")]
    #[cfg_attr(feature = "openapi", param(minimum = 0, maximum = 1000))]
    pub limit: usize,
    /// Only operations in this state (`pending`, `approved`, `completed`, `rejected`,
    /// `expired`, `cancelled`).
    #[cfg_attr(
        feature = "openapi",
        param(pattern = "^(pending|approved|completed|rejected|expired|cancelled)$")
    )]
    pub state: Option<String>,
    /// Only operations of this PT.
    #[cfg_attr(
        feature = "openapi",
        param(pattern = "^pt_[A-Za-z0-9_-]{26}[AEIMQUYcgkosw048]$")
    )]
    pub pt_id: Option<String>,
    /// The `next` of the previous page: the operations after it.
    #[cfg_attr(
        feature = "openapi",
        param(pattern = "^[0-9]{1,15}\\.op_[A-Za-z0-9_-]{21}[AQgw]$")
    )]
    pub before: Option<String>,
}

/// `OP_APPROVE`: approve an operation (technician).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = ApproveArgs))]
#[serde(deny_unknown_fields)]
pub struct OpApprove {
    /// The operation.
    #[cfg_attr(feature = "openapi", schema(pattern = "^op_[A-Za-z0-9_-]{21}[AQgw]$"))]
    pub id: String,
    /// The verification code read off the device, when its PT's policy uses one.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_length = 64))]
    pub code: Option<String>,
    /// The device id to register (within the PT's device-id policy).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(pattern = "^[A-Za-z0-9._:-]{1,64}$"))]
    pub device_id: Option<String>,
    /// The RT lifetime in seconds, at most the PT's.
    #[serde(default, deserialize_with = "super::whole::opt")]
    #[cfg_attr(feature = "openapi", schema(minimum = 60, maximum = 31536000))]
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
    #[serde(deserialize_with = "super::whole::query_num")]
    #[cfg_attr(feature = "openapi", param(minimum = 0, maximum = 1000))]
    pub limit: usize,
    /// Only registrations of this device id.
    #[cfg_attr(feature = "openapi", param(pattern = "^[A-Za-z0-9._:-]{1,64}$"))]
    pub device_id: Option<String>,
    /// Only registrations made through this PT.
    #[cfg_attr(
        feature = "openapi",
        param(pattern = "^pt_[A-Za-z0-9_-]{26}[AEIMQUYcgkosw048]$")
    )]
    pub pt_id: Option<String>,
    /// Only registrations whose RTs validate.
    pub active_only: bool,
    /// The `next` of the previous page: the registrations after it.
    #[serde(deserialize_with = "super::whole::query_opt")]
    #[cfg_attr(
        feature = "openapi",
        param(minimum = 0, maximum = 9223372036854775807_u64)
    )]
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
            #[cfg_attr(feature = "openapi", schema(value_type = String, required = true, nullable = false, pattern = "^[A-Za-z0-9._:-]{1,64}$"))]
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
    #[cfg_attr(feature = "openapi", schema(pattern = "^[A-Za-z0-9._:-]{1,64}$"))]
    pub device_id: Option<String>,
    /// This registration (takes precedence over `device_id`).
    #[serde(default, deserialize_with = "super::whole::opt")]
    #[cfg_attr(
        feature = "openapi",
        schema(minimum = 0, maximum = 9223372036854775807_u64)
    )]
    pub registration_id: Option<u64>,
    /// Why.
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(max_length = 128, pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$")
    )]
    pub reason: Option<String>,
}

/// `DEVICE_BLOCK`: refuse a device id's provisioning, and revoke its registrations.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = DeviceBlockArgs))]
#[serde(deny_unknown_fields)]
pub struct DeviceBlock {
    /// The device id (required).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = String, required = true, nullable = false, pattern = "^[A-Za-z0-9._:-]{1,64}$"))]
    pub device_id: Option<String>,
    /// Why.
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(max_length = 128, pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$")
    )]
    pub reason: Option<String>,
}

/// `AUDIT`: audit events after a sequence number, or the newest ones.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
#[serde(deny_unknown_fields, default)]
pub struct Audit {
    /// At most this many (1–1,000; 0: 100).
    #[serde(deserialize_with = "super::whole::query_num")]
    #[cfg_attr(feature = "openapi", param(minimum = 0, maximum = 1000))]
    pub limit: usize,
    /// Events after this sequence number.
    #[serde(deserialize_with = "super::whole::query_num")]
    #[cfg_attr(
        feature = "openapi",
        param(minimum = 0, maximum = 9223372036854775807_u64)
    )]
    pub after: u64,
    /// The newest events (ignoring `after`), oldest first.
    pub newest: bool,
}

/// `LEAKS`: leak signals after an id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
#[serde(deny_unknown_fields, default)]
pub struct Leaks {
    /// At most this many (1–1,000; 0: 100).
    #[serde(deserialize_with = "super::whole::query_num")]
    #[cfg_attr(feature = "openapi", param(minimum = 0, maximum = 1000))]
    pub limit: usize,
    /// Signals after this id.
    #[serde(deserialize_with = "super::whole::query_num")]
    #[cfg_attr(
        feature = "openapi",
        param(minimum = 0, maximum = 9223372036854775807_u64)
    )]
    pub after: u64,
}

/// `REVOCATIONS`: where to start, how many at most, how long to wait for one (service).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
#[serde(deny_unknown_fields, default)]
pub struct Revocations {
    /// The cursor of the previous answer (absent: from the newest change).
    #[serde(deserialize_with = "super::whole::query_opt")]
    #[cfg_attr(
        feature = "openapi",
        param(minimum = 0, maximum = 9223372036854775807_u64)
    )]
    pub after: Option<u64>,
    /// At most this many (1–4,096; absent: 1,000).
    #[serde(deserialize_with = "super::whole::query_opt")]
    #[cfg_attr(feature = "openapi", param(minimum = 1, maximum = 4096))]
    pub limit: Option<usize>,
    /// Wait up to this long for a revocation when there is none yet (at most 30,000).
    #[serde(deserialize_with = "super::whole::query_num")]
    #[cfg_attr(feature = "openapi", param(minimum = 0, maximum = 30000))]
    pub wait_ms: u64,
}

/// `INTROSPECT` on the admin endpoint (service): what a valid RT says about its device.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = RtArgs))]
#[serde(deny_unknown_fields)]
pub struct Introspect {
    /// The RT (`tsrt_…`).
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = "^tsrt_[A-Za-z0-9_-]+$", max_length = 512)
    )]
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
    #[serde(deserialize_with = "super::whole::num")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 4294967295_u64))]
    pub epoch: u32,
}

/// `TOKEN_CREATE`: an admin, technician or service token, its text shown once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = TokenArgs))]
#[serde(deny_unknown_fields)]
pub struct TokenCreate {
    /// Who holds it.
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 128,
            pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$"
        )
    )]
    pub name: String,
    /// `technician`, `admin` or `service`.
    #[cfg_attr(feature = "openapi", schema(pattern = "^(technician|admin|service)$"))]
    pub role: String,
}
