//! A local validator: checks RTs against a server's data directory from another process on the
//! same host (an MQTT broker plugin, say), without a network round trip.
//!
//! It opens the server's store read-only, and takes the RT keys from the validator key file the
//! server writes beside it (`validator.keys`: the RT MAC keys of the live epochs and nothing
//! else, see `keys::validator_keys`), so it never holds the root. Every check reads the RT's key
//! epoch and registration from the store, so a revocation, rotation or key retirement committed
//! by the server is seen by the next check — there is no cache to go stale. A check costs one
//! MAC and two indexed reads (docs/reliability.md has the figure); the server's own
//! [`Engine::validate_rt`] stays the lock-free, allocation-free path.
//!
//! [`Engine::validate_rt`]: crate::Engine::validate_rt

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

use crate::engine::keys::{rt_live, META_ROOT_CHECK};
use crate::keys::{validator_keys, RtKeyTable, ROOT_CHECK_CONTEXT, VALIDATOR_KEYS_FILE};
use crate::model::{RegistrationId, RegistrationStatus};
use crate::store::SqliteReader;
use crate::{Error, Introspection, KeyKeeper, Timestamp};
use tessera_proto::token::judge::{self, FamilyState, Standing};
use tessera_proto::token::UntrustedRt;

/// Where a validator gets its RT keys.
enum KeySource {
    /// The server's validator key file (RT keys only), reread when it names an epoch not
    /// loaded yet.
    File(PathBuf),
    /// A keeper holding the root (a validator that may hold it, for example on an HSM the
    /// server shares).
    Keeper(Box<dyn KeyKeeper>),
}

/// Validates RTs against a server's data directory. Cheap to share between threads.
pub struct LocalValidator {
    reader: SqliteReader,
    source: KeySource,
    root_check: String,
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
    /// Open a server's data directory: its store, read-only, and its validator key file
    /// (`validator.keys`, which the server writes when it starts). The root key is not read.
    pub fn open(dir: &Path) -> Result<Self, Error> {
        crate::store::refuse_postgres_dir(dir)?;
        let reader = SqliteReader::open(dir)?;
        let root_check = reader
            .read(|db| db.meta(META_ROOT_CHECK))?
            .ok_or_else(|| Error::store("the data directory is not initialised".into()))?;
        let path = dir.join(VALIDATOR_KEYS_FILE);
        let validator = Self::new(reader, KeySource::File(path), root_check)?;
        validator.reload()?;
        Ok(validator)
    }

