//! The validator key file: the RT MAC keys of the live epochs, and nothing else, for RT
//! validators that run beside the server (the local validator, an MQTT broker plugin).
//!
//! A validator needs to check an RT's MAC, so it needs the epoch's RT key. It does not need the
//! root, from which the operation-secret and verification-code keys (and so every pending
//! operation's RT) could be derived. The engine writes this file (`validator.keys` in the data
//! directory, mode 0600) when it opens and whenever the set of live RT keys changes (rotation,
//! retirement, expiry), by writing a new file and renaming it over the old one.
//!
//! An RT key can mint RTs as well as check them: whoever holds this file can forge an RT for
//! any registration. That is inherent to an HMAC token; see docs/reliability.md ("What a
//! validator holds") for what a deployment should do about it.
//!
//! Format (JSON): `{"version": 1, "root_check": "<32 hex>", "rt_keys": [{"epoch": 1, "key":
//! "<64 hex>"}, ...]}`. `root_check` is the data directory's root check value, so a validator
//! refuses a key file that belongs to another store.

use std::io::Write;
use std::path::Path;

use ring::hmac;
use zeroize::Zeroizing;

use crate::error::Error;
use crate::keys::{context, KeyKeeper, Purpose};

/// The validator key file's name in the data directory.
pub const VALIDATOR_KEYS_FILE: &str = "validator.keys";

#[derive(serde::Serialize, serde::Deserialize)]
struct File {
    version: u32,
    root_check: String,
    rt_keys: Vec<Entry>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Entry {
    epoch: u32,
    key: String,
}

impl Drop for Entry {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.key);
    }
}

/// The root check value a validator key file carries (that of the data directory it belongs
/// to), without reading its keys.
pub fn root_check_of(path: &Path) -> Result<String, Error> {
    #[derive(serde::Deserialize)]
    struct Head {
        root_check: String,
    }
    let text = Zeroizing::new(
        std::fs::read_to_string(path)
            .map_err(|e| Error::Keys(format!("cannot read {}: {e}", path.display())))?,
    );
    let head: Head = serde_json::from_str(&text).map_err(|e| {
        Error::Keys(format!(
            "{} is not a validator key file: {e}",
            path.display()
        ))
    })?;
    Ok(head.root_check)
}

/// Write the RT keys of `epochs` (derived through `keeper`) to `path`, replacing it whole.
pub(crate) fn write(
    path: &Path,
    keeper: &dyn KeyKeeper,
    root_check: &str,
    epochs: &[u32],
) -> Result<(), Error> {
    let mut rt_keys = Vec::with_capacity(epochs.len());
    for &epoch in epochs {
        let k = keeper.derive(&context(Purpose::RtMac, epoch))?;
        rt_keys.push(Entry {
            epoch,
            key: data_encoding::HEXLOWER.encode(k.expose()),
        });
    }
    let doc = File {
        version: 1,
        root_check: root_check.to_owned(),
        rt_keys,
    };
    let text = Zeroizing::new(
        serde_json::to_vec(&doc).map_err(|e| Error::Keys(format!("validator keys: {e}")))?,
    );
    let io = |e: std::io::Error| Error::Keys(format!("cannot write {}: {e}", path.display()));
    let tmp = path.with_extension("keys.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(&tmp).map_err(io)?;
    f.write_all(&text).and_then(|()| f.sync_all()).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    Ok(())
}

/// The RT keys in the file at `path`, by epoch, after checking it belongs to the store whose
/// root check value is `root_check`.
pub(crate) fn read(path: &Path, root_check: &str) -> Result<Vec<(u32, hmac::Key)>, Error> {
    let text = Zeroizing::new(std::fs::read(path).map_err(|e| {
        Error::Keys(format!(
            "cannot read {} (the server writes it when it starts): {e}",
            path.display()
        ))
    })?);
    let doc: File = serde_json::from_slice(&text)
        .map_err(|_| Error::Keys(format!("{} is not a validator key file", path.display())))?;
    if doc.version != 1 {
        return Err(Error::Keys(format!(
            "{}: unknown version {}",
            path.display(),
            doc.version
        )));
    }
    if doc.root_check != root_check {
        return Err(Error::Keys(format!(
            "{} belongs to another data directory",
            path.display()
        )));
    }
    let mut out = Vec::with_capacity(doc.rt_keys.len());
    for e in &doc.rt_keys {
        let mut bytes = Zeroizing::new([0u8; 32]);
        let ok = data_encoding::HEXLOWER
            .decode_mut(e.key.as_bytes(), &mut bytes[..])
            .is_ok_and(|n| n == 32);
        if !ok || e.key.len() != 64 {
            return Err(Error::Keys(format!(
                "{}: malformed key of epoch {}",
                path.display(),
                e.epoch
            )));
        }
        out.push((e.epoch, hmac::Key::new(hmac::HMAC_SHA256, &bytes[..])));
    }
    Ok(out)
}
