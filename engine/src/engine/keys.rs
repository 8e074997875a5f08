//! Key epochs: creation on first open, rotation, emergency retirement, and dropping RT keys
//! whose tokens have all expired.

use std::sync::Arc;

use ring::hmac;

use super::{Effect, Engine, Inner, Tx};
use crate::error::{Error, InputError};
use crate::keys::{EpochKeys, Keyring, RtKeyTable};
use crate::model::Actor;
use crate::store::KeyEpochRecord;
use crate::time::Timestamp;

pub use tessera_proto::admin::records::KeyEpochInfo;

pub(crate) const META_ROOT_CHECK: &str = "root_check";

pub(super) fn init_epochs(tx: &mut Tx<'_>, check_hex: &str) -> Result<Vec<KeyEpochRecord>, Error> {
    match tx.db.meta(META_ROOT_CHECK)? {
        Some(stored) if stored != check_hex => {
            return Err(Error::Keys(
                "the key keeper's root key does not match this store's (every node of a store \
                 needs the same root: the same HSM key or key file)"
                    .into(),
            ))
        }
        Some(_) => {}
        None => tx.db.set_meta(META_ROOT_CHECK, check_hex)?,
    }
    let mut epochs = tx.db.key_epochs()?;
    if epochs.is_empty() {
        let first = KeyEpochRecord {
            epoch: 1,
            created_at: tx.now,
            rt_keep_until: None,
            retired_at: None,
        };
        tx.db.put_key_epoch(&first)?;
        tx.audit(
            &Actor::system(),
            "keys.init",
            "epoch:1",
            serde_json::json!({}),
        )?;
        epochs.push(first);
    }
    Ok(epochs)
}

/// RTs minted under this epoch may still be valid.
pub(crate) fn rt_live(rec: &KeyEpochRecord, now: Timestamp) -> bool {
    rec.retired_at.is_none() && rec.rt_keep_until.is_none_or(|t| t > now)
}

/// Derive every epoch's keys through the keeper: the keyring, and the RT keys of live epochs.
pub(super) fn load_keys(
    inner: &Inner,
    epochs: &[KeyEpochRecord],
    dummy: hmac::Key,
    now: Timestamp,
) -> Result<Keyring, Error> {
    let mut out = Vec::with_capacity(epochs.len());
    for (i, rec) in epochs.iter().enumerate() {
        if rec.epoch as usize != i + 1 {
            return Err(Error::store(format!(
                "key epochs are not contiguous at {}",
                rec.epoch
            )));
        }
        out.push(Arc::new(EpochKeys::derive(&*inner.keeper, rec.epoch)?));
        if rt_live(rec, now) {
            inner
                .rt_keys
                .install(rec.epoch, RtKeyTable::derive(&*inner.keeper, rec.epoch)?);
        }
    }
    let current = epochs
        .last()
        .map(|e| e.epoch)
        .ok_or_else(|| Error::store("no key epoch".into()))?;
    Ok(Keyring::new(current, out, dummy))
}

impl Engine {
    /// Start a new key epoch: new RTs, PTs and operations use it at once; RTs minted under
    /// earlier epochs keep validating until the longest of them has expired (now + the maximum
    /// RT lifetime + the clock-skew leeway). Returns the new epoch.
    pub fn rotate_keys(&self, actor: &Actor, now: Timestamp) -> Result<u32, Error> {
        let _serial = self
            .inner
            .rotation
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let old = self.inner.keys.load_full();
        let epoch = old.current + 1;
        let rt_key = RtKeyTable::derive(&*self.inner.keeper, epoch)?;
        let new_keys = Arc::new(EpochKeys::derive(&*self.inner.keeper, epoch)?);
        let keep_until = now
            .saturating_add(self.inner.config.max_rt_lifetime)
            .saturating_add(self.inner.config.clock_skew_leeway);
        // Validators get the new epoch's RT key before any RT is minted with it.
        self.inner.write_validator_keys(&[epoch])?;
        let actor = actor.clone();
        self.write(now, move |tx| {
            let mut epochs = tx.db.key_epochs()?;
            if epochs.last().map(|e| e.epoch) != Some(old.current) {
                return Err(Error::store(
                    "key epochs changed underneath the rotation".into(),
                ));
            }
            if let Some(prev) = epochs.last_mut() {
                prev.rt_keep_until = Some(keep_until);
                tx.db.put_key_epoch(prev)?;
            }
            tx.db.put_key_epoch(&KeyEpochRecord {
                epoch,
                created_at: tx.now,
                rt_keep_until: None,
                retired_at: None,
            })?;
            tx.audit(
                &actor,
                "keys.rotate",
                &format!("epoch:{epoch}"),
                serde_json::json!({
                    "previous": old.current, "previous_rt_keep_until": keep_until,
                }),
            )?;
            let mut list: Vec<Arc<EpochKeys>> = old.epochs().to_vec();
            list.push(new_keys);
            // The RT key goes in first, so the new current epoch can mint as soon as it is seen.
            tx.effect(Effect::InstallRtKey(epoch, rt_key));
            tx.effect(Effect::SwapKeyring(Arc::new(Keyring::new(
                epoch,
                list,
                old.dummy().clone(),
            ))));
            Ok(epoch)
        })
    }

