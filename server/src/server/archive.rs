//! A backup as one verified artifact: `tessera backup` writes a tar archive (mode 0600) of
//! everything a data directory needs to be itself again (the store, `tls/`, the validator key
//! file, the configuration, and the root key only when asked), with a manifest of checksums,
//! the schema version, the root check value and the CA fingerprint; `tessera restore` checks
//! it all before it writes a data directory, and never over an existing one.
//!
//! Archive layout: `manifest.json` first, then the files under the paths the manifest names
//! (`tessera.db`, `tls/ca.pem`, …). On a PostgreSQL store the archive has no store: the
//! database is backed up with its own tools (docs/operations.md).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tessera_engine::keys::{ROOT_KEY_FILE, VALIDATOR_KEYS_FILE};
use tessera_engine::store::DATABASE_FILE;
use zeroize::Zeroizing;

use super::tls;

/// The manifest's name in the archive.
const MANIFEST: &str = "manifest.json";
/// The archive format this build writes and reads.
const FORMAT: u32 = 1;
/// The configuration file's name in the archive and in a restored directory.
pub const CONFIG_FILE: &str = "tessera.toml";
/// The TLS files a data directory may hold.
const TLS_FILES: [&str; 10] = [
    "ca.pem",
    "ca.key",
    "server.pem",
    "server.key",
    "server.names",
    tls::NEXT_CA,
    tls::NEXT_CA_KEY,
    tls::PREVIOUS_CA,
    tls::PREVIOUS_CA_KEY,
    tls::TRUST_BUNDLE,
];

/// What an archive holds, beside the files.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The archive format (1).
    pub format: u32,
    /// The version of the `tessera` that wrote it.
    pub tessera_version: String,
    /// When, in Unix milliseconds.
    pub made_at: u64,
    /// `sqlite` (the store is in the archive) or `postgres` (it is not).
    pub store: String,
    /// The store's schema version (SQLite), or none.
    pub schema_version: Option<u32>,
    /// The newest audit event in the store (SQLite), or none.
    pub last_audit_seq: Option<u64>,
    /// The check value of the deployment's root (32 hex digits): a restore refuses any other.
    pub root_check: String,
    /// The SHA-256 fingerprint of the CA certificate devices trust (hex).
    pub ca_fingerprint: String,
    /// Whether the root key file is in the archive.
    pub root_key_included: bool,
    /// Every file, by its path in the data directory: its SHA-256 (hex) and size.
    pub files: BTreeMap<String, FileEntry>,
}

/// One file of an archive.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// SHA-256 of its contents, hex.
    pub sha256: String,
    /// Its size in bytes.
    pub bytes: u64,
}

/// The files of an archive: each path in the data directory with its contents (wiped when
/// dropped: they hold keys).
pub type Files = Vec<(String, Zeroizing<Vec<u8>>)>;

/// What to put in a backup.
#[derive(Debug, Clone, Default)]
pub struct BackupOptions {
    /// The configuration file the server runs with, to carry along.
    pub config: Option<PathBuf>,
    /// Put the root key file in (the software keeper's only; it then travels with the
    /// archive: keep the archive as safe as the key).
    pub include_root_key: bool,
    /// The store is PostgreSQL: leave the store out.
    pub postgres: bool,
}

/// Why a backup or restore failed. Nothing was left half written.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ArchiveError(String);

fn err(m: impl Into<String>) -> ArchiveError {
    ArchiveError(m.into())
}

