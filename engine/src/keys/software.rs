//! The software key keeper: a root key in a file in the data directory.

use std::io::Write;
use std::path::{Path, PathBuf};

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

use super::KeyKeeper;
use crate::error::Error;
use crate::secret::KeyBytes;
use tessera_proto::codec;

const PREFIX: &str = "tsrk_";
/// File name of the root key inside the data directory.
pub const ROOT_KEY_FILE: &str = "root.key";

/// A root key kept in a file (`tsrk_…`, mode 0600) and in zeroized memory.
pub struct SoftwareKeeper {
    root: KeyBytes,
    path: Option<PathBuf>,
}

impl std::fmt::Debug for SoftwareKeeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SoftwareKeeper")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SoftwareKeeper {
    /// Open `dir/root.key`, creating it (mode 0600, fresh random key) if it does not exist.
    ///
    /// # Errors
    /// [`Error::Keys`] if the file is unreadable, malformed, or readable by group or others.
    pub fn open_or_create(dir: &Path) -> Result<Self, Error> {
        let path = dir.join(ROOT_KEY_FILE);
        if path.exists() {
            Self::open(&path)
        } else {
            Self::create(&path)
        }
    }

    /// Create a new key file at `path` (which must not exist), mode 0600.
    pub fn create(path: &Path) -> Result<Self, Error> {
        let mut root = Zeroizing::new([0u8; 32]);
        SystemRandom::new()
            .fill(&mut root[..])
            .map_err(|_| Error::Keys("system random generator failed".into()))?;
        let text = Zeroizing::new(codec::encode(PREFIX, &root[..]));
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts
            .open(path)
            .map_err(|e| Error::Keys(format!("cannot create {}: {e}", path.display())))?;
        f.write_all(text.as_bytes())
            .and_then(|()| f.write_all(b"\n"))
            .and_then(|()| f.sync_all())
            .map_err(|e| Error::Keys(format!("cannot write {}: {e}", path.display())))?;
        if let Some(parent) = path.parent() {
            // Make the new directory entry durable too.
            if let Ok(d) = std::fs::File::open(parent) {
                let _ = d.sync_all();
            }
        }
        Ok(Self {
            root: KeyBytes::from_slice(&root[..]),
            path: Some(path.to_owned()),
        })
    }

    /// Open an existing key file.
    pub fn open(path: &Path) -> Result<Self, Error> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let meta = std::fs::metadata(path)
                .map_err(|e| Error::Keys(format!("cannot stat {}: {e}", path.display())))?;
            if meta.permissions().mode() & 0o077 != 0 {
                return Err(Error::Keys(format!(
                    "{} is accessible by group or others; chmod 600 it",
                    path.display()
                )));
            }
        }
        let text = Zeroizing::new(
            std::fs::read_to_string(path)
                .map_err(|e| Error::Keys(format!("cannot read {}: {e}", path.display())))?,
        );
        let mut bin = Zeroizing::new([0u8; 36]);
        codec::decode_into(PREFIX, text.trim_end().as_bytes(), &mut bin[..])
            .map_err(|e| Error::Keys(format!("{} is not a root key file: {e}", path.display())))?;
        Ok(Self {
            root: KeyBytes::from_slice(&bin[..32]),
            path: Some(path.to_owned()),
        })
    }

    /// A keeper over the given root bytes, with no file (tests, benches, embedding).
    pub fn from_bytes(root: [u8; 32]) -> Self {
        Self {
            root: KeyBytes::new(root),
            path: None,
        }
    }
}

impl KeyKeeper for SoftwareKeeper {
    fn derive(&self, context: &[u8]) -> Result<KeyBytes, Error> {
        let key = hmac::Key::new(hmac::HMAC_SHA256, self.root.expose());
        // `ring`'s key state and tag are not wiped by `ring` (docs/reliability.md, "Secrets in
        // memory"); the derived bytes go straight into zeroizing memory.
        let tag = hmac::sign(&key, context);
        Ok(KeyBytes::from_slice(tag.as_ref()))
    }

    fn describe(&self) -> String {
        match &self.path {
            Some(p) => format!("software key file {}", p.display()),
            None => "software key (in memory)".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_then_open_gives_same_root() {
        let dir = tempfile::tempdir().unwrap();
        let a = SoftwareKeeper::open_or_create(dir.path()).unwrap();
        let b = SoftwareKeeper::open_or_create(dir.path()).unwrap();
        assert_eq!(
            a.derive(b"x").unwrap().expose(),
            b.derive(b"x").unwrap().expose()
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(ROOT_KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(!format!("{a:?}").contains("root:"));
    }

    #[test]
    fn refuses_open_permissions_and_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(ROOT_KEY_FILE);
        std::fs::write(&p, "not a key\n").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
            assert!(matches!(SoftwareKeeper::open(&p), Err(Error::Keys(m)) if m.contains("chmod")));
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        assert!(
            matches!(SoftwareKeeper::open(&p), Err(Error::Keys(m)) if m.contains("not a root key"))
        );
    }
}
