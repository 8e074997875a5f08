//! The domain model. The records the store keeps and the admin protocol shows (PTs and their
//! policies, operations, registrations, audit events, leak signals, admin tokens, blocks), the
//! ids, device ids, attributes and their limits are defined in `tessera-proto` and re-exported
//! here; what only the engine uses (what a PT is made from, who acted) is defined here.

use serde::{Deserialize, Serialize};

use crate::error::InputError;
use crate::time::Timestamp;

pub use tessera_proto::admin::records::{
    AdminRole, AdminTokenRecord, ApprovalPolicy, AttributeCondition, AttributeRule, AuditEvent,
    BlockRecord, DeviceIdPolicy, LeakKind, LeakSignal, NonceDigest, OperationRecord,
    OperationState, PtKind, PtRecord, RegistrationRecord, RegistrationStatus, ReplacedRegistration,
};
pub use tessera_proto::ids::{
    limits, AdminTokenId, Attributes, DeviceId, OperationId, PtId, RegistrationId,
};

/// Check a label, actor name or reason: at most 128 characters, no control characters (the
/// rule the API document states as `maxLength` and a pattern).
pub(crate) fn check_label(field: &'static str, s: &str) -> Result<(), InputError> {
    if s.chars().count() > limits::LABEL_MAX {
        return Err(InputError::new(field, "longer than 128 characters"));
    }
    if s.chars().any(char::is_control) {
        return Err(InputError::new(field, "contains control characters"));
    }
    Ok(())
}

/// What to create a PT with.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct PtSpec {
    /// Free text for operators (at most 128 characters).
    pub label: String,
    /// Single-device or fleet.
    pub kind: PtKind,
    /// Who approves.
    pub approval: ApprovalPolicy,
    /// Lifetime of RTs issued through this PT (bounded by the engine's maximum).
    pub rt_lifetime: std::time::Duration,
    /// Who chooses device ids.
    pub device_id_policy: DeviceIdPolicy,
    /// When the PT stops being accepted; `None` for never.
    pub expires_at: Option<Timestamp>,
}

impl PtSpec {
    /// A single-device PT with manual approval, 30-day RTs, device-chosen ids, no expiry.
    pub fn new(label: impl Into<String>) -> Self {
        Self {
            label: label.into(),
            kind: PtKind::SingleDevice,
            approval: ApprovalPolicy::Manual,
            rt_lifetime: std::time::Duration::from_secs(30 * 86_400),
            device_id_policy: DeviceIdPolicy::Either,
            expires_at: None,
        }
    }
}

impl TryFrom<&tessera_proto::admin::requests::PtArgs> for PtSpec {
    type Error = InputError;

    /// A PT's specification from the arguments of `PT_CREATE` and `PT_BATCH`, with the
    /// documented defaults (single device, manual approval, 30-day RTs, device ids from either
    /// side, no expiry). Every front end and embedder (the Python bindings) takes PT arguments
    /// through this one function.
    fn try_from(a: &tessera_proto::admin::requests::PtArgs) -> Result<Self, InputError> {
        if a.max_registrations == Some(0) {
            return Err(InputError::new("max_registrations", "must be at least 1"));
        }
        let kind = match a.kind.as_deref().unwrap_or("single") {
            "single" => PtKind::SingleDevice,
            "fleet" => PtKind::Fleet {
                max_registrations: a.max_registrations.ok_or(InputError::new(
                    "max_registrations",
                    "required for fleet PTs",
                ))?,
            },
            _ => return Err(InputError::new("kind", "expected single or fleet")),
        };
        // A rule given is checked whatever the policy, so that a malformed one is never stored
        // silently unused.
        let rule: Option<AttributeRule> = a.rule.as_deref().map(str::parse).transpose()?;
        let approval = match a.approval.as_deref().unwrap_or("manual") {
            "manual" => ApprovalPolicy::Manual,
            "manual_with_code" | "code" => ApprovalPolicy::ManualWithCode,
            "automatic" => ApprovalPolicy::Automatic,
            "rule" => ApprovalPolicy::AttributeRule(
                rule.ok_or(InputError::new("rule", "required for the rule policy"))?,
            ),
            _ => {
                return Err(InputError::new(
                    "approval",
                    "expected manual, manual_with_code, automatic or rule",
                ))
            }
        };
        let device_id_policy = match a.device_id_policy.as_deref().unwrap_or("either") {
            "device" => DeviceIdPolicy::Device,
            "technician" => DeviceIdPolicy::Technician,
            "either" => DeviceIdPolicy::Either,
            _ => {
                return Err(InputError::new(
                    "device_id_policy",
                    "expected device, technician or either",
                ))
            }
        };
        Ok(Self {
            label: a.label.clone(),
            kind,
            approval,
            rt_lifetime: std::time::Duration::from_secs(a.rt_lifetime_secs.unwrap_or(30 * 86_400)),
            device_id_policy,
            expires_at: a.expires_at_ms.map(Timestamp::from_unix_millis),
        })
    }
}

/// Who asked for a change, for the audit log.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Actor {
    /// `device`, `operator:<name>` or `system`.
    pub name: String,
    /// Network address, if known.
    pub source: Option<String>,
}

impl Actor {
    /// The name of every device actor.
    pub const DEVICE: &'static str = "device";

    /// A device, optionally with its address.
    pub fn device(source: Option<String>) -> Self {
        Self {
            name: Self::DEVICE.into(),
            source,
        }
    }
    /// A named operator (technician or admin).
    pub fn operator(name: &str) -> Self {
        Self {
            name: format!("operator:{name}"),
            source: None,
        }
    }
    /// The same actor, acting from `source` (a network address).
    pub fn from_source(mut self, source: impl Into<String>) -> Self {
        self.source = Some(source.into());
        self
    }
    /// The engine itself (sweeps, automatic policies).
    pub fn system() -> Self {
        Self {
            name: "system".into(),
            source: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn attribute_rules() {
        let rule: AttributeRule = "model=TX-7; serial^=SN26".parse().unwrap();
        let mut m = BTreeMap::new();
        m.insert("model".to_string(), "TX-7".to_string());
        m.insert("serial".to_string(), "SN26-0001".to_string());
        assert!(rule.matches(&Attributes::new(m.clone()).unwrap()));
        m.insert("serial".to_string(), "SN25-0001".to_string());
        assert!(!rule.matches(&Attributes::new(m).unwrap()));
        assert!("".parse::<AttributeRule>().is_err());
        assert!("novalue".parse::<AttributeRule>().is_err());
    }
}
