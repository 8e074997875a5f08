//! # tessera-engine
//!
//! The core of Tessera, a provisioning-token engine for industrial IoT fleets.
//!
//! Devices carry a long-lived **provisioning token (PT)** that can only ask for a
//! **registration token (RT)**. A device begins a *provisioning operation*; a technician
//! approves it (optionally after typing the verification code shown on the device); the device
//! collects an RT that names its registration, expires, rotates on refresh and can be revoked.
//!
//! The engine opens no sockets, runs no async runtime and reads no clock: every time-dependent
//! call takes `now`. It is not sans-IO in the way `quinn-proto` is, though: it owns its
//! [`store`] (the SQLite files or the PostgreSQL connections, and the writer threads that
//! commit to them) and its key keeper (a key file or an HSM session). The sans-IO half of
//! Tessera is `tessera-proto`. RT validation ([`Engine::validate_rt`]) takes no lock, allocates
//! nothing and does not touch the store, except for an authentic RT of a generation this node
//! has not seen yet (another node refreshed it), which the store settles.
//!
//! ```
//! use tessera_engine::{Actor, Approval, BeginRequest, Engine, EngineConfig, OperationStatus,
//!                      PtSpec, Timestamp};
//! # fn main() -> Result<(), tessera_engine::Error> {
//! let dir = tempfile::tempdir().unwrap();
//! let mut now = Timestamp::from_unix_secs(1_800_000_000);
//! let engine = Engine::open_dir(dir.path(), EngineConfig::default(), now)?;
//! let tech = Actor::operator("alice");
//!
//! // An operator creates a PT; its text goes into the device's firmware.
//! let (pt, pt_text) = engine.create_pt(&PtSpec::new("line 3, unit 17"), &tech, now)?;
//!
//! // The device begins an operation and shows nothing (manual approval without a code).
//! let begun = engine.begin_operation(BeginRequest {
//!     pt: pt_text,
//!     requested_device_id: Some("pump-0017".parse().map_err(tessera_engine::Error::from)?),
//!     attributes: Default::default(),
//!     instance_nonce: b"16+ random bytes".to_vec(),
//! }, &Actor::device(None), now)?;
//!
//! // A technician approves; the device collects its RT.
//! engine.approve_operation(&begun.operation_id, Approval::default(), &tech, now)?;
//! let OperationStatus::Provisioned(p) =
//!     engine.poll_operation(&begun.operation_id, begun.secret.expose(), &Actor::device(None), now)? else { panic!() };
//! assert_eq!(p.device_id.as_str(), "pump-0017");
//!
//! // Services validate the RT; the device refreshes it; revocation is immediate.
//! engine.validate_rt(p.rt.expose().as_bytes(), now)?;
//! now = now.saturating_add(std::time::Duration::from_secs(3600));
//! let next = engine.refresh(p.rt.expose(), &Actor::device(None), now)?;
//! engine.revoke_registration(p.registration_id, "stolen", &tech, now)?;
//! assert_eq!(engine.validate_rt(next.rt.expose().as_bytes(), now),
//!            Err(tessera_engine::Error::Revoked));
//! # let _ = pt; Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod engine;
mod error;
pub mod family;
pub mod keys;
pub mod model;
mod ratelimit;
mod secret;
mod sources;
pub mod store;
mod time;
pub mod validator;
pub mod vectors;

/// Token formats, defined in `tessera-proto` (with its keyed `mac` parts).
pub use tessera_proto::token;

pub use engine::{
    Approval, BeginOutcome, BeginRequest, Engine, EngineConfig, EngineObserver, EngineStatus,
    FeedStatus, Introspection, KeyEpochInfo, LeakPolicy, LeakResponse, OperationStatus,
    PairingStep, Provisioned, PruneReport, PtBatch, Refreshed, Retention, ValidatedRt,
    ADMIN_TOKEN_PREFIX, BATCH_CHUNK, MAX_BATCH, MAX_CLOCK_SKEW_LEEWAY,
};
pub use error::{Error, InputError, StoreError, TokenFormatError};
pub use keys::{KeyKeeper, SoftwareKeeper};
pub use model::{
    Actor, AdminRole, AdminTokenId, AdminTokenRecord, ApprovalPolicy, Attributes, DeviceId,
    DeviceIdPolicy, OperationId, OperationState, PtId, PtKind, PtSpec, RegistrationId,
};
pub use ratelimit::{Rate, RateLimiter};
pub use secret::{
    AdminToken, KeyBytes, OperationSecret, ProvisioningToken, RegistrationToken, VerificationCode,
};
pub use sources::ManySources;
pub use time::Timestamp;
pub use validator::LocalValidator;
