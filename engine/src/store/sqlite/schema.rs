//! SQLite schema and migrations. `PRAGMA user_version` holds the schema version; each
//! migration runs in its own transaction, in order, and is never edited once released.

use rusqlite::Connection;

use crate::error::Error;

pub(crate) const MIGRATIONS: &[&str] = &[
    // 1: initial schema.
    r#"
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
    CREATE TABLE key_epochs (
        epoch INTEGER PRIMARY KEY,
        created_at INTEGER NOT NULL,
        rt_keep_until INTEGER,
        retired_at INTEGER
    );
    CREATE TABLE pts (
        id BLOB PRIMARY KEY,
        verifier BLOB NOT NULL,
        label TEXT NOT NULL,
        kind TEXT NOT NULL,
        approval TEXT NOT NULL,
        rt_lifetime INTEGER NOT NULL,
        device_id_policy TEXT NOT NULL,
        expires_at INTEGER,
        created_at INTEGER NOT NULL,
        revoked_at INTEGER,
        registrations_created INTEGER NOT NULL DEFAULT 0,
        batch TEXT
    ) WITHOUT ROWID;
    CREATE INDEX pts_created ON pts(created_at);
    CREATE TABLE operations (
        id BLOB PRIMARY KEY,
        pt_id BLOB NOT NULL,
        state TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        body TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX operations_pt_state ON operations(pt_id, state);
    CREATE INDEX operations_state_expiry ON operations(state, expires_at);
    CREATE INDEX operations_created ON operations(created_at);
    CREATE TABLE registrations (
        id INTEGER PRIMARY KEY,
        device_id TEXT NOT NULL,
        pt_id BLOB NOT NULL,
        operation_id BLOB NOT NULL,
        active INTEGER NOT NULL,
        generation INTEGER NOT NULL,
        key_epoch INTEGER NOT NULL,
        issued_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        lifetime INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        revoked_at INTEGER,
        revoke_reason TEXT
    );
    CREATE INDEX registrations_device ON registrations(device_id) WHERE active = 1;
    CREATE INDEX registrations_pt ON registrations(pt_id) WHERE active = 1;
    CREATE TABLE blocked_devices (
        device_id TEXT PRIMARY KEY,
        at INTEGER NOT NULL,
        by TEXT NOT NULL,
        reason TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE audit (
        seq INTEGER PRIMARY KEY,
        at INTEGER NOT NULL,
        actor TEXT NOT NULL,
        source TEXT,
        action TEXT NOT NULL,
        subject TEXT NOT NULL,
        detail TEXT NOT NULL
    );
    CREATE TABLE leak_signals (
        id INTEGER PRIMARY KEY,
        at INTEGER NOT NULL,
        kind TEXT NOT NULL,
        pt_id TEXT,
        registration_id INTEGER,
        operation_id TEXT,
        source TEXT,
        action TEXT NOT NULL,
        detail TEXT NOT NULL
    );
    "#,
    // 2: admin tokens.
    r#"
    CREATE TABLE admin_tokens (
        id BLOB PRIMARY KEY,
        verifier BLOB NOT NULL,
        name TEXT NOT NULL,
        role TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        revoked_at INTEGER
    ) WITHOUT ROWID;
    "#,
    // 3: the refresh journal (see store/journal.rs).
    r#"
    CREATE TABLE refresh_journal (
        seq INTEGER PRIMARY KEY,
        registration_id INTEGER NOT NULL,
        generation INTEGER NOT NULL,
        key_epoch INTEGER NOT NULL,
        issued_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL
    );
    "#,
    // 4: a refresh carries its audit event in its journal row (a fold moved the events into
    // `audit` until 2026-12; since then they stay in the journal, see store/journal.rs).
    // `audit_at` NULL: a row from before, whose event is in `audit`; `audit_actor` NULL: a
    // device.
    r#"
    ALTER TABLE refresh_journal ADD COLUMN audit_at INTEGER;
    ALTER TABLE refresh_journal ADD COLUMN audit_source TEXT;
    ALTER TABLE refresh_journal ADD COLUMN audit_actor TEXT;
    "#,
    // 5: PT batches are written in many small jobs while they are staged; their PTs exist only
    // once the batch's row here is deleted (committed). Abandoned batches are deleted in chunks.
    r#"
    CREATE TABLE pt_batches_staged (
        id TEXT PRIMARY KEY,
        abandoned INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX pts_batch ON pts(batch) WHERE batch IS NOT NULL;
    "#,
    // 6: each registration's binding, carried in its RTs (RT version 2). Registrations from
    // before keep 0; their version-1 RTs are refused, so their devices provision again.
    r#"
    ALTER TABLE registrations ADD COLUMN binding INTEGER NOT NULL DEFAULT 0;
    "#,
    // 7: an operation's instance nonce is kept only as a keyed digest, outside the JSON body
    // (which operators see). Operations from before have none and can no longer be resumed.
    r#"
    ALTER TABLE operations ADD COLUMN nonce_digest BLOB;
    "#,
    // 8: indexes for paged lists (the console): a device id's registrations, revoked ones too,
    // and the operations of one state, newest first.
    r#"
    CREATE INDEX registrations_device_all ON registrations(device_id, id);
    CREATE INDEX operations_state_created ON operations(state, created_at, id);
    "#,
    // 9: BEGIN without reading every pending operation of its PT: the pending ones by nonce
    // digest, by expiry (to count them) and by the device id they asked for.
    r#"
    ALTER TABLE operations ADD COLUMN requested_device_id TEXT;
    UPDATE operations SET requested_device_id = json_extract(body, '$.requested_device_id');
    CREATE INDEX operations_pending_nonce ON operations(pt_id, nonce_digest)
        WHERE state = 'pending';
    CREATE INDEX operations_pending_expiry ON operations(pt_id, expires_at)
        WHERE state = 'pending';
    CREATE INDEX operations_pending_device ON operations(pt_id, requested_device_id)
        WHERE state = 'pending';
    "#,
];

/// The schema version this build writes.
pub(crate) const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Where a store at schema `version` is copied before it is migrated: beside it,
/// `tessera.db.schema-<version>.bak`.
pub fn migration_backup_path(db: &std::path::Path, version: u32) -> std::path::PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".schema-{version}.bak"));
    db.with_file_name(name)
}

/// Bring the database at `path` up to [`SCHEMA_VERSION`]. A store that has a schema already is
/// first copied whole beside itself ([`migration_backup_path`]; kept if a failed attempt left
/// one), and the migration is logged: `store schema N → M`.
pub(crate) fn migrate(conn: &mut Connection, path: &std::path::Path) -> Result<(), Error> {
    let current: u32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if current > SCHEMA_VERSION {
        return Err(Error::store(format!(
            "database schema version {current} is newer than this build ({SCHEMA_VERSION}): \
             run the newer tessera, or restore the backup the migration made beside the store \
             (docs/upgrading.md)"
        )));
    }
    // (An in-memory database, in tests, has no file to copy.)
    if current > 0 && current < SCHEMA_VERSION && path.is_file() {
        let copy = migration_backup_path(path, current);
        if !copy.exists() {
            let dir = path.parent().unwrap_or(std::path::Path::new("."));
            super::backup(dir, &copy)?;
        }
        tracing::info!(
            from = current,
            to = SCHEMA_VERSION,
            backup = %copy.display(),
            "store schema {current} → {SCHEMA_VERSION}; the store as it was is copied to the backup"
        );
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i as u32 + 1)?;
        tx.commit()?;
    }
    Ok(())
}
