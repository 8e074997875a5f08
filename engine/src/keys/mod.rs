//! The key hierarchy: a root held by a [`KeyKeeper`], and working keys derived from it per
//! purpose and epoch.
//!
//! `working_key(purpose, epoch) = HMAC-SHA256(root, "tessera/v1/" || purpose || "/" || epoch_be32)`
//!
//! The keeper computes that HMAC wherever the root lives (in memory for the software keeper,
//! inside the token for a PKCS#11 keeper), so the root never has to leave it. The engine
//! derives the working keys of every live epoch when it opens and when it rotates: the keeper
//! is touched a handful of times per epoch, never per token.

mod pkcs11;
mod software;
pub(crate) mod validator_keys;

use std::sync::Arc;

use ring::hmac;

pub use pkcs11::{Pkcs11Config, Pkcs11Keeper, RootKeyAttributes};
pub use software::{SoftwareKeeper, ROOT_KEY_FILE};
pub use validator_keys::{root_check_of, VALIDATOR_KEYS_FILE};

/// The check value of `keeper`'s root (32 hex digits): what a store records on its first open,
/// and refuses any other root by; it tells whether two roots are the same without showing
/// either.
pub fn root_check(keeper: &dyn KeyKeeper) -> Result<String, Error> {
    let check = keeper.derive(ROOT_CHECK_CONTEXT)?;
    Ok(data_encoding::HEXLOWER.encode(&check.expose()[..16]))
}

use crate::error::Error;
use crate::secret::KeyBytes;

/// Holds the root key and computes HMAC-SHA256 under it.
///
/// Implementations own their interior mutability and must be usable from several threads. The
/// root may be non-extractable: the only operation required is an HMAC of a short context.
pub trait KeyKeeper: Send + Sync + std::fmt::Debug {
    /// `HMAC-SHA256(root, context)`.
    ///
    /// # Errors
    /// [`Error::Keys`] when the keeper cannot compute it (HSM gone, session lost). Callers must
    /// never fall back to another key.
    fn derive(&self, context: &[u8]) -> Result<KeyBytes, Error>;

    /// A short description for logs and `tessera keys list` (never key material).
    fn describe(&self) -> String;
}

/// A shared keeper is a keeper (for example to keep a handle on a PKCS#11 keeper the engine
/// uses, to read its call counter).
impl<K: KeyKeeper + ?Sized> KeyKeeper for Arc<K> {
    fn derive(&self, context: &[u8]) -> Result<KeyBytes, Error> {
        (**self).derive(context)
    }

    fn describe(&self) -> String {
        (**self).describe()
    }
}

/// What a working key is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// MAC of registration tokens.
    RtMac,
    /// Verifier of provisioning-token secrets.
    PtVerifier,
    /// Derivation of operation secrets.
    OperationSecret,
    /// Derivation of verification codes.
    VerificationCode,
    /// Verifier of admin-token secrets.
    AdminVerifier,
}

impl Purpose {
    fn label(self) -> &'static [u8] {
        match self {
            Purpose::RtMac => b"rt-mac",
            Purpose::PtVerifier => b"pt-verifier",
            Purpose::OperationSecret => b"op-secret",
            Purpose::VerificationCode => b"code",
            Purpose::AdminVerifier => b"admin-verifier",
        }
    }
}

/// The context string for a working key.
pub(crate) fn context(purpose: Purpose, epoch: u32) -> Vec<u8> {
    let mut c = b"tessera/v1/".to_vec();
    c.extend_from_slice(purpose.label());
    c.push(b'/');
    c.extend_from_slice(&epoch.to_be_bytes());
    c
}

/// The context of the root check value stored beside the data, so an engine refuses to open a
/// store with a different root instead of failing every token later.
pub(crate) const ROOT_CHECK_CONTEXT: &[u8] = b"tessera/v1/root-check";

fn hmac_key(keeper: &dyn KeyKeeper, purpose: Purpose, epoch: u32) -> Result<hmac::Key, Error> {
    let bytes = keeper.derive(&context(purpose, epoch))?;
    Ok(hmac::Key::new(hmac::HMAC_SHA256, bytes.expose()))
}

/// The working keys of one epoch, except the RT MAC key (see [`RtKeyTable`]). `ring`'s key states are not zeroized by `ring` itself; the
/// derived bytes they were made from are (see docs/reliability.md).
pub(crate) struct EpochKeys {
    pub(crate) epoch: u32,
    pub(crate) pt: hmac::Key,
    pub(crate) op: hmac::Key,
    pub(crate) code: hmac::Key,
    pub(crate) admin: hmac::Key,
}

impl EpochKeys {
    pub(crate) fn derive(keeper: &dyn KeyKeeper, epoch: u32) -> Result<Self, Error> {
        Ok(Self {
            epoch,
            pt: hmac_key(keeper, Purpose::PtVerifier, epoch)?,
            op: hmac_key(keeper, Purpose::OperationSecret, epoch)?,
            code: hmac_key(keeper, Purpose::VerificationCode, epoch)?,
            admin: hmac_key(keeper, Purpose::AdminVerifier, epoch)?,
        })
    }
}

