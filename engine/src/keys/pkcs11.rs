//! The PKCS#11 key keeper: the root is a non-extractable, sensitive secret key in an HSM or TPM
//! (through its PKCS#11 module) that can only compute HMAC-SHA256. Tested against SoftHSM2.
//!
//! The engine asks the keeper for a handful of HMACs per key epoch (when it opens and when it
//! rotates), never per token. If the token is unavailable the keeper fails with
//! [`Error::Keys`]; there is no fallback to software keys.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;

use super::KeyKeeper;
use crate::error::Error;
use crate::secret::KeyBytes;

/// Where the root lives in a PKCS#11 token.
#[derive(Clone)]
pub struct Pkcs11Config {
    /// Path of the PKCS#11 module (for SoftHSM2: `/usr/lib/softhsm/libsofthsm2.so`).
    pub module: PathBuf,
    /// Label of the token (preferred), …
    pub token_label: Option<String>,
    /// … or its slot id.
    pub slot: Option<u64>,
    /// The user PIN. Read it from an environment variable or a file, never from a flag.
    pub pin: AuthPin,
    /// Label of the root key object.
    pub key_label: String,
}

impl std::fmt::Debug for Pkcs11Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Config")
            .field("module", &self.module)
            .field("token_label", &self.token_label)
            .field("slot", &self.slot)
            .field("key_label", &self.key_label)
            .finish_non_exhaustive()
    }
}

impl Pkcs11Config {
    /// Read the PIN from the environment variable `var`.
    pub fn pin_from_env(var: &str) -> Result<AuthPin, Error> {
        std::env::var(var)
            .map(|p| AuthPin::from(p.trim().to_owned()))
            .map_err(|_| Error::Keys(format!("the HSM PIN variable {var} is not set")))
    }

    /// Read the PIN from a file (its first line).
    pub fn pin_from_file(path: &Path) -> Result<AuthPin, Error> {
        let text = zeroize::Zeroizing::new(
            std::fs::read_to_string(path)
                .map_err(|e| Error::Keys(format!("HSM PIN file {}: {e}", path.display())))?,
        );
        Ok(AuthPin::from(text.lines().next().unwrap_or("").to_owned()))
    }
}

/// PKCS#11 modules may be initialised once per process; keep each one for the process's life.
fn module(path: &Path) -> Result<Pkcs11, Error> {
    static MODULES: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();
    let mut map = MODULES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(m) = map.get(path) {
        return Ok(m.clone());
    }
    if !path.exists() {
        return Err(Error::Keys(format!(
            "PKCS#11 module {} not found",
            path.display()
        )));
    }
    let m = Pkcs11::new(path).map_err(|e| {
        Error::Keys(format!(
            "cannot load PKCS#11 module {}: {e}",
            path.display()
        ))
    })?;
    m.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .map_err(|e| {
            Error::Keys(format!(
                "cannot initialise PKCS#11 module {}: {e}",
                path.display()
            ))
        })?;
    map.insert(path.to_owned(), m.clone());
    Ok(m)
}

fn hsm(what: &str) -> impl Fn(cryptoki::error::Error) -> Error + '_ {
    move |e| Error::Keys(format!("HSM: {what}: {e}"))
}

fn find_slot(ctx: &Pkcs11, cfg: &Pkcs11Config) -> Result<Slot, Error> {
    let slots = ctx.get_slots_with_token().map_err(hsm("listing slots"))?;
    for s in slots {
        if let Some(id) = cfg.slot {
            if s.id() == id {
                return Ok(s);
            }
        } else if let Some(label) = &cfg.token_label {
            let info = ctx.get_token_info(s).map_err(hsm("reading token info"))?;
            if info.label().trim_end() == label {
                return Ok(s);
            }
        }
    }
    Err(Error::Keys(match (&cfg.token_label, cfg.slot) {
        (_, Some(id)) => format!("HSM: no token in slot {id}"),
        (Some(l), None) => format!("HSM: no token labelled {l:?}"),
        (None, None) => "HSM: give a token label or a slot".into(),
    }))
}

fn open_session(cfg: &Pkcs11Config, rw: bool) -> Result<(Session, String), Error> {
    let ctx = module(&cfg.module)?;
    let slot = find_slot(&ctx, cfg)?;
    let session = if rw {
        ctx.open_rw_session(slot)
    } else {
        ctx.open_ro_session(slot)
    }
    .map_err(hsm("opening a session"))?;
    match session.login(UserType::User, Some(&cfg.pin)) {
        Ok(()) => {}
        // Login state is per application and token: another keeper in this process has
        // logged in already.
        Err(cryptoki::error::Error::Pkcs11(cryptoki::error::RvError::UserAlreadyLoggedIn, _)) => {}
        Err(cryptoki::error::Error::Pkcs11(cryptoki::error::RvError::PinIncorrect, _)) => {
            return Err(Error::Keys("HSM: wrong PIN".into()))
        }
        Err(e) => return Err(hsm("logging in")(e)),
    }
    Ok((session, format!("slot {}", slot.id())))
}

