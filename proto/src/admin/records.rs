//! The records of Tessera's domain as the admin protocol shows them: PTs and their policies,
//! provisioning operations, registrations, the audit log, leak signals, admin tokens, blocks,
//! key epochs and the server's counters. The engine keeps these records in its store and the
//! server answers with them, so a client reads exactly the type the server wrote.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::ids::{limits, AdminTokenId, Attributes, DeviceId, OperationId, PtId, RegistrationId};
use crate::time::Timestamp;
use crate::InputError;

/// How many registrations a PT may create.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum PtKind {
    /// One device. A new approval supersedes (revokes) the PT's previous registration.
    SingleDevice,
    /// A whole product line, capped at `max_registrations` registrations in total.
    Fleet {
        /// The cap on registrations this PT may ever create.
        max_registrations: u64,
    },
}

/// One condition of an [`AttributeRule`].
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum AttributeCondition {
    /// The attribute equals the value (`key=value`).
    Equals {
        /// Attribute key.
        key: String,
        /// Required value.
        value: String,
    },
    /// The attribute starts with the value (`key^=prefix`).
    Prefix {
        /// Attribute key.
        key: String,
        /// Required prefix.
        prefix: String,
    },
}

/// A rule that approves an operation automatically when every condition holds; otherwise the
/// operation waits for a technician as under [`ApprovalPolicy::Manual`].
///
/// Text form: conditions separated by `;`, each `key=value` or `key^=prefix`, for example
/// `model=TX-7;serial^=SN26`.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AttributeRule {
    /// All must hold.
    pub conditions: Vec<AttributeCondition>,
}

impl AttributeRule {
    /// Does the rule approve these attributes?
    pub fn matches(&self, attrs: &Attributes) -> bool {
        self.conditions.iter().all(|c| match c {
            AttributeCondition::Equals { key, value } => attrs.get(key) == Some(value.as_str()),
            AttributeCondition::Prefix { key, prefix } => attrs
                .get(key)
                .is_some_and(|v| v.starts_with(prefix.as_str())),
        })
    }
}

impl FromStr for AttributeRule {
    type Err = InputError;
    fn from_str(s: &str) -> Result<Self, InputError> {
        let mut conditions = Vec::new();
        for part in s.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let c = if let Some((k, v)) = part.split_once("^=") {
                AttributeCondition::Prefix {
                    key: k.trim().into(),
                    prefix: v.trim().into(),
                }
            } else if let Some((k, v)) = part.split_once('=') {
                AttributeCondition::Equals {
                    key: k.trim().into(),
                    value: v.trim().into(),
                }
            } else {
                return Err(InputError::new(
                    "attribute_rule",
                    "each condition is key=value or key^=prefix",
                ));
            };
            let (AttributeCondition::Equals { key, .. } | AttributeCondition::Prefix { key, .. }) =
                &c;
            crate::ids::check_attribute_key(key)
                .map_err(|_| InputError::new("attribute_rule", "bad attribute key"))?;
            conditions.push(c);
        }
        if conditions.is_empty() || conditions.len() > limits::ATTRIBUTES_MAX {
            return Err(InputError::new("attribute_rule", "needs 1-16 conditions"));
        }
        Ok(Self { conditions })
    }
}

/// Who or what approves a PT's provisioning operations.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(tag = "policy", rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ApprovalPolicy {
    /// A technician approves.
    Manual,
    /// A technician approves after typing the verification code shown on the device.
    ManualWithCode,
    /// Approved at once. For development and for factory lines that are physically secured.
    Automatic,
    /// Approved at once when the device's attributes satisfy the rule, otherwise manual.
    AttributeRule(AttributeRule),
}

impl ApprovalPolicy {
    /// Does this policy show a verification code?
    pub fn uses_code(&self) -> bool {
        matches!(self, ApprovalPolicy::ManualWithCode)
    }
}

/// Who chooses the device id of a new registration.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum DeviceIdPolicy {
    /// The device must request one when it begins the operation.
    Device,
    /// The technician sets it when approving.
    Technician,
    /// The technician's choice if given, else the device's request, else one derived from the
    /// operation id.
    Either,
}

