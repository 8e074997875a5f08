//! The key hierarchy: a root held by a [`KeyKeeper`], and working keys derived from it per
//! purpose and epoch.
//!
//! `working_key(purpose, epoch) = HMAC-SHA256(root, "tessera/v1/" || purpose || "/" || epoch_be32)`
//!
//! The keeper computes that HMAC wherever the root lives (in memory for the software keeper,
//! inside the token for a PKCS#11 keeper), so the root never has to leave it. The engine
//! derives the working keys of every live epoch when it opens and when it rotates: the keeper
//! is touched a handful of times per epoch, never per token.

mod software;

use std::sync::Arc;

use ring::hmac;

pub use software::{SoftwareKeeper, ROOT_KEY_FILE};

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
}

impl Purpose {
    fn label(self) -> &'static [u8] {
        match self {
            Purpose::RtMac => b"rt-mac",
            Purpose::PtVerifier => b"pt-verifier",
            Purpose::OperationSecret => b"op-secret",
            Purpose::VerificationCode => b"code",
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

/// What an epoch still needs to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EpochLife {
    /// RTs under this epoch may still be valid (not retired, not past keep-until).
    pub(crate) rt_live: bool,
}

/// The working keys of one epoch. `ring`'s key states are not zeroized by `ring` itself; the
/// derived bytes they were made from are (see docs/reliability.md).
pub(crate) struct EpochKeys {
    pub(crate) epoch: u32,
    pub(crate) rt: Option<hmac::Key>,
    pub(crate) pt: hmac::Key,
    pub(crate) op: hmac::Key,
    pub(crate) code: hmac::Key,
}

impl EpochKeys {
    pub(crate) fn derive(
        keeper: &dyn KeyKeeper,
        epoch: u32,
        life: EpochLife,
    ) -> Result<Self, Error> {
        Ok(Self {
            epoch,
            rt: if life.rt_live {
                Some(hmac_key(keeper, Purpose::RtMac, epoch)?)
            } else {
                None
            },
            pt: hmac_key(keeper, Purpose::PtVerifier, epoch)?,
            op: hmac_key(keeper, Purpose::OperationSecret, epoch)?,
            code: hmac_key(keeper, Purpose::VerificationCode, epoch)?,
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

    pub(crate) fn rt_key(&self, epoch: u32) -> Option<&hmac::Key> {
        self.get(epoch)?.rt.as_ref()
    }

    pub(crate) fn pt_key_or_dummy(&self, epoch: u32) -> (&hmac::Key, bool) {
        match self.get(epoch) {
            Some(e) => (&e.pt, true),
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