fn sha256_hex(bytes: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

fn read(path: &Path) -> Result<Zeroizing<Vec<u8>>, ArchiveError> {
    std::fs::read(path)
        .map(Zeroizing::new)
        .map_err(|e| err(format!("cannot read {}: {e}", path.display())))
}

/// Create `path` (which must not exist) with mode 0600.
fn create_private(path: &Path) -> Result<std::fs::File, ArchiveError> {
    super::identity::create_private(path)
        .map_err(|e| err(format!("cannot create {}: {e}", path.display())))
}

/// Write the backup of `data_dir` to `out` (which must not exist): a tar archive, mode 0600.
pub fn backup(data_dir: &Path, out: &Path, o: &BackupOptions) -> Result<Manifest, ArchiveError> {
    if out.exists() {
        return Err(err(format!(
            "{} exists; a backup never overwrites a file",
            out.display()
        )));
    }
    let mut files: Files = Vec::new();
    let (mut schema_version, mut last_audit_seq) = (None, None);
    if !o.postgres {
        // The store's online copy, then into the archive.
        let scratch = tempfile::Builder::new()
            .prefix(".tessera-backup")
            .tempdir_in(
                out.parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .unwrap_or(Path::new(".")),
            )
            .map_err(|e| err(format!("cannot make a scratch directory: {e}")))?;
        let copy = scratch.path().join(DATABASE_FILE);
        let r = tessera_engine::store::backup(data_dir, &copy).map_err(|e| err(e.to_string()))?;
        schema_version = Some(r.schema_version);
        last_audit_seq = Some(r.last_audit_seq);
        files.push((DATABASE_FILE.into(), read(&copy)?));
    }
    for f in TLS_FILES {
        let p = data_dir.join("tls").join(f);
        if p.exists() {
            files.push((format!("tls/{f}"), read(&p)?));
        }
    }
    let ca = data_dir.join("tls").join("ca.pem");
    if !ca.exists() {
        return Err(err(format!(
            "{} is missing: nothing to back up",
            ca.display()
        )));
    }
    let ca_fingerprint = tls::fingerprint(
        tls::load_chain(&ca)
            .map_err(|e| err(e.to_string()))?
            .first()
            .ok_or_else(|| err(format!("{} holds no certificate", ca.display())))?,
    );
    let keys = data_dir.join(VALIDATOR_KEYS_FILE);
    let root_check = tessera_engine::keys::root_check_of(&keys).map_err(|e| err(e.to_string()))?;
    files.push((VALIDATOR_KEYS_FILE.into(), read(&keys)?));
    if let Some(c) = &o.config {
        files.push((CONFIG_FILE.into(), read(c)?));
    }
    if o.include_root_key {
        let root = data_dir.join(ROOT_KEY_FILE);
        if !root.exists() {
            return Err(err(format!(
                "{} does not exist: with an HSM the root stays in the HSM (leave out \
                 --include-root-key)",
                root.display()
            )));
        }
        files.push((ROOT_KEY_FILE.into(), read(&root)?));
    }
    let manifest = Manifest {
        format: FORMAT,
        tessera_version: env!("CARGO_PKG_VERSION").into(),
        made_at: u64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis()),
        )
        .unwrap_or(0),
        store: if o.postgres { "postgres" } else { "sqlite" }.into(),
        schema_version,
        last_audit_seq,
        root_check,
        ca_fingerprint,
        root_key_included: o.include_root_key,
        files: files
            .iter()
            .map(|(name, bytes)| {
                (
                    name.clone(),
                    FileEntry {
                        sha256: sha256_hex(bytes),
                        bytes: bytes.len() as u64,
                    },
                )
            })
            .collect(),
    };
    let partial = out.with_extension("partial");
    let written = write_archive(&partial, &manifest, &files).and_then(|()| {
        std::fs::hard_link(&partial, out)
            .map_err(|e| err(format!("cannot put the archive at {}: {e}", out.display())))
    });
    let _ = std::fs::remove_file(&partial);
    written?;
    Ok(manifest)
}

fn write_archive(path: &Path, manifest: &Manifest, files: &Files) -> Result<(), ArchiveError> {
    let io = |e: std::io::Error| err(format!("cannot write {}: {e}", path.display()));
    let file = create_private(path)?;
    let mut tar = tar::Builder::new(file);
    let json = serde_json::to_vec_pretty(manifest).map_err(|e| err(e.to_string()))?;
    append(&mut tar, MANIFEST, &json).map_err(io)?;
    for (name, bytes) in files {
        append(&mut tar, name, bytes).map_err(io)?;
    }
    let mut file = tar.into_inner().map_err(io)?;
    file.flush().and_then(|()| file.sync_all()).map_err(io)
}

fn append(tar: &mut tar::Builder<std::fs::File>, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_size(bytes.len() as u64);
    h.set_mode(0o600);
    h.set_cksum();
    tar.append_data(&mut h, name, bytes)
}

/// Read and check an archive: the manifest, then every file against it (its checksum and size;
/// no file missing, none extra, no path outside the data directory).
pub fn open(archive: &Path) -> Result<(Manifest, Files), ArchiveError> {
    let f = std::fs::File::open(archive)
        .map_err(|e| err(format!("cannot open {}: {e}", archive.display())))?;
    let mut tar = tar::Archive::new(f);
    let bad = |why: String| {
        err(format!(
            "{} is not a Tessera backup: {why}",
            archive.display()
        ))
    };
    let mut manifest: Option<Manifest> = None;
    let mut files = Vec::new();
    for entry in tar.entries().map_err(|e| bad(e.to_string()))? {
        let mut entry = entry.map_err(|e| bad(e.to_string()))?;
        let name = entry
            .path()
            .map_err(|e| bad(e.to_string()))?
            .to_string_lossy()
            .into_owned();
        let mut bytes = Zeroizing::new(Vec::new());
        entry
            .read_to_end(&mut bytes)
            .map_err(|e| bad(e.to_string()))?;
        match &manifest {
            None if name == MANIFEST => {
                let m: Manifest =
                    serde_json::from_slice(&bytes).map_err(|e| bad(format!("manifest: {e}")))?;
                if m.format != FORMAT {
                    return Err(bad(format!(
                        "archive format {} (this build reads {FORMAT})",
                        m.format
                    )));
                }
                manifest = Some(m);
            }
            None => return Err(bad("it does not start with its manifest".into())),
            Some(m) => {
                let Some(want) = m.files.get(&name) else {
                    return Err(bad(format!("{name} is not in its manifest")));
                };
                if files.iter().any(|(n, _)| *n == name) {
                    return Err(bad(format!("{name} is in it twice")));
                }
                if sha256_hex(&bytes) != want.sha256 || bytes.len() as u64 != want.bytes {
                    return Err(bad(format!(
                        "{name} does not match its checksum: the archive is damaged"
                    )));
                }
                files.push((name, bytes));
            }
        }
    }
    let manifest = manifest.ok_or_else(|| bad("no manifest".into()))?;
    for name in manifest.files.keys() {
        if !files.iter().any(|(n, _)| n == name) {
            return Err(bad(format!("{name} is missing")));
        }
    }
    Ok((manifest, files))
}