/// A PT as the store keeps it (without its secret, which is never stored).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PtRecord {
    /// Public id.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    #[serde(with = "display_fromstr")]
    pub id: PtId,
    /// Free text.
    pub label: String,
    /// Single-device or fleet.
    pub kind: PtKind,
    /// Who approves.
    pub approval: ApprovalPolicy,
    /// RT lifetime, seconds.
    pub rt_lifetime_secs: u64,
    /// Who chooses device ids.
    pub device_id_policy: DeviceIdPolicy,
    /// Optional expiry.
    pub expires_at: Option<Timestamp>,
    /// Creation time.
    pub created_at: Timestamp,
    /// Set once revoked; revocation is irreversible.
    pub revoked_at: Option<Timestamp>,
    /// How many registrations it has created.
    pub registrations_created: u64,
    /// The batch it was created in, if any.
    pub batch: Option<String>,
}

/// The state of a provisioning operation. Terminal states are terminal.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum OperationState {
    /// Waiting for a decision.
    Pending,
    /// Approved; the RT is waiting to be collected.
    Approved,
    /// Approved and the RT collected by the device.
    Completed,
    /// Rejected by a technician, or by the engine after too many wrong codes.
    Rejected,
    /// Not decided before its expiry.
    Expired,
    /// Cancelled by the device, or because a sibling operation was approved.
    Cancelled,
}

impl OperationState {
    /// Stable name used in the store and on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Completed => "completed",
            Self::Rejected => "rejected",
            Self::Expired => "expired",
            Self::Cancelled => "cancelled",
        }
    }

    /// Parse the stable name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => Self::Pending,
            "approved" => Self::Approved,
            "completed" => Self::Completed,
            "rejected" => Self::Rejected,
            "expired" => Self::Expired,
            "cancelled" => Self::Cancelled,
            _ => return None,
        })
    }

    /// No further transitions are possible (approved may still become completed).
    pub fn is_terminal(self) -> bool {
        !matches!(self, Self::Pending | Self::Approved)
    }
}

impl fmt::Display for OperationState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A provisioning operation as the store keeps it.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OperationRecord {
    /// Id.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    #[serde(with = "display_fromstr")]
    pub id: OperationId,
    /// The PT that began it.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    #[serde(with = "display_fromstr")]
    pub pt_id: PtId,
    /// Current state as stored (see [`OperationRecord::effective_state`]).
    pub state: OperationState,
    /// A keyed hash of the device's instance nonce (`HMAC-SHA256(op_key[key_epoch], nonce)`).
    /// The nonce acts as a password (with the PT it resumes this operation and returns its
    /// secret), so the store keeps only this digest, in a column of its own: it is never
    /// serialised, shown or returned.
    #[serde(skip)]
    pub nonce_digest: NonceDigest,
    /// Device id the device asked for.
    pub requested_device_id: Option<DeviceId>,
    /// Attributes the device sent.
    pub attributes: Attributes,
    /// Whether approval needs the verification code.
    pub uses_code: bool,
    /// Wrong codes entered so far.
    pub code_failures: u32,
    /// Flagged because sibling operations from other instances were pending at the same time.
    pub conflict: bool,
    /// Key epoch of the operation secret and code.
    pub key_epoch: u32,
    /// Where the device connected from, if known.
    pub source: Option<String>,
    /// Creation time.
    pub created_at: Timestamp,
    /// Expiry of the pending state.
    pub expires_at: Timestamp,
    /// Who decided (approved, rejected, cancelled).
    pub decided_by: Option<String>,
    /// When it was decided.
    pub decided_at: Option<Timestamp>,
    /// Why it was rejected or cancelled.
    pub reason: Option<String>,
    /// The final device id, once approved.
    pub device_id: Option<DeviceId>,
    /// The registration created by approval.
    pub registration_id: Option<RegistrationId>,
    /// Active registrations of the requested device id when the operation began: approving
    /// it replaces them. Never approved automatically while non-empty; a replacement under
    /// another PT needs the technician's explicit `reassign`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replaces: Vec<ReplacedRegistration>,
}

/// The keyed digest of an operation's instance nonce (see [`OperationRecord::nonce_digest`]).
/// Its `Debug` shows nothing of it.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct NonceDigest(pub [u8; 32]);

impl fmt::Debug for NonceDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NonceDigest(..)")
    }
}

/// An active registration that approving an operation would replace.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReplacedRegistration {
    /// The registration.
    pub registration_id: RegistrationId,
    /// The PT it was provisioned through.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    #[serde(with = "display_fromstr")]
    pub pt_id: PtId,
}

impl OperationRecord {
    /// The state at `now`: a pending operation past its expiry is expired even before the
    /// engine's sweep has written that down.
    pub fn effective_state(&self, now: Timestamp) -> OperationState {
        if self.state == OperationState::Pending && now >= self.expires_at {
            OperationState::Expired
        } else {
            self.state
        }
    }
}

