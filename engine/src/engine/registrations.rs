//! Registrations: RT validation (the hot path), refresh with rotation, revocation, blocking.

use super::{Committed, Effect, Engine, LeakResponse, Tx};
use crate::error::Error;
use crate::family::FamilyState;
use crate::model::{
    check_label, Actor, BlockRecord, DeviceId, LeakKind, PtId, RegistrationId, RegistrationRecord,
    RegistrationStatus,
};
use crate::secret::RegistrationToken;
use crate::store::{NewLeakSignal, RefreshAudit, RegistrationQuery};
use crate::time::Timestamp;
use tessera_proto::token::judge::{self, Standing};
use tessera_proto::token::{RtClaims, UntrustedRt};

/// An RT that passed validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValidatedRt {
    /// Its claims, now authenticated.
    pub claims: RtClaims,
}

/// The result of a refresh.
#[derive(Debug, Clone)]
pub struct Refreshed {
    /// The successor RT.
    pub rt: RegistrationToken,
    /// Its claims.
    pub claims: RtClaims,
    /// True when this was a retry inside the grace window that returned the same successor.
    pub retried: bool,
    /// The device the registration belongs to.
    pub device_id: DeviceId,
}

/// What a service (an MQTT broker, say) learns from an RT.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Introspection {
    /// The device's identity.
    pub device_id: DeviceId,
    /// The registration.
    pub registration_id: RegistrationId,
    /// The PT it was provisioned through.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    #[serde(with = "tessera_proto::admin::records::display_fromstr")]
    pub pt_id: PtId,
    /// Generation of the presented RT.
    pub generation: u32,
    /// Expiry of the presented RT, Unix seconds.
    pub expires_at: u64,
}

impl Engine {
    /// Validate an RT's text form. This is the hot path: parse (fixed layout, no allocation),
    /// then the one RT judgement ([`tessera_proto::token::judge()`]): MAC check with
    /// `ring::hmac::verify`, expiry with the configured clock-skew leeway, and one lock-free
    /// lookup of the family state. It takes no lock and does not touch the store, except for an
    /// authentic RT of a generation above the one this node holds (another node refreshed it
    /// and its change has not arrived yet), which the store settles.
    ///
    /// # Security
    /// The caller controls `text`. Format errors are precise ([`Error::TokenFormat`]); every
    /// authenticity failure, including an unknown or retired key id, is
    /// [`Error::Unauthenticated`]. Only after the MAC has verified may the result be
    /// [`Error::Expired`], [`Error::Revoked`] or [`Error::Superseded`].
    #[inline]
    pub fn validate_rt(&self, text: &[u8], now: Timestamp) -> Result<ValidatedRt, Error> {
        let rt = UntrustedRt::parse(text)?;
        self.validate_parsed(&rt, now)
    }

    /// Validate the binary form of an RT (69 bytes). See [`Engine::validate_rt`].
    pub fn validate_rt_bytes(&self, bytes: &[u8], now: Timestamp) -> Result<ValidatedRt, Error> {
        let rt = UntrustedRt::from_bytes(bytes)?;
        self.validate_parsed(&rt, now)
    }

    /// Authentic and not expired (rules 1 and 2 of the judgement): what a refresh checks
    /// before it reads the registration.
    fn authenticate_rt(&self, rt: &UntrustedRt, now: Timestamp) -> Result<RtClaims, Error> {
        let inner = &self.inner;
        let claims = rt.untrusted_claims();
        let key = inner.rt_keys.get(claims.key_id);
        let leeway = inner.config.clock_skew_leeway.as_secs();
        judge::admit(
            judge::authenticate(rt, key, &inner.dummy_rt_key),
            &claims,
            now.unix_secs(),
            leeway,
        )?;
        Ok(claims)
    }

