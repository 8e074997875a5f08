//! Key epochs: creation on first open, rotation, emergency retirement, and dropping RT keys
//! whose tokens have all expired.

use std::sync::Arc;

use ring::hmac;

use super::{Effect, Engine, Tx};
use crate::error::Error;
use crate::keys::{EpochKeys, EpochLife, KeyKeeper, Keyring};
use crate::model::Actor;
use crate::store::KeyEpochRecord;
use crate::time::Timestamp;

/// A key epoch as shown to operators.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeyEpochInfo {
    /// The stored record.
    #[serde(flatten)]
    pub record: KeyEpochRecord,
    /// New RTs are minted under this epoch.
    pub current: bool,
    /// RTs under this epoch still validate.
    pub rt_key_loaded: bool,
}

const META_ROOT_CHECK: &str = "root_check";

pub(super) fn init_epochs(tx: &mut Tx<'_>, check_hex: &str) -> Result<Vec<KeyEpochRecord>, Error> {
    match tx.db.meta(META_ROOT_CHECK)? {
        Some(stored) if stored != check_hex => {
            return Err(Error::Keys(
                "the key keeper's root key does not match this data directory".into(),
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

fn life(rec: &KeyEpochRecord, now: Timestamp) -> EpochLife {
    EpochLife {
        rt_live: rec.retired_at.is_none() && rec.rt_keep_until.is_none_or(|t| t > now),
    }
}

pub(super) fn build_keyring(
    keeper: &dyn KeyKeeper,
    epochs: &[KeyEpochRecord],
    dummy: hmac::Key,
    now: Timestamp,
) -> Result<Keyring, Error> {
    let mut out = Vec::with_capacity(epochs.len());
    for (i, rec) in epochs.iter().enumerate() {
        if rec.epoch as usize != i + 1 {
            return Err(Error::Store(format!(
                "key epochs are not contiguous at {}",
                rec.epoch
            )));
        }
        out.push(Arc::new(EpochKeys::derive(
            keeper,
            rec.epoch,
            life(rec, now),
        )?));
    }
    let current = epochs
        .last()
        .map(|e| e.epoch)
        .ok_or_else(|| Error::Store("no key epoch".into()))?;
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
        let new_keys = Arc::new(EpochKeys::derive(
            &*self.inner.keeper,
            epoch,
            EpochLife { rt_live: true },
        )?);
        let keep_until = now
            .saturating_add(self.inner.config.max_rt_lifetime)
            .saturating_add(self.inner.config.clock_skew_leeway);
        let actor = actor.clone();
        self.write(now, move |tx| {
            let mut epochs = tx.db.key_epochs()?;
            if epochs.last().map(|e| e.epoch) != Some(old.current) {
                return Err(Error::Store(
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
        let old = self.inner.keys.load_full();
        if epoch == old.current {
            return Err(crate::error::InputError::new(
                "epoch",
                "the current epoch cannot be retired; rotate first",
            )
            .into());
        }
        let keeper_epochs: Vec<Arc<EpochKeys>> = old.epochs().to_vec();
        let actor = actor.clone();
        // Rebuild the retired epoch's keys without its RT key.
        let replacement = Arc::new(EpochKeys::derive(
            &*self.inner.keeper,
            epoch,
            EpochLife { rt_live: false },
        )?);
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
            let list = keeper_epochs
                .into_iter()
                .map(|e| {
                    if e.epoch == epoch {
                        replacement.clone()
                    } else {
                        e
                    }
                })
                .collect();
            tx.effect(Effect::SwapKeyring(Arc::new(Keyring::new(
                old.current,
                list,
                old.dummy().clone(),
            ))));
            Ok(())
        })
    }

    /// Every key epoch, oldest first.
    pub fn key_epochs(&self) -> Result<Vec<KeyEpochInfo>, Error> {
        let ring = self.inner.keys.load();
        let recs = self.read(|db| db.key_epochs())?;
        Ok(recs
            .into_iter()
            .map(|record| KeyEpochInfo {
                current: record.epoch == ring.current,
                rt_key_loaded: ring.rt_key(record.epoch).is_some(),
                record,
            })
            .collect())
    }

    pub(super) fn drop_expired_rt_keys(&self, now: Timestamp) -> Result<usize, Error> {
        let ring = self.inner.keys.load_full();
        let recs = self.read(|db| db.key_epochs())?;
        let expired: Vec<u32> = recs
            .iter()
            .filter(|r| !life(r, now).rt_live && ring.rt_key(r.epoch).is_some())
            .map(|r| r.epoch)
            .collect();
        if expired.is_empty() {
            return Ok(0);
        }
        let _serial = self
            .inner
            .rotation
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let ring = self.inner.keys.load_full();
        let mut list = Vec::with_capacity(ring.epochs().len());
        for e in ring.epochs() {
            if expired.contains(&e.epoch) {
                list.push(Arc::new(EpochKeys::derive(
                    &*self.inner.keeper,
                    e.epoch,
                    EpochLife { rt_live: false },
                )?));
            } else {
                list.push(e.clone());
            }
        }
        self.inner.keys.store(Arc::new(Keyring::new(
            ring.current,
            list,
            ring.dummy().clone(),
        )));
        Ok(expired.len())
    }
}
