//! Provisioning tokens: creation (single and batch), verification, revocation, queries.

use std::io::Write;

use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::{Effect, Engine, Tx};
use crate::error::{Error, InputError};
use crate::model::Actor;
use crate::model::{
    check_label, ApprovalPolicy, DeviceIdPolicy, OperationState, PtId, PtKind, PtRecord, PtSpec,
};
use crate::time::Timestamp;
use tessera_proto::token::pt::{self, ParsedPt};

/// The result of a batch creation.
pub use tessera_proto::admin::answers::PtBatchDone as PtBatch;

/// Most PTs in one batch.
pub const MAX_BATCH: u64 = 10_000_000;

/// PTs a batch writes per store job (and to its output per chunk).
pub const BATCH_CHUNK: u64 = 512;

impl Engine {
    fn check_spec(&self, spec: &PtSpec) -> Result<(), Error> {
        check_label("label", &spec.label)?;
        if spec.rt_lifetime.as_secs() < 60 {
            return Err(InputError::new("rt_lifetime", "must be at least 60 seconds").into());
        }
        if spec.rt_lifetime > self.inner.config.max_rt_lifetime {
            return Err(
                InputError::new("rt_lifetime", "exceeds the server's maximum RT lifetime").into(),
            );
        }
        if let PtKind::Fleet {
            max_registrations: 0,
        } = spec.kind
        {
            return Err(InputError::new("max_registrations", "must be at least 1").into());
        }
        let approves_itself = matches!(
            spec.approval,
            ApprovalPolicy::Automatic | ApprovalPolicy::AttributeRule(_)
        );
        if approves_itself && spec.device_id_policy == DeviceIdPolicy::Technician {
            return Err(InputError::new(
                "device_id_policy",
                "automatic approval needs device-chosen ids (device or either)",
            )
            .into());
        }
        Ok(())
    }

    fn record_for(spec: &PtSpec, id: PtId, now: Timestamp, batch: Option<String>) -> PtRecord {
        PtRecord {
            id,
            label: spec.label.clone(),
            kind: spec.kind,
            approval: spec.approval.clone(),
            rt_lifetime_secs: spec.rt_lifetime.as_secs(),
            device_id_policy: spec.device_id_policy,
            expires_at: spec.expires_at,
            created_at: now,
            revoked_at: None,
            registrations_created: 0,
            batch,
        }
    }

