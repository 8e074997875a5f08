//! A local validator: checks RTs against a server's data directory from another process on the
//! same host (an MQTT broker plugin, say), without a network round trip.
//!
//! It opens the server's store read-only and its root key through a [`KeyKeeper`] (the data
//! directory's key file by default). Every check reads the RT's key epoch and registration from
//! the store, so a revocation, rotation or key retirement committed by the server is seen by the
//! next check — there is no cache to go stale. A check costs one MAC and two indexed reads
//! (docs/reliability.md has the figure); the server's own [`Engine::validate_rt`] stays the
//! lock-free, allocation-free path.
//!
//! [`Engine::validate_rt`]: crate::Engine::validate_rt

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

use crate::engine::keys::{rt_live, META_ROOT_CHECK};
use crate::keys::{RtKeyTable, ROOT_CHECK_CONTEXT, ROOT_KEY_FILE};
use crate::model::RegistrationStatus;
use crate::store::SqliteReader;
use crate::token::UntrustedRt;
use crate::{Error, Introspection, KeyKeeper, SoftwareKeeper, Timestamp};

/// Validates RTs against a server's data directory. Cheap to share between threads.
pub struct LocalValidator {
    reader: SqliteReader,
    keeper: Box<dyn KeyKeeper>,
    keys: Mutex<HashMap<u32, hmac::Key>>,
    dummy: hmac::Key,
    leeway: Duration,
}

impl std::fmt::Debug for LocalValidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalValidator")
            .field("reader", &self.reader)
            .finish_non_exhaustive()
    }
}

impl LocalValidator {
    /// Open the data directory of a server that keeps its root in the key file
    /// (`root.key`, the software keeper).
    pub fn open(dir: &Path) -> Result<Self, Error> {
        Self::open_with(dir, SoftwareKeeper::open(&dir.join(ROOT_KEY_FILE))?)
    }

    /// Open the data directory with another key keeper holding the same root (for example the
    /// PKCS#11 keeper on the same HSM). Refuses a root that does not match the directory.
    pub fn open_with(dir: &Path, keeper: impl KeyKeeper + 'static) -> Result<Self, Error> {
        let reader = SqliteReader::open(dir)?;
        let check = keeper.derive(ROOT_CHECK_CONTEXT)?;
        let check_hex = data_encoding::HEXLOWER.encode(&check.expose()[..16]);
        match reader.read(|db| db.meta(META_ROOT_CHECK))? {
            Some(stored) if stored == check_hex => {}
            Some(_) => {
                return Err(Error::Keys(
                    "the key keeper's root key does not match this data directory".into(),
                ))
            }
            None => return Err(Error::Store("the data directory is not initialised".into())),
        }
        let mut dummy = [0u8; 32];
        SystemRandom::new()
            .fill(&mut dummy)
            .map_err(|_| Error::Keys("system random generator failed".into()))?;
        Ok(Self {
            reader,
            keeper: Box::new(keeper),
            keys: Mutex::new(HashMap::new()),
            dummy: hmac::Key::new(hmac::HMAC_SHA256, &dummy),
            leeway: Duration::from_secs(60),
        })
    }

    /// Accept RTs up to `leeway` past their expiry (default 60 s, as the engine's default; at
    /// most [`MAX_CLOCK_SKEW_LEEWAY`](crate::MAX_CLOCK_SKEW_LEEWAY)).
    pub fn set_clock_skew_leeway(&mut self, leeway: Duration) {
        self.leeway = leeway.min(crate::MAX_CLOCK_SKEW_LEEWAY);
    }

    fn key(&self, epoch: u32) -> Result<hmac::Key, Error> {
        let mut keys = self
            .keys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(k) = keys.get(&epoch) {
            return Ok(k.clone());
        }
        let k = RtKeyTable::derive(self.keeper.as_ref(), epoch)?;
        keys.insert(epoch, k.clone());
        Ok(k)
    }

    /// Validate an RT (text form) as the server would at `now`, and return the identity it
    /// carries. Errors as [`Engine::validate_rt`](crate::Engine::validate_rt): a format error,
    /// the opaque `Unauthenticated`, or (only after the MAC verified) `Expired`, `Revoked` or
    /// `Superseded`.
    pub fn validate(&self, text: &[u8], now: Timestamp) -> Result<Introspection, Error> {
        let rt = UntrustedRt::parse(text)?;
        let claims = rt.untrusted_claims();
        let live = self.reader.read(|db| {
            Ok(db
                .key_epochs()?
                .iter()
                .any(|e| e.epoch == claims.key_id && rt_live(e, now)))
        })?;
        let key = if live {
            self.key(claims.key_id)?
        } else {
            self.dummy.clone()
        };
        if !(rt.verify_mac(&key) && live) {
            return Err(Error::Unauthenticated);
        }
        if now.unix_secs() >= claims.expires_at.saturating_add(self.leeway.as_secs()) {
            return Err(Error::Expired);
        }
        let reg = self
            .reader
            .read(|db| db.registration(claims.registration_id))?
            .ok_or(Error::Revoked)?;
        // The binding: an RT of a registration that had this id before a restore is refused.
        if reg.status != RegistrationStatus::Active || reg.binding != claims.binding {
            return Err(Error::Revoked);
        }
        if claims.generation < reg.generation {
            return Err(Error::Superseded);
        }
        if claims.generation > reg.generation {
            // Impossible for an RT the server issued (the generation is stored before the RT
            // leaves); refuse rather than guess.
            return Err(Error::Revoked);
        }
        Ok(Introspection {
            device_id: reg.device_id,
            registration_id: reg.id,
            pt_id: reg.pt_id,
            generation: claims.generation,
            expires_at: claims.expires_at,
        })
    }
}