/// Whether a registration's RTs may be used.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum RegistrationStatus {
    /// RTs validate.
    Active,
    /// Revoked; irreversible.
    Revoked,
}

/// A registration (RT family) as the store keeps it.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RegistrationRecord {
    /// Id (carried in every RT).
    pub id: RegistrationId,
    /// The device's identity.
    pub device_id: DeviceId,
    /// The PT through which it was provisioned.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    #[serde(with = "display_fromstr")]
    pub pt_id: PtId,
    /// The approved operation that created it.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    #[serde(with = "display_fromstr")]
    pub operation_id: OperationId,
    /// Drawn at random at creation and carried in every RT of the registration, so that no RT
    /// validates as another registration with the same id (see `token::rt`). Not shown to
    /// operators.
    #[serde(default, skip_serializing)]
    pub binding: u32,
    /// Active or revoked.
    pub status: RegistrationStatus,
    /// Current generation.
    pub generation: u32,
    /// Key epoch of the current generation's RT.
    pub key_epoch: u32,
    /// Issue time of the current generation, Unix seconds.
    pub issued_at: u64,
    /// Expiry of the current generation, Unix seconds.
    pub expires_at: u64,
    /// Lifetime of each RT, seconds.
    pub lifetime_secs: u64,
    /// Creation time.
    pub created_at: Timestamp,
    /// Set once revoked.
    pub revoked_at: Option<Timestamp>,
    /// Why it was revoked.
    pub revoke_reason: Option<String>,
}

/// One audit event. Append-only; `seq` increases by one per event.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEvent {
    /// Sequence number.
    pub seq: u64,
    /// When.
    pub at: Timestamp,
    /// Who.
    pub actor: String,
    /// From where.
    pub source: Option<String>,
    /// What (`pt.create`, `operation.approve`, `registration.revoke`, …).
    pub action: String,
    /// On what (a PT, operation or registration id, a device id).
    pub subject: String,
    /// Details, as JSON. Never contains secrets.
    pub detail: serde_json::Value,
}

/// The kinds of leak signal.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum LeakKind {
    /// Several instances ran operations on one single-device PT (or for one device id) at once.
    ParallelOperations,
    /// An RT generation was refreshed twice (outside the retry grace).
    RotationReuse,
    /// A revoked PT or RT was presented.
    RevokedTokenUse,
    /// Too many wrong verification codes on one operation.
    CodeGuessing,
    /// One RT seen from many addresses (raised by the server).
    ManySources,
    /// An operation asked for a device id that has an active registration: it was held for a
    /// technician instead of being approved automatically, or the registration belongs to
    /// another PT.
    DeviceIdCollision,
}

impl LeakKind {
    /// Stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ParallelOperations => "parallel_operations",
            Self::RotationReuse => "rotation_reuse",
            Self::RevokedTokenUse => "revoked_token_use",
            Self::CodeGuessing => "code_guessing",
            Self::ManySources => "many_sources",
            Self::DeviceIdCollision => "device_id_collision",
        }
    }

    /// Parse the stable name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "parallel_operations" => Self::ParallelOperations,
            "rotation_reuse" => Self::RotationReuse,
            "revoked_token_use" => Self::RevokedTokenUse,
            "code_guessing" => Self::CodeGuessing,
            "many_sources" => Self::ManySources,
            "device_id_collision" => Self::DeviceIdCollision,
            _ => return None,
        })
    }
}

/// A suspected leak, shown to operators.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LeakSignal {
    /// Sequence number.
    pub id: u64,
    /// When it was raised.
    pub at: Timestamp,
    /// What kind.
    pub kind: LeakKind,
    /// The PT involved, if any.
    pub pt_id: Option<String>,
    /// The registration involved, if any.
    pub registration_id: Option<RegistrationId>,
    /// The operation involved, if any.
    pub operation_id: Option<String>,
    /// Where it came from.
    pub source: Option<String>,
    /// What the engine did about it (`flagged`, `revoked_registration`, `revoked_pt`, …).
    pub action: String,
    /// Human-readable detail; never contains secrets.
    pub detail: String,
}

/// What an admin token may do.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum AdminRole {
    /// List, show, approve and reject operations; list and show devices.
    Technician,
    /// Everything.
    Admin,
    /// A service that checks RTs (an MQTT broker's validator): introspect RTs and follow
    /// revocations, nothing else.
    Service,
}