fn find_key(session: &Session, label: &str) -> Result<Option<ObjectHandle>, Error> {
    let found = session
        .find_objects(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::Label(label.as_bytes().to_vec()),
        ])
        .map_err(hsm("searching for the root key"))?;
    if found.len() > 1 {
        return Err(Error::Keys(format!(
            "HSM: {} keys are labelled {label:?}",
            found.len()
        )));
    }
    Ok(found.into_iter().next())
}

/// The security-relevant attributes of the root key, as the token reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RootKeyAttributes {
    /// `CKA_EXTRACTABLE`.
    pub extractable: bool,
    /// `CKA_SENSITIVE`.
    pub sensitive: bool,
    /// Whether the token handed out `CKA_VALUE` when asked.
    pub value_readable: bool,
}

/// A root key held in a PKCS#11 token.
pub struct Pkcs11Keeper {
    session: Mutex<Session>,
    key: ObjectHandle,
    describe: String,
    calls: AtomicU64,
}

impl std::fmt::Debug for Pkcs11Keeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Keeper")
            .field("token", &self.describe)
            .finish_non_exhaustive()
    }
}

impl Pkcs11Keeper {
    /// Create the root key in the token: a 256-bit generic secret, non-extractable, sensitive,
    /// usable only to sign (HMAC). Fails if a key with the label exists already.
    pub fn init_root_key(cfg: &Pkcs11Config) -> Result<(), Error> {
        let (session, _) = open_session(cfg, true)?;
        if find_key(&session, &cfg.key_label)?.is_some() {
            return Err(Error::Keys(format!(
                "HSM: a key labelled {:?} exists already",
                cfg.key_label
            )));
        }
        let template = [
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::GENERIC_SECRET),
            Attribute::ValueLen(32.into()),
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            Attribute::Verify(false),
            Attribute::Derive(false),
            Attribute::Encrypt(false),
            Attribute::Decrypt(false),
            Attribute::Wrap(false),
            Attribute::Unwrap(false),
            Attribute::Label(cfg.key_label.as_bytes().to_vec()),
        ];
        session
            .generate_key(&Mechanism::GenericSecretKeyGen, &template)
            .map_err(hsm("generating the root key"))?;
        Ok(())
    }

    /// Open the token and find the root key. Refuses a key that is extractable or not
    /// sensitive.
    pub fn open(cfg: &Pkcs11Config) -> Result<Self, Error> {
        let (session, slot) = open_session(cfg, false)?;
        let key = find_key(&session, &cfg.key_label)?.ok_or_else(|| {
            Error::Keys(format!(
                "HSM: no key labelled {:?} (run `tessera keys init-hsm`)",
                cfg.key_label
            ))
        })?;
        let keeper = Self {
            session: Mutex::new(session),
            key,
            describe: format!(
                "PKCS#11 {} {slot} key {:?}",
                cfg.module.display(),
                cfg.key_label
            ),
            calls: AtomicU64::new(0),
        };
        let attrs = keeper.root_key_attributes()?;
        if attrs.extractable || !attrs.sensitive || attrs.value_readable {
            return Err(Error::Keys(
                "HSM: the root key is extractable or not sensitive; refusing to use it".into(),
            ));
        }
        Ok(keeper)
    }

    /// What the token reports about the root key.
    pub fn root_key_attributes(&self) -> Result<RootKeyAttributes, Error> {
        let session = self
            .session
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let attrs = session
            .get_attributes(
                self.key,
                &[
                    AttributeType::Extractable,
                    AttributeType::Sensitive,
                    AttributeType::Value,
                ],
            )
            .map_err(hsm("reading key attributes"))?;
        let mut out = RootKeyAttributes {
            extractable: true,
            sensitive: false,
            value_readable: false,
        };
        for a in attrs {
            match a {
                Attribute::Extractable(b) => out.extractable = b,
                Attribute::Sensitive(b) => out.sensitive = b,
                Attribute::Value(mut v) => {
                    out.value_readable = !v.is_empty();
                    zeroize::Zeroize::zeroize(&mut v);
                }
                _ => {}
            }
        }
        Ok(out)
    }

    /// How many HMACs the token has computed for this keeper.
    pub fn hsm_calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Log out of the token, as if it had been removed: every later derivation fails. (For
    /// tests of what happens when the HSM goes away while the server runs.)
    pub fn log_out(&self) -> Result<(), Error> {
        let session = self
            .session
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        session.logout().map_err(hsm("logging out"))
    }
}

impl KeyKeeper for Pkcs11Keeper {
    fn derive(&self, context: &[u8]) -> Result<KeyBytes, Error> {
        let session = self
            .session
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.calls.fetch_add(1, Ordering::Relaxed);
        let mut mac = session
            .sign(&Mechanism::Sha256Hmac, self.key, context)
            .map_err(hsm("computing HMAC"))?;
        let ok = mac.len() == 32;
        let out = KeyBytes::from_slice(&mac);
        zeroize::Zeroize::zeroize(&mut mac);
        if !ok {
            return Err(Error::Keys("HSM: HMAC of unexpected length".into()));
        }
        Ok(out)
    }

    fn describe(&self) -> String {
        self.describe.clone()
    }
}