    #[inline]
    fn validate_parsed(&self, rt: &UntrustedRt, now: Timestamp) -> Result<ValidatedRt, Error> {
        let inner = &self.inner;
        inner.check_feed()?;
        let key = inner.rt_keys.get(rt.untrusted_key_id());
        let leeway = inner.config.clock_skew_leeway.as_secs();
        let (claims, standing) = judge::judge_rt(
            rt,
            key,
            &inner.dummy_rt_key,
            now.unix_secs(),
            leeway,
            |id| Ok::<_, Error>(inner.families.get(id)),
        )?;
        if standing == Standing::Ahead {
            self.settle_ahead(&claims)?;
        }
        Ok(ValidatedRt { claims })
    }

    /// An authentic RT of a generation this node has not seen yet (another node refreshed it
    /// and its change has not arrived): the store, which every node commits to before an RT
    /// leaves, decides.
    #[cold]
    fn settle_ahead(&self, claims: &RtClaims) -> Result<(), Error> {
        let reg = self.read(|db| db.registration(claims.registration_id))?;
        let state = reg
            .filter(|r| r.status == RegistrationStatus::Active)
            .map(|r| FamilyState {
                generation: r.generation,
                binding: r.binding,
            });
        Ok(judge::settle(claims, state)?)
    }

    /// Whether a registration is live in memory (not revoked, not pruned after expiry): what
    /// validation consults. Lock-free.
    pub fn is_registration_live(&self, id: RegistrationId) -> bool {
        self.inner.families.get(id).is_some()
    }

    /// Where to start following revocations: the newest change committed now. See
    /// [`Engine::revocations_after`].
    pub fn revocation_cursor(&self) -> Result<u64, Error> {
        self.inner.store.settle_numbers()?;
        self.read(|db| db.audit_head())
    }

    /// The registrations revoked after `cursor`, oldest first and at most `limit`, with the
    /// cursor to pass next: every way a registration stops being live (revoked directly, by a
    /// block, by its PT's revocation, on rotation reuse), once each, in commit order. What a
    /// broker's validator follows to end the sessions of revoked devices.
    pub fn revocations_after(
        &self,
        cursor: u64,
        limit: usize,
    ) -> Result<(Vec<RegistrationId>, u64), Error> {
        self.inner.store.settle_numbers()?;
        self.read(|db| db.revocations(cursor, limit))
    }

    /// Validate an RT and return the identity it carries, for services such as MQTT brokers.
    pub fn introspect(&self, text: &[u8], now: Timestamp) -> Result<Introspection, Error> {
        let v = self.validate_rt(text, now)?;
        let reg = self
            .read(|db| db.registration(v.claims.registration_id))?
            .filter(|r| r.status == RegistrationStatus::Active)
            .ok_or(Error::Revoked)?;
        // The store's generation too, as validation judges it: this node's memory may not have
        // the newest generation yet (another node refreshed the RT a moment ago).
        judge::settle(
            &v.claims,
            Some(FamilyState {
                generation: reg.generation,
                binding: reg.binding,
            }),
        )?;
        Ok(Introspection {
            device_id: reg.device_id,
            registration_id: reg.id,
            pt_id: reg.pt_id,
            generation: v.claims.generation,
            expires_at: v.claims.expires_at,
        })
    }