    /// Create one PT. The returned token text is the only time the secret exists outside the
    /// device: the store keeps only its verifier.
    pub fn create_pt(
        &self,
        spec: &PtSpec,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<(PtRecord, crate::ProvisioningToken), Error> {
        self.check_spec(spec)?;
        let ring = self.inner.keys.load_full();
        let cur = ring.current();
        let secret = Zeroizing::new(self.random::<32>()?);
        let (text, id, verifier) = pt::mint(cur.epoch, &cur.pt, &secret);
        let rec = Self::record_for(spec, id, now, None);
        let out = rec.clone();
        let actor = actor.clone();
        self.write(now, move |tx| {
            tx.db.insert_pt(&rec, &verifier)?;
            tx.audit(&actor, "pt.create", &rec.id.to_string(), serde_json::json!({
                "label": rec.label, "kind": rec.kind, "approval": rec.approval,
                "rt_lifetime_secs": rec.rt_lifetime_secs, "device_id_policy": rec.device_id_policy,
            }))
        })?;
        Ok((out, text))
    }

    /// Create `count` PTs with the same settings, for a factory run. Each PT is written to
    /// `out` as one line `pt_id<TAB>token`.
    ///
    /// The batch is all or nothing: its PTs are written in small store jobs of
    /// [`BATCH_CHUNK`] while the batch is *staged* (invisible to lookups, lists and counts),
    /// and become usable together in one final write. Writing to `out` happens on the calling
    /// thread, never inside a store job, so a slow or vanished reader holds up only this call;
    /// refreshes, revocations and approvals keep flowing meanwhile. If anything fails (writing
    /// to `out` included) the batch is abandoned, no PT of it ever validates, and whatever was
    /// written to `out` must be discarded; [`Engine::prune`] deletes the abandoned rows later.
    pub fn create_pt_batch(
        &self,
        spec: &PtSpec,
        count: u64,
        mut out: Box<dyn Write + Send>,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<PtBatch, Error> {
        self.check_spec(spec)?;
        if count == 0 || count > MAX_BATCH {
            return Err(InputError::new("count", "must be between 1 and 10,000,000").into());
        }
        let batch_id = format!(
            "batch-{}",
            data_encoding::HEXLOWER.encode(&self.random::<8>()?)
        );
        let bid = batch_id.clone();
        self.write(now, move |tx| tx.db.stage_pt_batch(&bid, tx.now))?;
        match self.write_batch_chunks(spec, count, &batch_id, &mut out, now) {
            Ok(()) => {
                let (bid, spec, actor) = (batch_id.clone(), spec.clone(), actor.clone());
                self.write(now, move |tx| {
                    if !tx.db.commit_pt_batch(&bid)? {
                        return Err(Error::store("the batch was abandoned".into()));
                    }
                    tx.audit(&actor, "pt.batch_create", &bid, serde_json::json!({
                        "count": count, "label": spec.label, "kind": spec.kind, "approval": spec.approval,
                    }))
                })?;
                Ok(PtBatch { batch_id, count })
            }
            Err(e) => {
                let bid = batch_id.clone();
                // If this fails too the batch stays staged until the next open abandons it.
                let _ = self.write(now, move |tx| tx.db.abandon_pt_batches(Some(&bid)));
                Err(e)
            }
        }
    }

    /// Mint a staged batch's PTs chunk by chunk: write each chunk's lines to `out`, then insert
    /// its verifiers in one store job.
    fn write_batch_chunks(
        &self,
        spec: &PtSpec,
        count: u64,
        batch_id: &str,
        out: &mut Box<dyn Write + Send>,
        now: Timestamp,
    ) -> Result<(), Error> {
        let ring = self.inner.keys.load_full();
        let cur = ring.current();
        let mut secret = Zeroizing::new([0u8; 32]);
        let mut left = count;
        while left > 0 {
            let n = left.min(BATCH_CHUNK);
            left -= n;
            let mut lines = Zeroizing::new(String::with_capacity(n as usize * 128));
            let mut rows = Vec::with_capacity(n as usize);
            for _ in 0..n {
                self.inner.rng.fill_secret(&mut secret)?;
                let (text, id, verifier) = pt::mint(cur.epoch, &cur.pt, &secret);
                lines.push_str(&id.to_string());
                lines.push('\t');
                lines.push_str(text.expose());
                lines.push('\n');
                rows.push((
                    Engine::record_for(spec, id, now, Some(batch_id.to_owned())),
                    verifier,
                ));
            }
            out.write_all(lines.as_bytes())
                .map_err(|e| Error::InvalidInput(io_input_error(&e)))?;
            self.write(now, move |tx| {
                for (rec, verifier) in &rows {
                    tx.db.insert_pt(rec, verifier)?;
                }
                Ok(())
            })?;
        }
        out.flush()
            .map_err(|e| Error::InvalidInput(io_input_error(&e)))
    }

    /// Check a presented PT and return its record.
    ///
    /// # Security
    /// The caller controls the token. Every format-valid token costs one HMAC and one 16-byte
    /// constant-time comparison before anything is looked up, so an unknown PT id and a known
    /// id with a wrong secret fail identically ([`Error::Unauthenticated`]). Only a holder of a
    /// real secret reaches the lookup, the stored-verifier comparison, and the revoked/expired
    /// checks.
    pub fn verify_pt(&self, token: &str, now: Timestamp) -> Result<PtRecord, Error> {
        let (parsed, verifier) = self.check_pt_tag(token)?;
        let id = parsed.untrusted_id();
        let row = self.read(|db| db.pt(&id))?;
        check_pt_row(row, &verifier, now)
    }

    /// Stage one of PT verification: format, then the constant-time tag check.
    pub(crate) fn check_pt_tag(
        &self,
        token: &str,
    ) -> Result<(ParsedPt, Zeroizing<[u8; 32]>), Error> {
        let parsed = ParsedPt::parse(token.as_bytes())?;
        let ring = self.inner.keys.load();
        let (key, known) = ring.pt_key_or_dummy(parsed.untrusted_id().epoch());
        let (ok, verifier) = parsed.check_tag(key);
        if !(ok && known) {
            return Err(Error::Unauthenticated);
        }
        Ok((parsed, verifier))
    }

    /// Revoke a PT: no new operations, its pending operations are cancelled, and every
    /// registration it produced is revoked. Irreversible; revoking again changes nothing.
    /// Returns how many registrations were revoked.
    pub fn revoke_pt(
        &self,
        id: &PtId,
        reason: &str,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<usize, Error> {
        check_label("reason", reason)?;
        let (id, reason, actor) = (*id, reason.to_owned(), actor.clone());
        self.write(now, move |tx| revoke_pt_in_tx(tx, &id, &reason, &actor))
    }

    /// One PT.
    pub fn pt(&self, id: &PtId) -> Result<PtRecord, Error> {
        self.read(|db| db.pt(id))?
            .map(|(p, _)| p)
            .ok_or(Error::NotFound("provisioning token"))
    }

    /// PTs, newest first (at most `limit`, 0 means 100).
    pub fn list_pts(&self, limit: usize, include_revoked: bool) -> Result<Vec<PtRecord>, Error> {
        self.list_pts_before(limit, include_revoked, None)
    }

    /// As [`list_pts`](Self::list_pts), only those older than `before` (created earlier, or at
    /// the same time with a smaller id): the page after one that ended there.
    pub fn list_pts_before(
        &self,
        limit: usize,
        include_revoked: bool,
        before: Option<(Timestamp, PtId)>,
    ) -> Result<Vec<PtRecord>, Error> {
        self.read(|db| db.list_pts(limit, include_revoked, before))
    }
}

fn io_input_error(_e: &std::io::Error) -> InputError {
    InputError::new("output", "could not write the batch output")
}

trait FillSecret {
    fn fill_secret(&self, buf: &mut [u8; 32]) -> Result<(), Error>;
}

impl FillSecret for ring::rand::SystemRandom {
    fn fill_secret(&self, buf: &mut [u8; 32]) -> Result<(), Error> {
        ring::rand::SecureRandom::fill(self, buf)
            .map_err(|_| Error::Keys("system random generator failed".into()))
    }
}

/// Stage two: the stored verifier, then revoked and expired.
pub(crate) fn check_pt_row(
    row: Option<(PtRecord, [u8; 32])>,
    verifier: &[u8; 32],
    now: Timestamp,
) -> Result<PtRecord, Error> {
    let Some((rec, stored)) = row else {
        return Err(Error::Unauthenticated);
    };
    if !bool::from(stored.ct_eq(verifier)) {
        return Err(Error::Unauthenticated);
    }
    if rec.revoked_at.is_some() {
        return Err(Error::Revoked);
    }
    if rec.expires_at.is_some_and(|t| now >= t) {
        return Err(Error::Expired);
    }
    Ok(rec)
}

pub(crate) fn revoke_pt_in_tx(
    tx: &mut Tx<'_>,
    id: &PtId,
    reason: &str,
    actor: &Actor,
) -> Result<usize, Error> {
    let (mut rec, _) = tx.db.pt(id)?.ok_or(Error::NotFound("provisioning token"))?;
    if rec.revoked_at.is_some() {
        return Ok(0);
    }
    rec.revoked_at = Some(tx.now);
    tx.db.update_pt(&rec)?;
    let regs = tx.db.active_registrations_of_pt(id)?;
    for r in &regs {
        super::registrations::revoke_in_tx(tx, *r, &format!("pt revoked: {reason}"), actor)?;
    }
    for mut op in tx.db.pending_operations(id)? {
        if op.effective_state(tx.now) != OperationState::Pending {
            continue; // already expired; the sweep records that
        }
        op.state = OperationState::Cancelled;
        op.reason = Some("provisioning token revoked".into());
        op.decided_by = Some(actor.name.clone());
        op.decided_at = Some(tx.now);
        tx.db.update_operation(&op)?;
        tx.audit(
            actor,
            "operation.cancel",
            &op.id.to_string(),
            serde_json::json!({ "reason": op.reason }),
        )?;
        tx.effect(Effect::OperationChanged(op.id, op.state));
    }
    tx.audit(
        actor,
        "pt.revoke",
        &id.to_string(),
        serde_json::json!({
            "reason": reason, "registrations_revoked": regs.len(),
        }),
    )?;
    Ok(regs.len())
}
