//! Provisioning operations: begin, poll/collect, approve, reject, cancel, expire.

use std::time::Duration;

use ring::hmac;

use super::pts::{check_pt_row, revoke_pt_in_tx};
use super::registrations::{claims_of, set_family};
use super::{Committed, Effect, Engine, LeakResponse, Tx};
use crate::error::{Error, InputError};
use crate::family::MAX_REGISTRATION_ID;
use crate::model::{
    check_label, limits, Actor, ApprovalPolicy, Attributes, DeviceId, DeviceIdPolicy, LeakKind,
    NonceDigest, OperationId, OperationRecord, OperationState, PtKind, PtRecord, RegistrationId,
    RegistrationRecord, RegistrationStatus, ReplacedRegistration,
};
use crate::secret::{OperationSecret, ProvisioningToken, RegistrationToken, VerificationCode};
use crate::store::{NewLeakSignal, OperationCursor, OperationQuery};
use crate::time::Timestamp;
use tessera_proto::token::op as op_secret;
use tessera_proto::token::{code, RtClaims};

/// What a device sends to begin a provisioning operation.
#[derive(Clone)]
pub struct BeginRequest {
    /// The device's provisioning token.
    pub pt: ProvisioningToken,
    /// The device id the device asks for, if any.
    pub requested_device_id: Option<DeviceId>,
    /// Attributes to help the technician decide.
    pub attributes: Attributes,
    /// A random value the device instance keeps across retries and reboots (16–64 bytes, at
    /// least 128 bits from its random generator): a retry with the same PT and nonce gets the
    /// same pending operation back, secret included, so the nonce is a secret too.
    pub instance_nonce: Vec<u8>,
}

impl std::fmt::Debug for BeginRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BeginRequest")
            .field("pt", &self.pt)
            .field("requested_device_id", &self.requested_device_id)
            .field("attributes", &self.attributes)
            .field("instance_nonce", &"<redacted>")
            .finish()
    }
}

fn nonce_digest(key: &hmac::Key, nonce: &[u8]) -> NonceDigest {
    let mut d = [0u8; 32];
    d.copy_from_slice(hmac::sign(key, nonce).as_ref());
    NonceDigest(d)
}

/// What the device gets back from [`Engine::begin_operation`].
#[derive(Debug, Clone)]
pub struct BeginOutcome {
    /// The operation's id.
    pub operation_id: OperationId,
    /// The secret needed to collect the result.
    pub secret: OperationSecret,
    /// The code to show on the device's display, when the PT's policy uses one.
    pub verification_code: Option<VerificationCode>,
    /// Pending, or approved already under an automatic policy.
    pub state: OperationState,
    /// How often to poll (or how long to long-poll).
    pub poll_interval: Duration,
    /// When the pending operation expires.
    pub expires_at: Timestamp,
    /// True when this was a retry that returned an existing pending operation.
    pub resumed: bool,
}

/// A technician's decision to approve.
#[derive(Debug, Clone, Default)]
pub struct Approval {
    /// The code read off the device (required when the PT's policy uses codes).
    pub verification_code: Option<String>,
    /// The device id to register (see the PT's device-id policy).
    pub device_id: Option<DeviceId>,
    /// Override of the PT's RT lifetime (bounded by the engine's maximum).
    pub rt_lifetime: Option<Duration>,
    /// Move the device id from another PT's active registration to this operation. Without
    /// it, approving an operation whose device id is registered under another PT fails with
    /// [`Error::DeviceIdInUse`] and changes nothing. Recorded in the audit log.
    pub reassign: bool,
}

/// A delivered registration: what an approved operation gives its device.
#[derive(Debug, Clone)]
pub struct Provisioned {
    /// The device's identity.
    pub device_id: DeviceId,
    /// The registration (RT family).
    pub registration_id: RegistrationId,
    /// The RT (generation 1).
    pub rt: RegistrationToken,
    /// Its public claims.
    pub claims: RtClaims,
}

