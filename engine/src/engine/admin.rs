//! Admin tokens: the credentials of operators (technicians and admins).
//!
//! Same layout and verification as PTs (see docs/tokens.md) under the prefix `tsat_` and their
//! own verifier key; the store keeps only verifiers.

use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::Engine;
use crate::error::Error;
use crate::model::{check_label, Actor, AdminRole, AdminTokenId, AdminTokenRecord};
use crate::secret::AdminToken;
use crate::time::Timestamp;
use tessera_proto::token::pt::{self, ParsedPt};

pub use tessera_proto::token::ADMIN_TOKEN_PREFIX;

/// A step of pairing a phone with an admin token (see [`Engine::record_pairing`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PairingStep {
    /// An admin issued a pairing code, valid until `expires_at`.
    Issued {
        /// When the code stops working.
        expires_at: Timestamp,
    },
    /// A phone exchanged the code for a console session.
    Used,
}

impl Engine {
    /// Create an admin token for `name` with `role`. The text is returned once.
    pub fn create_admin_token(
        &self,
        name: &str,
        role: AdminRole,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<(AdminTokenRecord, AdminToken), Error> {
        check_label("name", name)?;
        if name.is_empty() {
            return Err(crate::error::InputError::new("name", "must not be empty").into());
        }
        let ring = self.inner.keys.load_full();
        let cur = ring.current();
        let secret = Zeroizing::new(self.random::<32>()?);
        let (text, id, verifier) =
            pt::mint_with_prefix(ADMIN_TOKEN_PREFIX, cur.epoch, &cur.admin, &secret);
        let rec = AdminTokenRecord {
            id: id.into(),
            name: name.to_owned(),
            role,
            created_at: now,
            revoked_at: None,
        };
        let out = rec.clone();
        let actor = actor.clone();
        self.write(now, move |tx| {
            tx.db.insert_admin_token(&rec, &verifier)?;
            tx.audit(
                &actor,
                "admin_token.create",
                &rec.id.to_string(),
                serde_json::json!({
                    "name": rec.name, "role": rec.role,
                }),
            )
        })?;
        Ok((out, AdminToken::new(text)))
    }

    /// Check an admin token and return its record.
    ///
    /// # Security
    /// Same two-stage check as [`Engine::verify_pt`]: the tag is checked in constant time
    /// before any lookup, so unknown ids and wrong secrets fail alike.
    pub fn verify_admin_token(
        &self,
        token: &str,
        _now: Timestamp,
    ) -> Result<AdminTokenRecord, Error> {
        let parsed = ParsedPt::parse_with_prefix(ADMIN_TOKEN_PREFIX, token.as_bytes())?;
        let ring = self.inner.keys.load();
        let (key, known) = ring.admin_key_or_dummy(parsed.untrusted_id().epoch());
        let (ok, verifier) = parsed.check_tag(key);
        if !(ok && known) {
            return Err(Error::Unauthenticated);
        }
        let id = AdminTokenId::from(parsed.untrusted_id());
        let Some((rec, stored)) = self.read(|db| db.admin_token(&id))? else {
            return Err(Error::Unauthenticated);
        };
        if !bool::from(stored.ct_eq(&*verifier)) {
            return Err(Error::Unauthenticated);
        }
        if rec.revoked_at.is_some() {
            return Err(Error::Revoked);
        }
        Ok(rec)
    }

    /// Revoke an admin token. Returns false if it was already revoked.
    pub fn revoke_admin_token(
        &self,
        id: &AdminTokenId,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<bool, Error> {
        let (id, actor) = (*id, actor.clone());
        self.write(now, move |tx| {
            tx.db
                .admin_token(&id)?
                .ok_or(Error::NotFound("admin token"))?;
            let changed = tx.db.revoke_admin_token(&id, tx.now)?;
            if changed {
                tx.audit(
                    &actor,
                    "admin_token.revoke",
                    &id.to_string(),
                    serde_json::json!({}),
                )?;
            }
            Ok(changed)
        })
    }

    /// Record a step of pairing a phone with admin token `id` in the audit log: the pairing
    /// code was issued (valid until `expires_at`), or a phone exchanged it for a session. The
    /// code itself is never recorded.
    pub fn record_pairing(
        &self,
        id: &AdminTokenId,
        step: PairingStep,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<(), Error> {
        let (id, actor) = (*id, actor.clone());
        self.write(now, move |tx| {
            tx.db
                .admin_token(&id)?
                .ok_or(Error::NotFound("admin token"))?;
            let (action, detail) = match step {
                PairingStep::Issued { expires_at } => (
                    "admin_token.pairing_issued",
                    serde_json::json!({ "expires_at": expires_at }),
                ),
                PairingStep::Used => ("admin_token.paired", serde_json::json!({})),
            };
            tx.audit(&actor, action, &id.to_string(), detail)
        })
    }

    /// All admin tokens (without secrets).
    pub fn list_admin_tokens(&self) -> Result<Vec<AdminTokenRecord>, Error> {
        self.read(|db| db.list_admin_tokens())
    }
}