    /// Refresh an RT: the current generation gets generation + 1 with a fresh lifetime under
    /// the current key epoch.
    ///
    /// - The immediately previous generation presented again within the grace window gets the
    ///   *same* successor (a lost response can be retried).
    /// - Any older generation, or the previous one after the grace window, is reuse: the
    ///   registration is revoked, a `rotation_reuse` leak signal is raised, and the result is
    ///   [`Error::RotationReuse`].
    /// - An expired RT cannot be refreshed: the device must provision again.
    pub fn refresh(&self, rt: &str, actor: &Actor, now: Timestamp) -> Result<Refreshed, Error> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.refresh_then(rt, actor, now, move |r| {
            let _ = tx.send(r);
        });
        rx.recv()
            .unwrap_or_else(|_| Err(Error::store("the store's writer failed".into())))
    }

    /// [`Engine::refresh`] without blocking: the RT is checked on the calling thread (parse,
    /// MAC, expiry; cheap), then the rotation runs on the store's writer and `done` is called
    /// there once it is durable. For async servers, which would otherwise park a thread per
    /// refresh. If the writer has stopped, `done` is dropped without being called.
    pub fn refresh_then(
        &self,
        rt: &str,
        actor: &Actor,
        now: Timestamp,
        done: impl FnOnce(Result<Refreshed, Error>) + Send + 'static,
    ) {
        let presented = match UntrustedRt::parse(rt.as_bytes())
            .map_err(Error::from)
            .and_then(|parsed| self.authenticate_rt(&parsed, now))
        {
            Ok(c) => c,
            Err(e) => return done(Err(e)),
        };
        let actor = actor.clone();
        let registration = presented.registration_id;
        // Every check comes before the first write, and after it only a failed write returns
        // `Err`: the job may skip its savepoint (`Store::submit_refresh`).
        let job = super::job(
            self.inner.clone(),
            now,
            move |tx| {
                tx.inner
                    .refresh_limits
                    .check(&presented.registration_id, tx.now)
                    .map_err(|retry_after| Error::RateLimited { retry_after })?;
                let mut reg = tx
                    .db
                    .registration(presented.registration_id)?
                    .ok_or(Error::Unauthenticated)?;
                if reg.binding != presented.binding {
                    // An RT of a registration that had this id before a restore: that
                    // registration is gone, and this one is not its to touch.
                    return Err(Error::Revoked);
                }
                if reg.status != RegistrationStatus::Active {
                    tx.leak(revoked_rt_use(
                        tx.now,
                        &reg,
                        actor.source.clone(),
                        format!(
                            "refresh with revoked RT generation {}",
                            presented.generation
                        ),
                    ))?;
                    return Ok(Committed::Refusal(Error::Revoked));
                }
                let ring = tx.inner.keys.load();
                let now_secs = tx.now.unix_secs();
                if presented.generation == reg.generation {
                    let Some(next) = reg.generation.checked_add(1).filter(|g| *g < 1 << 31) else {
                        return Err(Error::GenerationExhausted);
                    };
                    let epoch = ring.current;
                    let key = tx
                        .inner
                        .rt_keys
                        .get(epoch)
                        .ok_or(Error::Keys("current RT key missing".into()))?;
                    reg.generation = next;
                    reg.key_epoch = epoch;
                    reg.issued_at = now_secs;
                    reg.expires_at = now_secs.saturating_add(reg.lifetime_secs);
                    // The refresh records its audit event with itself (one row, not two).
                    let audit = RefreshAudit {
                        at: tx.now,
                        actor: &actor.name,
                        source: actor.source.as_deref(),
                    };
                    tx.db.refresh_registration(&reg, audit)?;
                    tx.effect(set_family(&reg));
                    if many_sources(tx, &reg, &actor)? {
                        return Ok(Committed::Refusal(Error::Revoked));
                    }
                    let claims = claims_of(&reg);
                    return Ok(Committed::Answer(Refreshed {
                        rt: claims.mint(key),
                        claims,
                        retried: false,
                        device_id: reg.device_id,
                    }));
                }
                let grace = tx.inner.config.refresh_grace.as_secs();
                if presented.generation.checked_add(1) == Some(reg.generation)
                    && now_secs < reg.issued_at.saturating_add(grace)
                {
                    let key = tx.inner.rt_keys.get(reg.key_epoch).ok_or(Error::Revoked)?;
                    let claims = claims_of(&reg);
                    return Ok(Committed::Answer(Refreshed {
                        rt: claims.mint(key),
                        claims,
                        retried: true,
                        device_id: reg.device_id,
                    }));
                }
                if presented.generation > reg.generation {
                    // Authentic but from the future: only possible if the store lost a refresh.
                    return Err(Error::Unauthenticated);
                }
                let revoke_pt =
                    tx.inner.config.leak_policy.rotation_reuse == LeakResponse::RevokePt;
                tx.leak(NewLeakSignal {
                    at: tx.now,
                    kind: LeakKind::RotationReuse,
                    pt_id: Some(reg.pt_id),
                    registration_id: Some(reg.id),
                    operation_id: None,
                    source: actor.source.clone(),
                    action: if revoke_pt {
                        "revoked_pt"
                    } else {
                        "revoked_registration"
                    }
                    .into(),
                    detail: format!(
                        "generation {} presented while generation {} is current",
                        presented.generation, reg.generation
                    ),
                })?;
                revoke_in_tx(tx, reg.id, "rotation reuse", &Actor::system())?;
                if revoke_pt {
                    super::pts::revoke_pt_in_tx(
                        tx,
                        &reg.pt_id,
                        "rotation reuse",
                        &Actor::system(),
                    )?;
                }
                Ok(Committed::Refusal(Error::RotationReuse))
            },
            move |r| done(r.and_then(Committed::into_result)),
        );
        self.inner.store.submit_refresh(job, registration);
    }

    /// Revoke a registration: all its RTs stop validating at once. The revocation is durable
    /// and effective in memory before this returns. Irreversible; revoking again changes
    /// nothing.
    pub fn revoke_registration(
        &self,
        id: RegistrationId,
        reason: &str,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<(), Error> {
        check_label("reason", reason)?;
        let (reason, actor) = (reason.to_owned(), actor.clone());
        self.write(now, move |tx| {
            tx.db
                .registration(id)?
                .ok_or(Error::NotFound("registration"))?;
            revoke_in_tx(tx, id, &reason, &actor)
        })
    }

    /// Revoke every active registration of a device id, in one transaction: all of them or,
    /// on any failure, none. There is no cap: a device id with 20,000 registrations (a fleet
    /// PT that gave every unit the same id) loses all 20,000 at once. Returns how many were
    /// revoked; 0 when the device id has no active registration.
    pub fn revoke_device(
        &self,
        device_id: &DeviceId,
        reason: &str,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<usize, Error> {
        check_label("reason", reason)?;
        let (d, reason, actor) = (device_id.clone(), reason.to_owned(), actor.clone());
        self.write(now, move |tx| revoke_device_in_tx(tx, &d, &reason, &actor))
    }

    /// Block a device id: no further provisioning for it, and its active registrations are
    /// revoked. Returns how many registrations were revoked.
    pub fn block_device(
        &self,
        device_id: &DeviceId,
        reason: &str,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<usize, Error> {
        check_label("reason", reason)?;
        let (d, reason, actor) = (device_id.clone(), reason.to_owned(), actor.clone());
        self.write(now, move |tx| {
            tx.db.block(&BlockRecord {
                device_id: d.clone(),
                at: tx.now,
                by: actor.name.clone(),
                reason: reason.clone(),
            })?;
            let n = revoke_device_in_tx(tx, &d, &format!("device blocked: {reason}"), &actor)?;
            tx.audit(
                &actor,
                "device.block",
                d.as_str(),
                serde_json::json!({
                    "reason": reason, "registrations_revoked": n,
                }),
            )?;
            Ok(n)
        })
    }

    /// Lift a block. Returns false if the device id was not blocked.
    pub fn unblock_device(
        &self,
        device_id: &DeviceId,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<bool, Error> {
        let (d, actor) = (device_id.clone(), actor.clone());
        self.write(now, move |tx| {
            let was = tx.db.unblock(&d)?;
            if was {
                tx.audit(&actor, "device.unblock", d.as_str(), serde_json::json!({}))?;
            }
            Ok(was)
        })
    }

    /// Record that a revoked RT was presented somewhere (the server calls this when validation
    /// says [`Error::Revoked`]).
    pub fn report_revoked_rt_use(
        &self,
        registration: RegistrationId,
        source: Option<String>,
        now: Timestamp,
    ) -> Result<(), Error> {
        self.write(now, move |tx| {
            let Some(reg) = tx.db.registration(registration)? else {
                return Ok(());
            };
            tx.leak(revoked_rt_use(
                tx.now,
                &reg,
                source,
                "revoked RT presented".into(),
            ))
        })
    }

    /// One registration.
    pub fn registration(&self, id: RegistrationId) -> Result<RegistrationRecord, Error> {
        self.read(|db| db.registration(id))?
            .ok_or(Error::NotFound("registration"))
    }

    /// Registrations matching a query, newest first.
    pub fn list_registrations(
        &self,
        q: &RegistrationQuery,
    ) -> Result<Vec<RegistrationRecord>, Error> {
        self.read(|db| db.list_registrations(q))
    }

    /// Blocked device ids.
    pub fn list_blocked(&self) -> Result<Vec<BlockRecord>, Error> {
        self.read(|db| db.list_blocked())
    }
}

/// Count the address `actor` refreshes `reg` from, and raise the `many_sources` leak signal
/// (applying its policy) when the registration goes over the threshold. True when the policy
/// revoked the PT, so the refresh must be refused.
fn many_sources(tx: &mut Tx<'_>, reg: &RegistrationRecord, actor: &Actor) -> Result<bool, Error> {
    let Some(source) = &actor.source else {
        return Ok(false);
    };
    let Some(n) = tx.inner.sources.record(reg.id, source, tx.now) else {
        return Ok(false);
    };
    let revoke = tx.inner.config.leak_policy.many_sources == LeakResponse::RevokePt;
    let window = tx.inner.config.many_sources.window.as_secs();
    tx.leak(NewLeakSignal {
        at: tx.now,
        kind: LeakKind::ManySources,
        pt_id: Some(reg.pt_id),
        registration_id: Some(reg.id),
        operation_id: None,
        source: actor.source.clone(),
        action: if revoke { "revoked_pt" } else { "flagged" }.into(),
        detail: format!("refreshed from {n} addresses within {window} s"),
    })?;
    if revoke {
        super::pts::revoke_pt_in_tx(tx, &reg.pt_id, "many sources", &Actor::system())?;
    }
    Ok(revoke)
}

/// The leak signal for a revoked RT presented by a device.
fn revoked_rt_use(
    at: Timestamp,
    reg: &RegistrationRecord,
    source: Option<String>,
    detail: String,
) -> NewLeakSignal {
    NewLeakSignal {
        at,
        kind: LeakKind::RevokedTokenUse,
        pt_id: Some(reg.pt_id),
        registration_id: Some(reg.id),
        operation_id: None,
        source,
        action: "refused".into(),
        detail,
    }
}

/// The claims of a registration's current RT.
pub(crate) fn claims_of(reg: &RegistrationRecord) -> RtClaims {
    RtClaims {
        key_id: reg.key_epoch,
        registration_id: reg.id,
        binding: reg.binding,
        generation: reg.generation,
        issued_at: reg.issued_at,
        expires_at: reg.expires_at,
    }
}

/// The effect that makes a registration's current generation the live one in memory.
pub(crate) fn set_family(reg: &RegistrationRecord) -> Effect {
    Effect::SetFamily(
        reg.id,
        FamilyState {
            generation: reg.generation,
            binding: reg.binding,
        },
        reg.expires_at,
    )
}

/// Revoke a registration inside a write job (no-op if already revoked).
/// Revoke every active registration of `device_id` in this transaction; how many.
fn revoke_device_in_tx(
    tx: &mut Tx<'_>,
    device_id: &DeviceId,
    reason: &str,
    actor: &Actor,
) -> Result<usize, Error> {
    let regs = tx.db.active_registrations_of_device(device_id)?;
    for r in &regs {
        revoke_in_tx(tx, *r, reason, actor)?;
    }
    Ok(regs.len())
}

pub(crate) fn revoke_in_tx(
    tx: &mut Tx<'_>,
    id: RegistrationId,
    reason: &str,
    actor: &Actor,
) -> Result<(), Error> {
    let Some(mut reg) = tx.db.registration(id)? else {
        return Ok(());
    };
    if reg.status == RegistrationStatus::Revoked {
        return Ok(());
    }
    reg.status = RegistrationStatus::Revoked;
    reg.revoked_at = Some(tx.now);
    reg.revoke_reason = Some(reason.to_owned());
    tx.db.update_registration(&reg)?;
    tx.audit(
        actor,
        "registration.revoke",
        &id.to_string(),
        serde_json::json!({
            "reason": reason, "device_id": reg.device_id,
        }),
    )?;
    tx.effect(Effect::Revoked(id));
    Ok(())
}