/// What a restore needs beside the archive.
#[derive(Debug, Default)]
pub struct RestoreOptions {
    /// The root check value of the key keeper the restored server will use (from its root key
    /// file or its HSM), when the archive does not hold the root key.
    pub keeper_root_check: Option<String>,
    /// A root key file to put in the restored directory (the software keeper).
    pub root_key: Option<PathBuf>,
}

/// Restore `archive` into `data_dir`, which must not exist or be empty. Every check comes first
/// (the archive, the root against the manifest); the directory is written under a temporary
/// name and renamed into place only when whole. The directory is 0700, every file 0600.
pub fn restore(
    archive: &Path,
    data_dir: &Path,
    o: &RestoreOptions,
) -> Result<Manifest, ArchiveError> {
    if data_dir.exists()
        && std::fs::read_dir(data_dir)
            .map_err(|e| err(format!("{}: {e}", data_dir.display())))?
            .next()
            .is_some()
    {
        return Err(err(format!(
            "{} exists and is not empty: a restore never writes over a data directory",
            data_dir.display()
        )));
    }
    let (manifest, mut files) = open(archive)?;
    if let Some(path) = &o.root_key {
        if manifest.root_key_included {
            return Err(err(
                "the archive holds the root key already; leave out --root-key",
            ));
        }
        files.push((ROOT_KEY_FILE.into(), read(path)?));
    }
    // The root the restored server will use must be the one the store was made with.
    let check = match files.iter().find(|(n, _)| n == ROOT_KEY_FILE) {
        Some((_, bytes)) => {
            let scratch = tempfile::tempdir().map_err(|e| err(e.to_string()))?;
            let p = scratch.path().join(ROOT_KEY_FILE);
            create_private(&p)?
                .write_all(bytes)
                .map_err(|e| err(e.to_string()))?;
            let keeper =
                tessera_engine::SoftwareKeeper::open(&p).map_err(|e| err(e.to_string()))?;
            Some(tessera_engine::keys::root_check(&keeper).map_err(|e| err(e.to_string()))?)
        }
        None => o.keeper_root_check.clone(),
    };
    match check {
        Some(c) if c == manifest.root_check => {}
        Some(_) => {
            return Err(err(
                "the root key does not match the archive's (its root check value differs): \
                 every token in the store was made with the archive's; nothing was written",
            ))
        }
        None => {
            return Err(err(
                "the archive has no root key: give the deployment's root key file with \
                 --root-key FILE, or configure the HSM that holds it ([keys] in --config); \
                 nothing was written",
            ))
        }
    }
    let parent = data_dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| err(format!("{}: {e}", parent.display())))?;
    let staging = tempfile::Builder::new()
        .prefix(".tessera-restore")
        .tempdir_in(parent)
        .map_err(|e| {
            err(format!(
                "cannot make a directory in {}: {e}",
                parent.display()
            ))
        })?;
    for (name, bytes) in &files {
        let rel = Path::new(name);
        if rel.is_absolute()
            || rel
                .components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            return Err(err(format!("{name}: not a path inside a data directory")));
        }
        let path = staging.path().join(rel);
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d).map_err(|e| err(format!("{}: {e}", d.display())))?;
            set_mode(d, 0o700)?;
        }
        let mut f = create_private(&path)?;
        f.write_all(bytes)
            .and_then(|()| f.sync_all())
            .map_err(|e| err(format!("cannot write {}: {e}", path.display())))?;
    }
    set_mode(staging.path(), 0o700)?;
    let staged = staging.keep();
    if data_dir.exists() {
        // Empty (checked above); rename replaces an empty directory.
        std::fs::remove_dir(data_dir).map_err(|e| err(format!("{}: {e}", data_dir.display())))?;
    }
    std::fs::rename(&staged, data_dir).map_err(|e| {
        let _ = std::fs::remove_dir_all(&staged);
        err(format!(
            "cannot move the restored directory to {}: {e}",
            data_dir.display()
        ))
    })?;
    // The CA restored is the one the manifest names.
    let ca =
        tls::load_chain(&data_dir.join("tls").join("ca.pem")).map_err(|e| err(e.to_string()))?;
    if ca.first().map(tls::fingerprint).as_deref() != Some(manifest.ca_fingerprint.as_str()) {
        return Err(err("the restored CA is not the one the manifest names"));
    }
    Ok(manifest)
}

fn set_mode(path: &Path, mode: u32) -> Result<(), ArchiveError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| err(format!("{}: {e}", path.display())))?;
    }
    let _ = (path, mode);
    Ok(())
}