impl AdminRole {
    /// Stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Technician => "technician",
            Self::Admin => "admin",
            Self::Service => "service",
        }
    }
}

impl FromStr for AdminRole {
    type Err = InputError;
    fn from_str(s: &str) -> Result<Self, InputError> {
        match s {
            "technician" => Ok(Self::Technician),
            "admin" => Ok(Self::Admin),
            "service" => Ok(Self::Service),
            _ => Err(InputError::new(
                "role",
                "expected technician, admin or service",
            )),
        }
    }
}

/// An admin token as the store keeps it (the secret is never stored).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AdminTokenRecord {
    /// Public id (`at_…`).
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    #[serde(with = "display_fromstr")]
    pub id: AdminTokenId,
    /// Who holds it; recorded as the actor of every change made with it.
    pub name: String,
    /// What it may do.
    pub role: AdminRole,
    /// Creation time.
    pub created_at: Timestamp,
    /// Set once revoked.
    pub revoked_at: Option<Timestamp>,
}

/// A blocked device id.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BlockRecord {
    /// The blocked id.
    pub device_id: DeviceId,
    /// When.
    pub at: Timestamp,
    /// By whom.
    pub by: String,
    /// Why.
    pub reason: String,
}

/// Serde adapter for ids that have `Display` + `FromStr`: their text form in JSON
/// (`#[serde(with = "display_fromstr")]`).
pub mod display_fromstr {
    use alloc::string::String;
    use core::fmt::Display;
    use core::str::FromStr;
    use serde::{Deserialize, Deserializer, Serializer};

    /// The value's text.
    pub fn serialize<T: Display, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    /// The value from its text.
    pub fn deserialize<'de, T, D>(d: D) -> Result<T, D::Error>
    where
        T: FromStr,
        T::Err: Display,
        D: Deserializer<'de>,
    {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A key epoch as the store keeps it (never key material).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KeyEpochRecord {
    /// Epoch number, from 1.
    pub epoch: u32,
    /// When it started.
    pub created_at: Timestamp,
    /// Once superseded: RTs under this epoch may validate until this time.
    pub rt_keep_until: Option<Timestamp>,
    /// Set when retired in an emergency: no RT under it validates any more.
    pub retired_at: Option<Timestamp>,
}

/// A key epoch as shown to operators.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KeyEpochInfo {
    /// The stored record.
    #[serde(flatten)]
    pub record: KeyEpochRecord,
    /// New RTs are minted under this epoch.
    pub current: bool,
    /// RTs under this epoch still validate.
    pub rt_key_loaded: bool,
}

/// Row counts, for status and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StoreCounts {
    /// PTs.
    pub pts: u64,
    /// Operations still pending (as stored).
    pub pending_operations: u64,
    /// Active registrations.
    pub active_registrations: u64,
    /// The latest audit sequence number: the number of audit events, plus any numbers that
    /// rolled-back writes left unused.
    pub audit_events: u64,
    /// Leak signals.
    pub leak_signals: u64,
}

/// Counters of the store's group-commit writer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CommitStats {
    /// Committed batches (each one fsync).
    pub batches: u64,
    /// Jobs run.
    pub jobs: u64,
    /// Commits that failed.
    pub failed_commits: u64,
}

/// Where a node is in the change feed of a store shared by several nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FeedStatus {
    /// The last change applied (its sequence number).
    pub position: u64,
    /// The newest change in the feed when last read.
    pub head: u64,
    /// Changes behind the head when last read.
    pub lag: u64,
    /// Milliseconds since the node last read the feed to its head (absent: not yet).
    pub since_caught_up_ms: Option<u64>,
    /// Whether the node answers validations (it is within the allowed lag).
    pub current: bool,
}

/// The engine's counters, for status and metrics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EngineStatus {
    /// Registration families live in memory.
    pub live_families: usize,
    /// Memory held by the family table.
    pub family_table_bytes: usize,
    /// Current key epoch.
    pub current_key_epoch: u32,
    /// Row counts.
    pub counts: StoreCounts,
    /// Group-commit counters.
    pub commits: CommitStats,
    /// BEGINs refused because their instance nonce matched no pending operation of a PT at
    /// its pending cap (since start).
    pub failed_resumes: u64,
    /// Leak signals not recorded because the same one was recorded just before (since start).
    pub suppressed_signals: u64,
    /// With several nodes on one store: where this node is in the change feed.
    pub feed: Option<FeedStatus>,
}