    /// Emergency retirement of a superseded epoch: every RT minted under it stops validating
    /// at once, and devices holding one must provision again. PTs made under the epoch keep
    /// working (their verifier key is kept). The current epoch cannot be retired: rotate first.
    pub fn retire_key_epoch(&self, epoch: u32, actor: &Actor, now: Timestamp) -> Result<(), Error> {
        let _serial = self
            .inner
            .rotation
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if epoch == self.inner.keys.load().current {
            return Err(InputError::new(
                "epoch",
                "the current epoch cannot be retired; rotate first",
            )
            .into());
        }
        let actor = actor.clone();
        self.write(now, move |tx| {
            let mut epochs = tx.db.key_epochs()?;
            let rec = epochs
                .iter_mut()
                .find(|e| e.epoch == epoch)
                .ok_or(Error::NotFound("key epoch"))?;
            if rec.retired_at.is_none() {
                rec.retired_at = Some(tx.now);
                tx.db.put_key_epoch(rec)?;
            }
            tx.audit(
                &actor,
                "keys.retire",
                &format!("epoch:{epoch}"),
                serde_json::json!({}),
            )?;
            tx.effect(Effect::RetireRtKey(epoch));
            Ok(())
        })?;
        self.inner.write_validator_keys(&[])
    }

    /// Whether RTs minted under `epoch` may still validate on this node: the current epoch,
    /// or an earlier one neither retired nor past the time its RTs are kept. What else was
    /// sealed under an epoch (TLS session tickets) follows the same rule.
    pub fn key_epoch_in_use(&self, epoch: u32) -> bool {
        self.inner.rt_keys.get(epoch).is_some()
    }

    /// The key epoch new tokens are made under.
    pub fn current_key_epoch(&self) -> u32 {
        self.inner.keys.load().current
    }

    /// The key that seals TLS session tickets of the endpoint speaking `alpn` in key epoch
    /// `epoch`, derived from the root: every node of a store (and a restarted node) derives the
    /// same one, so a device resumes its TLS session wherever it reconnects. One keeper call
    /// (an HSM operation with the PKCS#11 keeper): callers keep the key for the epoch.
    pub fn tls_ticket_key(&self, alpn: &[u8], epoch: u32) -> Result<crate::KeyBytes, Error> {
        let mut context = b"tessera/v1/tls-ticket/".to_vec();
        context.extend_from_slice(&epoch.to_be_bytes());
        context.push(b'/');
        context.extend_from_slice(alpn);
        self.inner.keeper.derive(&context)
    }

    /// Every key epoch, oldest first.
    pub fn key_epochs(&self) -> Result<Vec<KeyEpochInfo>, Error> {
        let ring = self.inner.keys.load();
        let recs = self.read(|db| db.key_epochs())?;
        Ok(recs
            .into_iter()
            .map(|record| KeyEpochInfo {
                current: record.epoch == ring.current,
                rt_key_loaded: self.inner.rt_keys.get(record.epoch).is_some(),
                record,
            })
            .collect())
    }

    pub(super) fn drop_expired_rt_keys(&self, now: Timestamp) -> Result<usize, Error> {
        let recs = self.read(|db| db.key_epochs())?;
        let _serial = self
            .inner
            .rotation
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut n = 0;
        for r in recs {
            if !rt_live(&r, now) && self.inner.rt_keys.get(r.epoch).is_some() {
                self.inner.rt_keys.retire(r.epoch);
                n += 1;
            }
        }
        if n > 0 {
            self.inner.write_validator_keys(&[])?;
        }
        Ok(n)
    }
}