/// What polling an operation tells the device.
#[derive(Debug, Clone)]
pub enum OperationStatus {
    /// Still waiting for a technician.
    Pending {
        /// Suggested poll interval.
        poll_interval: Duration,
        /// When the operation expires.
        expires_at: Timestamp,
    },
    /// Approved: here is the RT.
    Provisioned(Provisioned),
    /// Rejected.
    Rejected {
        /// Why.
        reason: Option<String>,
    },
    /// Expired before a decision.
    Expired,
    /// Cancelled (by the device, by a sibling's approval, or by PT revocation).
    Cancelled {
        /// Why.
        reason: Option<String>,
    },
}

fn op_secret_bytes(key: &hmac::Key, id: &OperationId) -> hmac::Tag {
    hmac::sign(key, &id.to_bytes())
}

fn op_secret_text(key: &hmac::Key, id: &OperationId) -> OperationSecret {
    let mut bytes = zeroize::Zeroizing::new([0u8; op_secret::OP_SECRET_LEN]);
    bytes.copy_from_slice(op_secret_bytes(key, id).as_ref());
    op_secret::encode(&bytes)
}

impl Engine {
    fn outcome_for(&self, op: &OperationRecord, resumed: bool) -> BeginOutcome {
        let ring = self.inner.keys.load();
        let secret = op_secret_text(ring.op_key_or_dummy(op.key_epoch), &op.id);
        let verification_code = if op.uses_code {
            ring.code_key(op.key_epoch)
                .map(|k| code::display(&code::derive(k, &op.id.to_bytes())))
        } else {
            None
        };
        BeginOutcome {
            operation_id: op.id,
            secret,
            verification_code,
            state: op.state,
            poll_interval: self.inner.config.poll_interval,
            expires_at: op.expires_at,
            resumed,
        }
    }

