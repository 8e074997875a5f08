//! What makes a deployment itself, never made anew by accident: its root key (every token's
//! MAC, and the store's check value), its CA (what every device trusts) and its server
//! certificate. On a first start they are made; a data directory that has a store but lacks
//! one of them refuses to start, naming what is missing and how to bring it back.

use std::path::{Path, PathBuf};

use tessera_engine::keys::ROOT_KEY_FILE;
use tessera_engine::SoftwareKeeper;

use super::error::ServerError;

/// Where a root key made on a first start waits until the store has taken its check value.
const NEW_ROOT_FILE: &str = "root.key.new";

/// Create `path`, which must not exist, private to the server's user (mode 0600): how every
/// file of a data directory, and every file holding a secret, is made.
pub fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o.open(path)
}

/// The SQLite store's file in the data directory.
fn sqlite_file(dir: &Path) -> PathBuf {
    dir.join(tessera_engine::store::DATABASE_FILE)
}

/// Make the data directory if it does not exist, private to the server's user (0700), and on a
/// first start the SQLite store's file, empty, with mode 0600 before SQLite opens it (its
/// `-wal` and `-shm` files take the same mode). A directory that exists keeps its mode: an
/// operator may have opened it to a group (a broker's plugin in local mode).
pub(crate) fn prepare_dir(dir: &Path, sqlite: bool) -> Result<(), ServerError> {
    let io = |p: &Path, e: std::io::Error| {
        ServerError::Io(format!("cannot create {}: {e}", p.display()))
    };
    if !dir.exists() {
        let mut b = std::fs::DirBuilder::new();
        b.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
        b.create(dir).map_err(|e| io(dir, e))?;
    }
    let db = sqlite_file(dir);
    if sqlite && !db.exists() {
        create_private(&db).map_err(|e| io(&db, e))?;
    }
    Ok(())
}

/// The software keeper's root for `dir`: its `root.key`; or, on a first start, a new root,
/// kept in `root.key.new` until [`NewRoot::keep`] (after the store has recorded its check
/// value) — so that a failed first start leaves no key behind. A directory whose SQLite store
/// exists without its root key is refused.
pub(crate) fn software_root(
    dir: &Path,
    sqlite: bool,
) -> Result<(SoftwareKeeper, Option<NewRoot>), ServerError> {
    let path = dir.join(ROOT_KEY_FILE);
    if path.exists() {
        return Ok((SoftwareKeeper::open(&path)?, None));
    }
    if sqlite && sqlite_file(dir).metadata().is_ok_and(|m| m.len() > 0) {
        return Err(ServerError::Identity(format!(
            "{} has a store ({}) but no root key ({}): every token the store knows was made \
             with that key. Restore it from the backup (`tessera restore ARCHIVE` puts back a \
             whole data directory), or, to start a new deployment, move {} away first",
            dir.display(),
            tessera_engine::store::DATABASE_FILE,
            ROOT_KEY_FILE,
            tessera_engine::store::DATABASE_FILE,
        )));
    }
    let pending = dir.join(NEW_ROOT_FILE);
    if pending.exists() {
        return Err(ServerError::Identity(format!(
            "{} holds {NEW_ROOT_FILE}, the root key of a first start that was interrupted. If the \
             store was made with it, rename it to {ROOT_KEY_FILE}; otherwise remove it",
            dir.display()
        )));
    }
    let keeper = SoftwareKeeper::create(&pending)?;
    Ok((keeper, Some(NewRoot { pending, path })))
}

/// A root key made on this start, not yet the data directory's.
#[derive(Debug)]
pub(crate) struct NewRoot {
    pending: PathBuf,
    path: PathBuf,
}

impl NewRoot {
    /// The store took the new root: it is the data directory's from now on.
    pub(crate) fn keep(self) -> Result<(), ServerError> {
        std::fs::rename(&self.pending, &self.path).map_err(|e| {
            ServerError::Io(format!(
                "cannot rename {} to {}: {e}",
                self.pending.display(),
                self.path.display()
            ))
        })?;
        if let Some(d) = self.path.parent().and_then(|p| std::fs::File::open(p).ok()) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// The store refused it (it belongs to another deployment) or the start failed before the
    /// store took it: nothing is left behind.
    pub(crate) fn discard(self) {
        let _ = std::fs::remove_file(&self.pending);
    }
}

/// The message for a node of a shared store started without the deployment's root key.
pub(crate) fn foreign_store(dir: &Path, e: &tessera_engine::Error) -> ServerError {
    ServerError::Identity(format!(
        "{} has no root key ({ROOT_KEY_FILE}) and the store already belongs to a deployment \
         ({e}): copy that deployment's {ROOT_KEY_FILE} into the data directory (every node of \
         one store has the same), or restore one with `tessera restore`",
        dir.display()
    ))
}
