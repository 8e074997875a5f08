//! Online backup: a consistent copy of a store's database, taken while a server keeps writing
//! to it (`tessera backup`).
//!
//! SQLite's backup API copies every page inside one read transaction. In WAL mode a reader does
//! not block the writer, so the server goes on committing, and the copy is the store as of one
//! commit. The copy is written next to its destination, checked with `PRAGMA integrity_check`,
//! synced, and only then renamed into place, so a backup that fails leaves nothing behind that
//! could be taken for a good one. The root key is not in it (docs/operations.md).

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};

use super::{db::LAST_AUDIT_SEQ, DATABASE_FILE};
use crate::error::Error;

/// What a backup holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackupReport {
    /// Size of the copy.
    pub bytes: u64,
    /// The newest audit event in it: every change recorded after this sequence number is not.
    pub last_audit_seq: u64,
    /// Its schema version (the number of migrations applied).
    pub schema_version: u32,
}

/// Copy the store in `dir` to the new file `out` (which must not exist), while the store may be
/// in use. `out` is a complete database in rollback-journal mode: to restore, stop the server
/// and put it in place of `tessera.db` (removing `tessera.db-wal` and `tessera.db-shm`).
pub fn backup(dir: &Path, out: &Path) -> Result<BackupReport, Error> {
    let src_path = dir.join(DATABASE_FILE);
    if !src_path.is_file() {
        return Err(Error::store(format!(
            "no Tessera store at {}",
            src_path.display()
        )));
    }
    if out.exists() {
        // Checked again when the copy is put in place (`place`).
        return Err(exists(out));
    }
    let partial = partial_path(out);
    let r = copy(&src_path, &partial).and_then(|report| {
        place(&partial, out)?;
        sync_parent(out)?;
        Ok(report)
    });
    if r.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    r
}

/// Move the finished copy to `out` without replacing a file that appeared there meanwhile: a
/// hard link fails if `out` exists, where a rename would replace it. On a file system without
/// hard links, a rename after one more check.
fn place(partial: &Path, out: &Path) -> Result<(), Error> {
    match std::fs::hard_link(partial, out) {
        Ok(()) => {
            let _ = std::fs::remove_file(partial);
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(exists(out)),
        Err(_) if out.exists() => Err(exists(out)),
        Err(_) => std::fs::rename(partial, out)
            .map_err(|e| Error::store(format!("cannot rename to {}: {e}", out.display()))),
    }
}

fn exists(out: &Path) -> Error {
    Error::store(format!(
        "{} exists; a backup never overwrites a file",
        out.display()
    ))
}

fn partial_path(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    out.with_file_name(name)
}

fn copy(src_path: &Path, partial: &Path) -> Result<BackupReport, Error> {
    let src = Connection::open_with_flags(
        src_path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    src.busy_timeout(Duration::from_secs(10))?;
    let mut dst = Connection::open_with_flags(
        partial,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    {
        let b = Backup::new(&src, &mut dst)?;
        // All pages in one step: one read transaction, so one consistent snapshot. Busy or
        // locked (a checkpoint or recovery holding a lock for a moment) is retried.
        let mut attempts = 0;
        loop {
            match b.step(-1)? {
                StepResult::Done => break,
                _ if attempts < 100 => {
                    attempts += 1;
                    std::thread::sleep(Duration::from_millis(50));
                }
                _ => return Err(Error::store("the store stayed locked; try again".into())),
            }
        }
    }
    // The copy carries the source's WAL flag; one self-contained file is what a backup should be.
    let mode: String = dst.query_row("PRAGMA journal_mode=DELETE", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("delete") {
        return Err(Error::store(format!(
            "cannot leave WAL mode in the copy (got {mode})"
        )));
    }
    let check: String = dst.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    if check != "ok" {
        return Err(Error::store(format!(
            "the copy failed its integrity check: {check}"
        )));
    }
    let last_audit_seq: i64 = dst.query_row(LAST_AUDIT_SEQ, [], |r| r.get(0))?;
    let schema_version: u32 = dst.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    dst.close().map_err(|(_, e)| Error::from(e))?;
    let file = std::fs::File::open(partial)
        .map_err(|e| Error::store(format!("cannot open {}: {e}", partial.display())))?;
    file.sync_all()
        .map_err(|e| Error::store(format!("cannot sync {}: {e}", partial.display())))?;
    let bytes = file
        .metadata()
        .map_err(|e| Error::store(format!("{}: {e}", partial.display())))?
        .len();
    Ok(BackupReport {
        bytes,
        last_audit_seq: u64::try_from(last_audit_seq).unwrap_or(0),
        schema_version,
    })
}

/// Make the rename durable.
fn sync_parent(out: &Path) -> Result<(), Error> {
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::File::open(parent)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::store(format!("cannot sync {}: {e}", parent.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_that_appears_during_the_copy_is_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let (partial, out) = (dir.path().join("b.db.partial"), dir.path().join("b.db"));
        std::fs::write(&partial, b"copy").unwrap();
        std::fs::write(&out, b"someone else's").unwrap();
        assert!(place(&partial, &out)
            .unwrap_err()
            .to_string()
            .contains("exists"));
        assert_eq!(std::fs::read(&out).unwrap(), b"someone else's");
        std::fs::remove_file(&out).unwrap();
        place(&partial, &out).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"copy");
        assert!(!partial.exists());
    }
}
