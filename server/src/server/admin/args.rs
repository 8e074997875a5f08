//! The arguments of each admin request, as both front ends take them: the QUIC endpoint's
//! `args` object and the HTTPS API's body or query string. Each refuses fields it does not
//! name. The HTTPS API's OpenAPI document is generated from these types.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Arguments of a request that takes none (STATUS, KEYS_ROTATE, KEYS_LIST, TOKEN_LIST).
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NoArgs {}

#[derive(Deserialize, Default, Serialize, IntoParams)]
#[serde(deny_unknown_fields, default)]
#[into_params(parameter_in = Query)]
pub(crate) struct PtListArgs {
    /// At most this many, newest first (1–1,000; 0 or absent: 100).
    pub(crate) limit: usize,
    /// Revoked PTs too.
    pub(crate) include_revoked: bool,
    /// The `next` of the previous page: the PTs after it.
    pub(crate) before: Option<String>,
}

#[derive(Deserialize, Default, Serialize, IntoParams)]
#[serde(deny_unknown_fields, default)]
#[into_params(parameter_in = Query)]
pub(crate) struct OpListArgs {
    /// At most this many, newest first (1–1,000; 0 or absent: 100).
    pub(crate) limit: usize,
    /// Only operations in this state (`pending`, `approved`, `completed`, `rejected`,
    /// `expired`, `cancelled`).
    pub(crate) state: Option<String>,
    /// Only operations of this PT.
    pub(crate) pt_id: Option<String>,
    /// The `next` of the previous page: the operations after it.
    pub(crate) before: Option<String>,
}

#[derive(Deserialize, Default, Serialize, IntoParams)]
#[serde(deny_unknown_fields, default)]
#[into_params(parameter_in = Query)]
pub(crate) struct DeviceListArgs {
    /// At most this many, newest first (1–1,000; 0 or absent: 100).
    pub(crate) limit: usize,
    /// Only registrations of this device id.
    pub(crate) device_id: Option<String>,
    /// Only registrations made through this PT.
    pub(crate) pt_id: Option<String>,
    /// Only registrations whose RTs validate.
    pub(crate) active_only: bool,
    /// The `next` of the previous page: the registrations after it.
    pub(crate) before: Option<u64>,
}

#[derive(Deserialize, Default, Serialize, IntoParams)]
#[serde(deny_unknown_fields, default)]
#[into_params(parameter_in = Query)]
pub(crate) struct AuditArgs {
    pub(crate) limit: usize,
    pub(crate) after: u64,
    pub(crate) newest: bool,
}

#[derive(Deserialize, Default, Serialize, IntoParams)]
#[serde(deny_unknown_fields, default)]
#[into_params(parameter_in = Query)]
pub(crate) struct LeaksArgs {
    pub(crate) limit: usize,
    pub(crate) after: u64,
}

/// INTROSPECT on the admin endpoint (a service token).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RtArgs {
    pub(crate) rt: String,
}

impl Drop for RtArgs {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.rt);
    }
}

/// REVOCATIONS: where to start, how many at most, how long to wait for one.
#[derive(Deserialize, Default, Serialize, IntoParams)]
#[serde(deny_unknown_fields, default)]
#[into_params(parameter_in = Query)]
pub(crate) struct RevocationsArgs {
    pub(crate) after: Option<u64>,
    pub(crate) limit: Option<usize>,
    pub(crate) wait_ms: u64,
}

/// PT_SHOW, OP_SHOW, TOKEN_REVOKE.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct IdArgs {
    pub(crate) id: String,
}

/// PT_REVOKE, OP_REJECT.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct IdReasonArgs {
    pub(crate) id: String,
    #[serde(default)]
    pub(crate) reason: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ApproveArgs {
    pub(crate) id: String,
    #[serde(default)]
    pub(crate) code: Option<String>,
    #[serde(default)]
    pub(crate) device_id: Option<String>,
    #[serde(default)]
    pub(crate) rt_lifetime_secs: Option<u64>,
    #[serde(default)]
    pub(crate) reassign: bool,
}

/// DEVICE_REVOKE.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeviceRevokeArgs {
    #[serde(default)]
    pub(crate) device_id: Option<String>,
    #[serde(default)]
    pub(crate) registration_id: Option<u64>,
    #[serde(default)]
    pub(crate) reason: Option<String>,
}

/// DEVICE_SHOW, DEVICE_UNBLOCK.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeviceIdArgs {
    #[serde(default)]
    pub(crate) device_id: Option<String>,
}

/// DEVICE_BLOCK.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeviceBlockArgs {
    #[serde(default)]
    pub(crate) device_id: Option<String>,
    #[serde(default)]
    pub(crate) reason: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TokenArgs {
    pub(crate) name: String,
    pub(crate) role: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct EpochArgs {
    pub(crate) epoch: u32,
}