    /// Open the data directory with a key keeper holding the same root (for example the
    /// PKCS#11 keeper on the same HSM). Refuses a root that does not match the directory. This
    /// validator can derive every key of the root; prefer [`LocalValidator::open`], which
    /// holds only the RT keys.
    pub fn open_with(dir: &Path, keeper: impl KeyKeeper + 'static) -> Result<Self, Error> {
        crate::store::refuse_postgres_dir(dir)?;
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
            None => return Err(Error::store("the data directory is not initialised".into())),
        }
        Self::new(reader, KeySource::Keeper(Box::new(keeper)), check_hex)
    }

    fn new(reader: SqliteReader, source: KeySource, root_check: String) -> Result<Self, Error> {
        let mut dummy = [0u8; 32];
        SystemRandom::new()
            .fill(&mut dummy)
            .map_err(|_| Error::Keys("system random generator failed".into()))?;
        let out = Self {
            reader,
            source,
            root_check,
            keys: Mutex::new(HashMap::new()),
            dummy: hmac::Key::new(hmac::HMAC_SHA256, &dummy),
            leeway: Duration::from_secs(60),
        };
        zeroize::Zeroize::zeroize(&mut dummy);
        Ok(out)
    }

    /// Load the key file again (a rotation adds an epoch to it).
    fn reload(&self) -> Result<(), Error> {
        if let KeySource::File(path) = &self.source {
            let loaded = validator_keys::read(path, &self.root_check)?;
            let mut keys = self
                .keys
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            keys.clear();
            keys.extend(loaded);
        }
        Ok(())
    }

    /// Accept RTs up to `leeway` past their expiry (default 60 s, as the engine's default; at
    /// most [`MAX_CLOCK_SKEW_LEEWAY`](crate::MAX_CLOCK_SKEW_LEEWAY)).
    pub fn set_clock_skew_leeway(&mut self, leeway: Duration) {
        self.leeway = leeway.min(crate::MAX_CLOCK_SKEW_LEEWAY);
    }

    /// The RT key of a live epoch (one the store says may still have valid RTs).
    fn key(&self, epoch: u32) -> Result<Option<hmac::Key>, Error> {
        let cached = |keys: &HashMap<u32, hmac::Key>| keys.get(&epoch).cloned();
        let lock = || {
            self.keys
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        if let Some(k) = cached(&lock()) {
            return Ok(Some(k));
        }
        match &self.source {
            KeySource::Keeper(keeper) => {
                let k = RtKeyTable::derive(keeper.as_ref(), epoch)?;
                lock().insert(epoch, k.clone());
                Ok(Some(k))
            }
            KeySource::File(_) => {
                // A new epoch: the server wrote its key to the file before minting with it.
                self.reload()?;
                Ok(cached(&lock()))
            }
        }
    }

    /// Validate an RT (text form) as the server would at `now`, and return the identity it
    /// carries. Errors as [`Engine::validate_rt`](crate::Engine::validate_rt): a format error,
    /// the opaque `Unauthenticated`, or (only after the MAC verified) `Expired`, `Revoked` or
    /// `Superseded`, judged by the same rules ([`tessera_proto::token::judge()`]) with the
    /// store's state of the registration.
    pub fn validate(&self, text: &[u8], now: Timestamp) -> Result<Introspection, Error> {
        let rt = UntrustedRt::parse(text)?;
        let claims = rt.untrusted_claims();
        let live = self.reader.read(|db| {
            Ok(db
                .key_epochs()?
                .iter()
                .any(|e| e.epoch == claims.key_id && rt_live(e, now)))
        })?;
        let key = if live { self.key(claims.key_id)? } else { None };
        let mut held = None;
        let (claims, standing) = judge::judge_rt(
            &rt,
            key.as_ref(),
            &self.dummy,
            now.unix_secs(),
            self.leeway.as_secs(),
            |id| {
                let reg = self
                    .reader
                    .read(|db| db.registration(id))?
                    .filter(|r| r.status == RegistrationStatus::Active);
                let state = reg.as_ref().map(|r| FamilyState {
                    generation: r.generation,
                    binding: r.binding,
                });
                held = reg;
                Ok::<_, Error>(state)
            },
        )?;
        let reg = held.ok_or(Error::Revoked)?;
        if standing == Standing::Ahead {
            // The store is the authority: an RT ahead of it was never issued by it.
            let state = FamilyState {
                generation: reg.generation,
                binding: reg.binding,
            };
            judge::settle(&claims, Some(state))?;
        }
        Ok(Introspection {
            device_id: reg.device_id,
            registration_id: reg.id,
            pt_id: reg.pt_id,
            generation: claims.generation,
            expires_at: claims.expires_at,
        })
    }

    /// Where to start following revocations: the newest audit sequence number now. Pass it
    /// to [`LocalValidator::revocations_after`].
    pub fn revocation_cursor(&self) -> Result<u64, Error> {
        self.reader.read(|db| db.audit_head())
    }

    /// The registrations revoked after `cursor` (from [`LocalValidator::revocation_cursor`]
    /// or a previous call), oldest first and at most `limit`, and the cursor to pass next.
    /// This is how a holder of live sessions (a broker) learns of revocations without
    /// checking each session again: a registration revoked directly, by blocking its device,
    /// by revoking its PT or on rotation reuse appears here once the server has committed it.
    pub fn revocations_after(
        &self,
        cursor: u64,
        limit: usize,
    ) -> Result<(Vec<RegistrationId>, u64), Error> {
        self.reader.read(|db| db.revocations(cursor, limit))
    }
}