    /// Begin (or resume) a provisioning operation.
    ///
    /// # Security
    /// The caller controls everything in `req`. A PT that fails verification is refused with
    /// [`Error::Unauthenticated`] before anything is looked up or written. A revoked PT is
    /// refused and raises a `revoked_token_use` leak signal.
    pub fn begin_operation(
        &self,
        req: BeginRequest,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<BeginOutcome, Error> {
        if !(limits::NONCE_MIN..=limits::NONCE_MAX).contains(&req.instance_nonce.len()) {
            return Err(InputError::new(
                "instance_nonce",
                "must be 16-64 bytes (at least 128 random bits)",
            )
            .into());
        }
        if let Some(src) = &actor.source {
            check_label("source", src)?;
            self.inner
                .source_limits
                .check(src, now)
                .map_err(|retry_after| Error::RateLimited { retry_after })?;
        }
        let (parsed, verifier) = self.check_pt_tag(req.pt.expose())?;
        let pt_id = parsed.untrusted_id();
        drop(parsed);
        let engine = self.clone();
        let actor = actor.clone();
        let op_id = OperationId::from_bytes(self.random::<16>()?);
        let result = self.write(now, move |tx| {
            let row = tx.db.pt(&pt_id)?;
            let mut pt = match check_pt_row(row, &verifier, tx.now) {
                Ok(pt) => pt,
                Err(Error::Revoked) => {
                    tx.leak(NewLeakSignal {
                        at: tx.now,
                        kind: LeakKind::RevokedTokenUse,
                        pt_id: Some(pt_id),
                        registration_id: None,
                        operation_id: None,
                        source: actor.source.clone(),
                        action: "refused".into(),
                        detail: "revoked provisioning token presented".into(),
                    })?;
                    return Ok(Committed::Refusal(Error::Revoked));
                }
                Err(e) => return Err(e),
            };
            let fleet = matches!(pt.kind, PtKind::Fleet { .. });
            let limiter = if fleet {
                &tx.inner.pt_limits_fleet
            } else {
                &tx.inner.pt_limits_single
            };
            limiter
                .check(&pt_id, tx.now)
                .map_err(|retry_after| Error::RateLimited { retry_after })?;
            if let Some(d) = &req.requested_device_id {
                if tx.db.blocked(d)?.is_some() {
                    return Err(Error::DeviceBlocked);
                }
            }
            if pt.device_id_policy == DeviceIdPolicy::Device && req.requested_device_id.is_none() {
                return Err(InputError::new(
                    "device_id",
                    "this PT's policy requires the device to request a device id",
                )
                .into());
            }
            let ring = tx.inner.keys.load();
            // The operation this nonce began, if it is still pending: one digest per live key
            // epoch, looked up by index, so BEGIN costs the same with 0 or 1,000 operations
            // waiting. (The device learns from the answer whether it resumed, so comparing
            // every pending operation's digest would hide nothing.)
            let digests: Vec<NonceDigest> = ring
                .epochs()
                .iter()
                .map(|e| nonce_digest(&e.op, &req.instance_nonce))
                .collect();
            let resumed = tx
                .db
                .pending_operations_by_nonce(&pt_id, &digests)?
                .into_iter()
                .filter(|o| o.effective_state(tx.now) == OperationState::Pending)
                .find(|o| {
                    // Made with its own epoch's key (another epoch's matching would be a
                    // collision of keyed digests).
                    let d = nonce_digest(ring.op_key_or_dummy(o.key_epoch), &req.instance_nonce);
                    bool::from(subtle::ConstantTimeEq::ct_eq(
                        &d.0[..],
                        &o.nonce_digest.0[..],
                    ))
                });
            if let Some(existing) = resumed {
                return Ok(Committed::Answer(engine.outcome_for(&existing, true)));
            }
            let cap = if fleet {
                tx.inner.config.max_pending_fleet
            } else {
                tx.inner.config.max_pending_single
            };
            if tx.db.pending_count(&pt_id, tx.now)? >= cap {
                // A nonce that matches none of a full PT's pending operations is a failed
                // resume: a device that lost its nonce, or someone with the PT guessing. It is
                // counted and signalled (throttled), and the refusal is committed.
                tx.inner
                    .failed_resumes
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tx.leak(NewLeakSignal {
                    at: tx.now,
                    kind: LeakKind::ParallelOperations,
                    pt_id: Some(pt_id),
                    registration_id: None,
                    operation_id: None,
                    source: actor.source.clone(),
                    action: "refused".into(),
                    detail: "an instance nonce that matches no pending operation, while the PT \
                             is at its pending cap"
                        .into(),
                })?;
                return Ok(Committed::Refusal(Error::TooManyPendingOperations));
            }
            if let PtKind::Fleet { max_registrations } = pt.kind {
                if pt.registrations_created >= max_registrations {
                    return Err(Error::RegistrationCapReached);
                }
            }
            // Parallel operations: on a single-device PT every other pending one (a few at
            // most); on a fleet PT those that asked for the same device id.
            let siblings: Vec<OperationRecord> = match (fleet, &req.requested_device_id) {
                (false, _) => tx.db.pending_operations(&pt_id)?,
                (true, Some(d)) => tx.db.pending_operations_for_device(&pt_id, d)?,
                (true, None) => Vec::new(),
            }
            .into_iter()
            .filter(|o| o.effective_state(tx.now) == OperationState::Pending)
            .collect();
            let replaces = match &req.requested_device_id {
                Some(d) => replaced_registrations(tx, d)?,
                None => Vec::new(),
            };
            let mut op = OperationRecord {
                id: op_id,
                pt_id,
                state: OperationState::Pending,
                nonce_digest: nonce_digest(&ring.current().op, &req.instance_nonce),
                requested_device_id: req.requested_device_id.clone(),
                attributes: req.attributes.clone(),
                uses_code: pt.approval.uses_code(),
                code_failures: 0,
                conflict: !siblings.is_empty(),
                key_epoch: ring.current,
                source: actor.source.clone(),
                created_at: tx.now,
                expires_at: tx.now.saturating_add(tx.inner.config.operation_ttl),
                decided_by: None,
                decided_at: None,
                reason: None,
                device_id: None,
                registration_id: None,
                replaces,
            };
            tx.db.insert_operation(&op)?;
            tx.effect(Effect::OperationChanged(op.id, op.state));
            tx.audit(
                &actor,
                "operation.begin",
                &op.id.to_string(),
                serde_json::json!({
                    "pt": pt_id.to_string(),
                    "requested_device_id": op.requested_device_id,
                    "attributes": op.attributes,
                    "conflict": op.conflict,
                    "replaces": op.replaces,
                }),
            )?;
            if op.conflict {
                for mut s in siblings {
                    if !s.conflict {
                        s.conflict = true;
                        tx.db.update_operation(&s)?;
                    }
                }
                let revoke =
                    tx.inner.config.leak_policy.parallel_operations == LeakResponse::RevokePt;
                tx.leak(NewLeakSignal {
                    at: tx.now,
                    kind: LeakKind::ParallelOperations,
                    pt_id: Some(pt_id),
                    registration_id: None,
                    operation_id: Some(op.id),
                    source: actor.source.clone(),
                    action: if revoke { "revoked_pt" } else { "flagged" }.into(),
                    detail: "another instance has a pending operation on this PT".into(),
                })?;
                if revoke {
                    revoke_pt_in_tx(tx, &pt_id, "parallel operations", &Actor::system())?;
                    return Ok(Committed::Refusal(Error::Revoked));
                }
            }
            let auto = match &pt.approval {
                ApprovalPolicy::Automatic => true,
                ApprovalPolicy::AttributeRule(rule) => rule.matches(&op.attributes),
                _ => false,
            };
            // An operation that would replace an active registration is never approved
            // automatically: a technician decides, seeing what it replaces.
            let held = auto && !op.replaces.is_empty();
            if held || op.replaces.iter().any(|r| r.pt_id != pt_id) {
                raise_collision(tx, &op, &actor, held)?;
            }
            if auto && !held {
                let device_id = match &op.requested_device_id {
                    Some(d) => d.clone(),
                    None => generated_device_id(&op.id)?,
                };
                let lifetime = pt.rt_lifetime_secs;
                let decision = Decision {
                    device_id,
                    lifetime_secs: lifetime,
                    reassign: false,
                };
                approve_in_tx(tx, &mut op, &mut pt, decision, &Actor::system())?;
            }
            Ok(Committed::Answer(engine.outcome_for(&op, false)))
        });
        result.and_then(Committed::into_result)
    }

    /// Check an operation's id + secret and return its record.
    fn authenticate_operation(
        &self,
        id: &OperationId,
        secret: &str,
    ) -> Result<OperationRecord, Error> {
        let bin = op_secret::decode(secret.as_bytes())?;
        let op = self.read(|db| db.operation(id))?;
        let ring = self.inner.keys.load();
        // Unknown ids are checked against a random key so they cost the same as a wrong secret.
        let key = op
            .as_ref()
            .map_or(ring.dummy(), |o| ring.op_key_or_dummy(o.key_epoch));
        let ok = hmac::verify(key, &id.to_bytes(), &bin[..]).is_ok();
        match op {
            Some(op) if ok => Ok(op),
            _ => Err(Error::Unauthenticated),
        }
    }

    /// Poll an operation with its id and secret. When it has been approved this collects the
    /// RT (the operation becomes completed; the audit event records `collector`, the device as
    /// it polls, with its address). Collecting again returns the same RT as long as the device
    /// has not refreshed it yet, so a lost response can be retried.
    pub fn poll_operation(
        &self,
        id: &OperationId,
        secret: &str,
        collector: &Actor,
        now: Timestamp,
    ) -> Result<OperationStatus, Error> {
        let op = self.authenticate_operation(id, secret)?;
        match op.effective_state(now) {
            OperationState::Pending => Ok(OperationStatus::Pending {
                poll_interval: self.inner.config.poll_interval,
                expires_at: op.expires_at,
            }),
            OperationState::Rejected => Ok(OperationStatus::Rejected { reason: op.reason }),
            OperationState::Expired => Ok(OperationStatus::Expired),
            OperationState::Cancelled => Ok(OperationStatus::Cancelled { reason: op.reason }),
            OperationState::Approved => {
                let engine = self.clone();
                let (id, collector) = (*id, collector.clone());
                self.write(now, move |tx| {
                    let mut op = tx.db.operation(&id)?.ok_or(Error::NotFound("operation"))?;
                    if op.state == OperationState::Approved {
                        op.state = OperationState::Completed;
                        tx.db.update_operation(&op)?;
                        tx.audit(
                            &collector,
                            "operation.collect",
                            &id.to_string(),
                            serde_json::json!({
                                "registration_id": op.registration_id,
                            }),
                        )?;
                        tx.effect(Effect::OperationChanged(id, op.state));
                    }
                    Ok(engine.deliver(tx.db.registration(
                        op.registration_id.ok_or(Error::NotFound("registration"))?,
                    )?))
                })?
            }
            OperationState::Completed => {
                let reg = match op.registration_id {
                    Some(r) => self.read(|db| db.registration(r))?,
                    None => None,
                };
                self.deliver(reg)
            }
        }
    }

    /// The RT of a freshly approved registration (generation 1 only).
    fn deliver(&self, reg: Option<RegistrationRecord>) -> Result<OperationStatus, Error> {
        let reg = reg.ok_or(Error::NotFound("registration"))?;
        if reg.status != RegistrationStatus::Active {
            return Err(Error::Revoked);
        }
        if reg.generation != 1 {
            return Err(Error::OperationClosed(OperationState::Completed));
        }
        let claims = claims_of(&reg);
        let key = self
            .inner
            .rt_keys
            .get(reg.key_epoch)
            .ok_or(Error::Revoked)?;
        Ok(OperationStatus::Provisioned(Provisioned {
            device_id: reg.device_id,
            registration_id: reg.id,
            rt: claims.mint(key),
            claims,
        }))
    }

    /// Approve a pending operation. Checks the verification code when the PT's policy uses
    /// one: a wrong code is counted, and after the configured number of failures the operation
    /// is rejected and a `code_guessing` leak signal raised. Approval creates the registration,
    /// supersedes earlier active registrations of the same device id (and, for a single-device
    /// PT, of the same PT), and cancels sibling operations.
    pub fn approve_operation(
        &self,
        id: &OperationId,
        approval: Approval,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<RegistrationRecord, Error> {
        if let Some(c) = &approval.verification_code {
            if c.len() > 32 {
                return Err(InputError::new("verification_code", "longer than 32 bytes").into());
            }
        }
        if let Some(l) = approval.rt_lifetime {
            if l.as_secs() < 60 || l > self.inner.config.max_rt_lifetime {
                return Err(InputError::new(
                    "rt_lifetime",
                    "must be between 60 seconds and the server's maximum",
                )
                .into());
            }
        }
        let (id, actor) = (*id, actor.clone());
        self.write(now, move |tx| {
            let mut op = tx.db.operation(&id)?.ok_or(Error::NotFound("operation"))?;
            let state = op.effective_state(tx.now);
            if state != OperationState::Pending {
                return Err(Error::OperationClosed(state));
            }
            let (mut pt, _) = tx
                .db
                .pt(&op.pt_id)?
                .ok_or(Error::NotFound("provisioning token"))?;
            if pt.revoked_at.is_some() {
                return Err(Error::Revoked);
            }
            if pt.expires_at.is_some_and(|t| tx.now >= t) {
                return Err(Error::PtExpired);
            }
            if approval
                .rt_lifetime
                .is_some_and(|l| l.as_secs() > pt.rt_lifetime_secs)
            {
                return Err(InputError::new(
                    "rt_lifetime",
                    "exceeds the RT lifetime of the operation's provisioning token",
                )
                .into());
            }
            if op.uses_code {
                let Some(typed) = approval.verification_code.as_deref() else {
                    return Err(Error::VerificationCodeRequired);
                };
                let ring = tx.inner.keys.load();
                let key = ring
                    .code_key(op.key_epoch)
                    .ok_or(Error::Keys("code key missing".into()))?;
                if !code::matches(&code::derive(key, &op.id.to_bytes()), typed) {
                    return Ok(Committed::Refusal(wrong_code(tx, &mut op, &actor)?));
                }
            }
            let device_id = match pt.device_id_policy {
                DeviceIdPolicy::Device => {
                    let requested = op.requested_device_id.clone().ok_or(Error::InvalidInput(
                        InputError::new("device_id", "the device did not request a device id"),
                    ))?;
                    if approval.device_id.as_ref().is_some_and(|d| *d != requested) {
                        return Err(InputError::new(
                            "device_id",
                            "this PT's policy lets only the device choose its id",
                        )
                        .into());
                    }
                    requested
                }
                DeviceIdPolicy::Technician => {
                    approval
                        .device_id
                        .clone()
                        .ok_or(Error::InvalidInput(InputError::new(
                            "device_id",
                            "this PT's policy requires the technician to set the device id",
                        )))?
                }
                DeviceIdPolicy::Either => match (&approval.device_id, &op.requested_device_id) {
                    (Some(d), _) | (None, Some(d)) => d.clone(),
                    (None, None) => generated_device_id(&op.id)?,
                },
            };
            let lifetime = approval
                .rt_lifetime
                .map_or(pt.rt_lifetime_secs, |d| d.as_secs());
            let decision = Decision {
                device_id,
                lifetime_secs: lifetime,
                reassign: approval.reassign,
            };
            approve_in_tx(tx, &mut op, &mut pt, decision, &actor).map(Committed::Answer)
        })
        .and_then(Committed::into_result)
    }

    /// Reject a pending operation.
    pub fn reject_operation(
        &self,
        id: &OperationId,
        reason: &str,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<(), Error> {
        check_label("reason", reason)?;
        let (id, reason, actor) = (*id, reason.to_owned(), actor.clone());
        self.write(now, move |tx| {
            close_in_tx(tx, &id, OperationState::Rejected, &reason, &actor)
        })
    }

    /// Cancel a pending operation, as the device that holds its secret.
    pub fn cancel_operation(
        &self,
        id: &OperationId,
        secret: &str,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<(), Error> {
        self.authenticate_operation(id, secret)?;
        let (id, actor) = (*id, actor.clone());
        self.write(now, move |tx| {
            close_in_tx(
                tx,
                &id,
                OperationState::Cancelled,
                "cancelled by device",
                &actor,
            )
        })
    }

    /// Mark every pending operation past its expiry as expired. Returns how many.
    pub fn expire_operations(&self, now: Timestamp) -> Result<usize, Error> {
        const CHUNK: usize = 1000;
        let mut total = 0;
        loop {
            let n = self.write(now, |tx| {
                let ops = tx.db.expired_pending(tx.now, CHUNK)?;
                for mut op in ops.iter().cloned() {
                    op.state = OperationState::Expired;
                    tx.db.update_operation(&op)?;
                    tx.audit(
                        &Actor::system(),
                        "operation.expire",
                        &op.id.to_string(),
                        serde_json::json!({}),
                    )?;
                    tx.effect(Effect::OperationChanged(op.id, op.state));
                }
                Ok(ops.len())
            })?;
            total += n;
            if n < CHUNK {
                return Ok(total);
            }
        }
    }

    /// One operation.
    pub fn operation(&self, id: &OperationId) -> Result<OperationRecord, Error> {
        self.read(|db| db.operation(id))?
            .ok_or(Error::NotFound("operation"))
    }

    /// Operations matching a query, newest first.
    pub fn list_operations(&self, q: &OperationQuery) -> Result<Vec<OperationRecord>, Error> {
        self.read(|db| db.list_operations(q))
    }

    /// One page of operations as operators see them at `now`, newest first, and the position
    /// after which the next page starts (`None` on the last page).
    ///
    /// The store pages by the state as of `now` (a pending operation whose expiry has come is
    /// listed as expired before the sweep has stored that), so every page but the last is full.
    pub fn operations_page(
        &self,
        q: &OperationQuery,
        now: Timestamp,
    ) -> Result<(Vec<OperationRecord>, Option<OperationCursor>), Error> {
        let limit = if q.limit == 0 { 100 } else { q.limit };
        let q = OperationQuery {
            as_of: Some(now),
            limit,
            ..q.clone()
        };
        let mut ops = self.list_operations(&q)?;
        let next = ops
            .last()
            .filter(|_| ops.len() == limit)
            .map(|o| (o.created_at, o.id));
        for op in &mut ops {
            op.state = op.effective_state(now);
        }
        Ok((ops, next))
    }
}

fn generated_device_id(id: &OperationId) -> Result<DeviceId, Error> {
    let s = id.to_string();
    Ok(DeviceId::new(format!(
        "dev-{}",
        s.trim_start_matches("op_")
    ))?)
}

fn wrong_code(tx: &mut Tx<'_>, op: &mut OperationRecord, actor: &Actor) -> Result<Error, Error> {
    op.code_failures += 1;
    let max = tx.inner.config.max_code_attempts;
    if op.code_failures < max {
        tx.db.update_operation(op)?;
        tx.audit(
            actor,
            "operation.code_failed",
            &op.id.to_string(),
            serde_json::json!({ "failures": op.code_failures }),
        )?;
        return Ok(Error::WrongVerificationCode {
            remaining: max - op.code_failures,
        });
    }
    op.state = OperationState::Rejected;
    op.reason = Some("too many wrong verification codes".into());
    op.decided_by = Some(Actor::system().name);
    op.decided_at = Some(tx.now);
    tx.db.update_operation(op)?;
    tx.audit(
        actor,
        "operation.code_failed",
        &op.id.to_string(),
        serde_json::json!({ "failures": op.code_failures, "rejected": true }),
    )?;
    tx.effect(Effect::OperationChanged(op.id, op.state));
    let revoke = tx.inner.config.leak_policy.code_guessing == LeakResponse::RevokePt;
    tx.leak(NewLeakSignal {
        at: tx.now,
        kind: LeakKind::CodeGuessing,
        pt_id: Some(op.pt_id),
        registration_id: None,
        operation_id: Some(op.id),
        source: actor.source.clone(),
        action: if revoke {
            "revoked_pt"
        } else {
            "rejected_operation"
        }
        .into(),
        detail: format!("{} wrong verification codes", op.code_failures),
    })?;
    if revoke {
        revoke_pt_in_tx(
            tx,
            &op.pt_id,
            "verification code guessing",
            &Actor::system(),
        )?;
    }
    Ok(Error::VerificationAttemptsExhausted)
}

fn close_in_tx(
    tx: &mut Tx<'_>,
    id: &OperationId,
    to: OperationState,
    reason: &str,
    actor: &Actor,
) -> Result<(), Error> {
    let mut op = tx.db.operation(id)?.ok_or(Error::NotFound("operation"))?;
    let state = op.effective_state(tx.now);
    if state != OperationState::Pending {
        return Err(Error::OperationClosed(state));
    }
    op.state = to;
    op.reason = Some(reason.to_owned());
    op.decided_by = Some(actor.name.clone());
    op.decided_at = Some(tx.now);
    tx.db.update_operation(&op)?;
    let action = if to == OperationState::Rejected {
        "operation.reject"
    } else {
        "operation.cancel"
    };
    tx.audit(
        actor,
        action,
        &id.to_string(),
        serde_json::json!({ "reason": reason }),
    )?;
    tx.effect(Effect::OperationChanged(op.id, op.state));
    Ok(())
}

/// The active registrations of `device_id`, with the PT each was provisioned through.
fn replaced_registrations(
    tx: &Tx<'_>,
    device_id: &DeviceId,
) -> Result<Vec<ReplacedRegistration>, Error> {
    let mut out = Vec::new();
    for id in tx.db.active_registrations_of_device(device_id)? {
        if let Some(r) = tx.db.registration(id)? {
            out.push(ReplacedRegistration {
                registration_id: id,
                pt_id: r.pt_id,
            });
        }
    }
    Ok(out)
}

/// The `device_id_collision` leak signal: `op` asks for a device id that has an active
/// registration, and was `held` for a technician instead of being approved automatically (or
/// the registration belongs to another PT).
fn raise_collision(
    tx: &mut Tx<'_>,
    op: &OperationRecord,
    actor: &Actor,
    held: bool,
) -> Result<(), Error> {
    let device_id = op.requested_device_id.as_ref().map_or("", |d| d.as_str());
    let owners: Vec<String> = op
        .replaces
        .iter()
        .map(|r| format!("registration {} under {}", r.registration_id, r.pt_id))
        .collect();
    tx.leak(NewLeakSignal {
        at: tx.now,
        kind: LeakKind::DeviceIdCollision,
        pt_id: Some(op.pt_id),
        registration_id: op.replaces.first().map(|r| r.registration_id),
        operation_id: Some(op.id),
        source: actor.source.clone(),
        action: if held {
            "held_for_technician"
        } else {
            "flagged"
        }
        .into(),
        detail: format!("device id {device_id} is active as {}", owners.join(", ")),
    })?;
    Ok(())
}

/// What an approval decided: the device id, the RT lifetime, and whether the technician
/// explicitly moves the device id from another PT.
struct Decision {
    device_id: DeviceId,
    lifetime_secs: u64,
    reassign: bool,
}

/// Approve `op` inside a write job: create the registration and settle everything around it.
fn approve_in_tx(
    tx: &mut Tx<'_>,
    op: &mut OperationRecord,
    pt: &mut PtRecord,
    decision: Decision,
    actor: &Actor,
) -> Result<RegistrationRecord, Error> {
    let Decision {
        device_id,
        lifetime_secs,
        reassign,
    } = decision;
    if tx.db.blocked(&device_id)?.is_some() {
        return Err(Error::DeviceBlocked);
    }
    if let PtKind::Fleet { max_registrations } = pt.kind {
        if pt.registrations_created >= max_registrations {
            return Err(Error::RegistrationCapReached);
        }
    }
    let replaced = replaced_registrations(tx, &device_id)?;
    let reassigned: Vec<&ReplacedRegistration> =
        replaced.iter().filter(|r| r.pt_id != pt.id).collect();
    if !reassigned.is_empty() && !reassign {
        return Err(Error::DeviceIdInUse);
    }
    let reassigned_json = serde_json::to_value(&reassigned).unwrap_or_default();
    let reason = format!("superseded by {}", op.id);
    let mut superseded: Vec<RegistrationId> = replaced.iter().map(|r| r.registration_id).collect();
    if pt.kind == PtKind::SingleDevice {
        superseded.extend(tx.db.active_registrations_of_pt(&pt.id)?);
    }
    superseded.sort_unstable();
    superseded.dedup();
    for r in superseded {
        super::registrations::revoke_in_tx(tx, r, &reason, actor)?;
    }
    let ring = tx.inner.keys.load();
    let issued_at = tx.now.unix_secs();
    let mut reg = RegistrationRecord {
        id: RegistrationId::new(0),
        device_id: device_id.clone(),
        pt_id: pt.id,
        operation_id: op.id,
        binding: u32::from_be_bytes(tx.inner.random::<4>()?)
            % tessera_proto::token::RT_BINDING_LIMIT,
        status: RegistrationStatus::Active,
        generation: 1,
        key_epoch: ring.current,
        issued_at,
        expires_at: issued_at.saturating_add(lifetime_secs),
        lifetime_secs,
        created_at: tx.now,
        revoked_at: None,
        revoke_reason: None,
    };
    reg.id = tx.db.insert_registration(&reg)?;
    if reg.id.get() > MAX_REGISTRATION_ID {
        return Err(Error::store("registration id space exhausted".into()));
    }
    pt.registrations_created += 1;
    tx.db.update_pt(pt)?;
    op.state = OperationState::Approved;
    op.decided_by = Some(actor.name.clone());
    op.decided_at = Some(tx.now);
    op.device_id = Some(device_id.clone());
    op.registration_id = Some(reg.id);
    tx.db.update_operation(op)?;
    tx.effect(Effect::OperationChanged(op.id, op.state));
    let fleet = matches!(pt.kind, PtKind::Fleet { .. });
    for mut s in tx.db.pending_operations(&pt.id)? {
        let sibling = s.id != op.id
            && (!fleet
                || (op.requested_device_id.is_some()
                    && s.requested_device_id == op.requested_device_id));
        if sibling && s.effective_state(tx.now) == OperationState::Pending {
            s.state = OperationState::Cancelled;
            s.reason = Some(format!("sibling {} approved", op.id));
            s.decided_by = Some(actor.name.clone());
            s.decided_at = Some(tx.now);
            tx.db.update_operation(&s)?;
            tx.audit(
                actor,
                "operation.cancel",
                &s.id.to_string(),
                serde_json::json!({ "reason": s.reason }),
            )?;
            tx.effect(Effect::OperationChanged(s.id, s.state));
        }
    }
    tx.audit(
        actor,
        "operation.approve",
        &op.id.to_string(),
        if reassigned.is_empty() {
            serde_json::json!({
                "device_id": device_id, "registration_id": reg.id, "rt_lifetime_secs": lifetime_secs,
            })
        } else {
            serde_json::json!({
                "device_id": device_id, "registration_id": reg.id, "rt_lifetime_secs": lifetime_secs,
                "reassign": true, "reassigned_from": reassigned_json,
            })
        },
    )?;
    tx.effect(set_family(&reg));
    Ok(reg)
}