/// Every live epoch's working keys. Replaced whole (through `ArcSwap`) on rotation, so readers
/// never wait.
pub(crate) struct Keyring {
    pub(crate) current: u32,
    /// Index `epoch - 1`.
    epochs: Vec<Arc<EpochKeys>>,
    /// A random key used when a presented token names an unknown epoch, so that case costs the
    /// same as a wrong secret.
    dummy: hmac::Key,
}

impl Keyring {
    pub(crate) fn new(current: u32, epochs: Vec<Arc<EpochKeys>>, dummy: hmac::Key) -> Self {
        debug_assert!(epochs
            .iter()
            .enumerate()
            .all(|(i, e)| e.epoch as usize == i + 1));
        Self {
            current,
            epochs,
            dummy,
        }
    }

    fn get(&self, epoch: u32) -> Option<&EpochKeys> {
        let idx = (epoch as usize).checked_sub(1)?;
        self.epochs.get(idx).map(|e| &**e)
    }

    pub(crate) fn current(&self) -> &EpochKeys {
        // The keyring is never built without its current epoch.
        self.get(self.current)
            .unwrap_or_else(|| unreachable!("current epoch missing"))
    }

    pub(crate) fn pt_key_or_dummy(&self, epoch: u32) -> (&hmac::Key, bool) {
        match self.get(epoch) {
            Some(e) => (&e.pt, true),
            None => (&self.dummy, false),
        }
    }

    pub(crate) fn admin_key_or_dummy(&self, epoch: u32) -> (&hmac::Key, bool) {
        match self.get(epoch) {
            Some(e) => (&e.admin, true),
            None => (&self.dummy, false),
        }
    }

    pub(crate) fn op_key_or_dummy(&self, epoch: u32) -> &hmac::Key {
        self.get(epoch).map_or(&self.dummy, |e| &e.op)
    }

    pub(crate) fn code_key(&self, epoch: u32) -> Option<&hmac::Key> {
        self.get(epoch).map(|e| &e.code)
    }

    pub(crate) fn epochs(&self) -> &[Arc<EpochKeys>] {
        &self.epochs
    }

    pub(crate) fn dummy(&self) -> &hmac::Key {
        &self.dummy
    }
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("current", &self.current)
            .field("epochs", &self.epochs.len())
            .finish_non_exhaustive()
    }
}

/// Most key epochs an engine can have (rotating daily, 44 years).
pub const MAX_EPOCHS: u32 = 16_384;

/// The RT MAC keys, indexed by epoch, readable without a lock or a reference count.
///
/// RT validation is the hot path, so its key lookup is one bounds check, one `OnceLock::get` and
/// one atomic flag: measured at about 1 ns against about 11 ns for an `ArcSwap` load. A key is
/// installed once per epoch; retiring it clears the flag, after which the key is never used
/// again. Its memory is released when the engine is dropped.
pub(crate) struct RtKeyTable {
    keys: Box<[std::sync::OnceLock<hmac::Key>]>,
    live: Box<[std::sync::atomic::AtomicBool]>,
}

impl RtKeyTable {
    pub(crate) fn new() -> Self {
        Self {
            keys: (0..MAX_EPOCHS)
                .map(|_| std::sync::OnceLock::new())
                .collect(),
            live: (0..MAX_EPOCHS)
                .map(|_| std::sync::atomic::AtomicBool::new(false))
                .collect(),
        }
    }

    /// Derive and install the RT key of `epoch`.
    pub(crate) fn derive(keeper: &dyn KeyKeeper, epoch: u32) -> Result<hmac::Key, Error> {
        if epoch == 0 || epoch >= MAX_EPOCHS {
            return Err(Error::Keys(format!("key epoch {epoch} is out of range")));
        }
        hmac_key(keeper, Purpose::RtMac, epoch)
    }

    pub(crate) fn install(&self, epoch: u32, key: hmac::Key) {
        let i = epoch as usize;
        if let (Some(slot), Some(live)) = (self.keys.get(i), self.live.get(i)) {
            let _ = slot.set(key);
            live.store(slot.get().is_some(), std::sync::atomic::Ordering::Release);
        }
    }

    /// The epochs whose RT key is installed and live.
    pub(crate) fn live_epochs(&self) -> Vec<u32> {
        (1..MAX_EPOCHS).filter(|&e| self.get(e).is_some()).collect()
    }

    pub(crate) fn retire(&self, epoch: u32) {
        if let Some(live) = self.live.get(epoch as usize) {
            live.store(false, std::sync::atomic::Ordering::Release);
        }
    }

    #[inline]
    pub(crate) fn get(&self, epoch: u32) -> Option<&hmac::Key> {
        let i = epoch as usize;
        if !self.live.get(i)?.load(std::sync::atomic::Ordering::Acquire) {
            return None;
        }
        self.keys.get(i)?.get()
    }
}

impl std::fmt::Debug for RtKeyTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RtKeyTable(<redacted>)")
    }
}
