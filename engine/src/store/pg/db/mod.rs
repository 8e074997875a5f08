//! SQL over one PostgreSQL connection: a write job inside the writer's batch (whose reads lock
//! what they read), or a read-only snapshot.

mod locked;
mod read;
mod write;

use std::cell::{Cell, RefCell};

use postgres::types::{FromSql, ToSql};
use postgres::Row;

use super::super::sql::{
    json, limit_or_default, retention_scan, retention_table, sql_ts, sql_u64, ts, ts_opt,
    PT_COLUMNS, PT_VISIBLE,
};
use super::super::{
    KeyEpochRecord, NewAuditEvent, NewLeakSignal, OperationQuery, RefreshAudit, RegistrationQuery,
    RetentionClass, RetentionStep, StoreCounts, StoreRead, StoreTxn, REFRESH_ACTION,
};
use super::Conn;
use crate::error::Error;
use crate::model::{
    AdminTokenId, AdminTokenRecord, AuditEvent, BlockRecord, DeviceId, LeakKind, LeakSignal,
    OperationId, OperationRecord, PtId, PtRecord, RegistrationId, RegistrationRecord,
    RegistrationStatus,
};
use crate::time::Timestamp;
pub(crate) use locked::LockedRows;

/// The advisory lock key of the key epochs (and the root check in `meta`).
const KEYS_LOCK: i64 = 0x7465_7373_6572_6102;

/// Audit events and leak signals a batch wrote, numbered and inserted when it commits.
#[derive(Default)]
pub(crate) struct PendingLog {
    audit: Vec<AuditRow>,
    leaks: Vec<NewLeakSignal>,
    changes: Vec<String>,
    /// Where the running job began: the lengths of `audit`, `leaks`, `changes` and the held
    /// locks' order.
    job_start: (usize, usize, usize, usize),
    /// This node's id in the change feed.
    pub(crate) node: i64,
    /// The registrations the batch's refreshes read, locked before they run.
    pub(crate) locked: RefCell<LockedRows>,
    /// The advisory locks the batch's transaction holds (until it ends).
    held: RefCell<HeldLocks>,
}

/// An advisory lock: a fixed key, or a device id's.
#[derive(Clone, PartialEq, Eq, Hash)]
enum LockKey {
    Key(i64),
    Device(String),
}

/// The advisory locks taken in a batch, so that a job asks PostgreSQL for each only once:
/// a provisioning locks its device id from several places (the block check, the device's
/// registrations, the block itself).
#[derive(Default)]
struct HeldLocks {
    held: std::collections::HashSet<LockKey>,
    /// In the order taken, to forget a rolled-back job's.
    order: Vec<LockKey>,
}

struct AuditRow {
    at: i64,
    actor: String,
    source: Option<String>,
    action: String,
    subject: String,
    detail: String,
}

impl PendingLog {
    pub(crate) fn new(node: i64) -> Self {
        Self {
            node,
            ..Self::default()
        }
    }

    pub(crate) fn begin_job(&mut self) {
        self.job_start = (
            self.audit.len(),
            self.leaks.len(),
            self.changes.len(),
            self.held.get_mut().order.len(),
        );
    }

    pub(crate) fn rollback_job(&mut self) {
        self.audit.truncate(self.job_start.0);
        self.leaks.truncate(self.job_start.1);
        self.changes.truncate(self.job_start.2);
        // Locks taken inside a savepoint are released when it is rolled back: take them again
        // if asked.
        let held = self.held.get_mut();
        let start = self.job_start.3.min(held.order.len());
        for k in held.order.drain(start..) {
            held.held.remove(&k);
        }
    }

    /// Whether the batch wrote anything another node's follower or the sequencer must learn
    /// about (changes, audit events, leak signals).
    pub(crate) fn notifies(&self) -> bool {
        !(self.audit.is_empty() && self.leaks.is_empty() && self.changes.is_empty())
    }

    /// Whether the batch wrote audit events or leak signals (which need numbers).
    pub(crate) fn numbers(&self) -> bool {
        !(self.audit.is_empty() && self.leaks.is_empty())
    }

    /// Write what the batch left for its end: the refreshed registrations, its events,
    /// unnumbered (the sequencer numbers them once they have committed), and its changes, in
    /// one statement (and a statement per leak signal, a rare event); the transaction's id
    /// when it wrote changes.
    pub(crate) fn write(&mut self, conn: &mut Conn) -> Result<Option<u64>, Error> {
        if !self.leaks.is_empty() {
            for s in std::mem::take(&mut self.leaks) {
                conn.execute(
                    "INSERT INTO leak_signals (at, kind, pt_id, registration_id, \
                     operation_id, source, action, detail) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    &[
                        &sql_ts(s.at),
                        &s.kind.as_str(),
                        &s.pt_id.map(|p| p.to_string()),
                        &s.registration_id.map(|r| sql_u64(r.get())),
                        &s.operation_id.map(|o| o.to_string()),
                        &s.source,
                        &s.action,
                        &s.detail,
                    ],
                )?;
            }
        }
        let mut p = Params::default();
        let mut parts = Vec::new();
        let updates = self.locked.get_mut().take();
        if !updates.is_empty() {
            parts.push(format!("refreshed AS ({})", updates.sql(&mut p)));
        }
        if !self.audit.is_empty() {
            parts.push(format!(
                "audited AS ({})",
                audit_insert(&mut self.audit, &mut p)
            ));
        }
        if parts.is_empty() && self.changes.is_empty() {
            return Ok(None);
        }
        // Data-modifying parts of a WITH run whether or not the main statement reads them.
        let main = if self.changes.is_empty() {
            "SELECT NULL::text".to_owned()
        } else {
            let body = std::mem::take(&mut self.changes);
            format!(
                "INSERT INTO changes (node, body) SELECT {}, b FROM unnest({}::text[]) AS t(b) \
                 RETURNING xid::text",
                p.add(self.node),
                p.add(body)
            )
        };
        let sql = if parts.is_empty() {
            main
        } else {
            format!("WITH {} {main}", parts.join(", "))
        };
        let rows = conn.query(&sql, &p.refs())?;
        let xid = rows
            .first()
            .map(|r| get::<Option<String>>(r, 0))
            .transpose()?
            .flatten()
            .and_then(|x| x.parse().ok());
        Ok(xid)
    }
}

/// One insert of every audit row (taken from `rows`), its parameters added to `p`.
fn audit_insert(rows: &mut Vec<AuditRow>, p: &mut Params) -> String {
    let rows = std::mem::take(rows);
    let at: Vec<i64> = rows.iter().map(|r| r.at).collect();
    let mut actor = Vec::with_capacity(rows.len());
    let mut source = Vec::with_capacity(rows.len());
    let mut action = Vec::with_capacity(rows.len());
    let mut subject = Vec::with_capacity(rows.len());
    let mut detail = Vec::with_capacity(rows.len());
    for r in rows {
        actor.push(r.actor);
        source.push(r.source);
        action.push(r.action);
        subject.push(r.subject);
        detail.push(r.detail);
    }
    format!(
        "INSERT INTO audit (at, actor, source, action, subject, detail) \
         SELECT * FROM unnest({}::bigint[], {}::text[], {}::text[], {}::text[], {}::text[], \
         {}::text[])",
        p.add(at),
        p.add(actor),
        p.add(source),
        p.add(action),
        p.add(subject),
        p.add(detail)
    )
}

/// A connection inside the writer's batch, or a read snapshot.
pub(crate) struct Db<'c> {
    conn: RefCell<&'c mut Conn>,
    log: Option<&'c mut PendingLog>,
    wrote: Cell<bool>,
    failed: Cell<bool>,
}

impl<'c> Db<'c> {
    pub(crate) fn writer(conn: &'c mut Conn, log: &'c mut PendingLog) -> Self {
        Self {
            conn: RefCell::new(conn),
            log: Some(log),
            wrote: Cell::new(false),
            failed: Cell::new(false),
        }
    }

    pub(crate) fn reader(conn: &'c mut Conn) -> Self {
        Self {
            conn: RefCell::new(conn),
            log: None,
            wrote: Cell::new(false),
            failed: Cell::new(false),
        }
    }

    /// Whether a statement of this job changed a row.
    pub(crate) fn wrote(&self) -> bool {
        self.wrote.get()
    }

    /// Whether a statement of this job failed (which aborts the transaction).
    pub(crate) fn failed(&self) -> bool {
        self.failed.get()
    }

    fn locking(&self) -> bool {
        self.log.is_some()
    }

    fn note<T>(&self, r: Result<T, Error>) -> Result<T, Error> {
        if r.is_err() {
            self.failed.set(true);
        }
        r
    }

    /// Before any statement of a write job: write the refreshes the batch holds, and forget
    /// the rows it holds (the statement may read or change them).
    fn flush_locked(&self) -> Result<(), Error> {
        if let Some(log) = self.log.as_deref() {
            let mut locked = log.locked.borrow_mut();
            if !locked.is_empty() {
                let r = locked.flush(&mut self.conn.borrow_mut());
                self.note(r)?;
            }
        }
        Ok(())
    }

    fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, Error> {
        self.flush_locked()?;
        let r = self.conn.borrow_mut().query(sql, params);
        self.note(r)
    }

    fn query_opt(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Option<Row>, Error> {
        self.flush_locked()?;
        let r = self.conn.borrow_mut().query_opt(sql, params);
        self.note(r)
    }

    fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, Error> {
        self.flush_locked()?;
        let r = self.conn.borrow_mut().execute(sql, params);
        let n = self.note(r)?;
        if n > 0 {
            self.wrote.set(true);
        }
        Ok(n)
    }

    /// In a write job: whether the batch already holds `key`; if not, it is noted as held
    /// (the caller takes it).
    fn holds(&self, key: LockKey) -> bool {
        let Some(log) = self.log.as_deref() else {
            return false;
        };
        let mut held = log.held.borrow_mut();
        if held.held.contains(&key) {
            return true;
        }
        held.held.insert(key.clone());
        held.order.push(key);
        false
    }

    /// In a write job: hold an advisory lock until the batch commits.
    fn lock(&self, key: i64) -> Result<(), Error> {
        if self.locking() && !self.holds(LockKey::Key(key)) {
            self.query("SELECT pg_advisory_xact_lock($1)", &[&key])?;
        }
        Ok(())
    }

    /// In a write job: lock a device id (blocks, and the registrations under it).
    fn lock_device(&self, d: &DeviceId) -> Result<(), Error> {
        if self.locking() && !self.holds(LockKey::Device(d.as_str().to_owned())) {
            self.query(
                "SELECT pg_advisory_xact_lock(hashtextextended($1, 7))",
                &[&d.as_str()],
            )?;
        }
        Ok(())
    }

    /// ` FOR UPDATE` in a write job.
    fn for_update(&self) -> &'static str {
        if self.locking() {
            " FOR UPDATE"
        } else {
            ""
        }
    }
}

fn get<'a, T: FromSql<'a>>(r: &'a Row, i: usize) -> Result<T, Error> {
    r.try_get(i)
        .map_err(|e| Error::store(format!("postgresql: column {i}: {e}")))
}

fn u(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn u32_of(v: i64) -> u32 {
    u32::try_from(v).unwrap_or(0)
}

fn from_json<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, Error> {
    serde_json::from_str(s).map_err(|e| Error::store(format!("decode: {e}")))
}

fn bytes<const N: usize>(v: &[u8]) -> Result<[u8; N], Error> {
    v.try_into()
        .map_err(|_| Error::store(format!("a stored id is not {N} bytes")))
}

fn pt_row(r: &Row) -> Result<(PtRecord, [u8; 32]), Error> {
    let rec = PtRecord {
        id: PtId::from_bytes(bytes(get::<&[u8]>(r, 0)?)?),
        label: get(r, 2)?,
        kind: from_json(get(r, 3)?)?,
        approval: from_json(get(r, 4)?)?,
        rt_lifetime_secs: u(get(r, 5)?),
        device_id_policy: from_json(get(r, 6)?)?,
        expires_at: ts_opt(get(r, 7)?),
        created_at: ts(get(r, 8)?),
        revoked_at: ts_opt(get(r, 9)?),
        registrations_created: u(get(r, 10)?),
        batch: get(r, 11)?,
    };
    Ok((rec, bytes(get::<&[u8]>(r, 1)?)?))
}

const OP_COLUMNS: &str = "body, nonce_digest";

fn op_row(r: &Row) -> Result<OperationRecord, Error> {
    let mut op: OperationRecord = from_json(get(r, 0)?)?;
    if let Some(d) = get::<Option<&[u8]>>(r, 1)? {
        op.nonce_digest = crate::model::NonceDigest(bytes(d)?);
    }
    Ok(op)
}

const REG_COLUMNS: &str = "id, device_id, pt_id, operation_id, active, generation, key_epoch, \
                           issued_at, expires_at, lifetime, created_at, revoked_at, \
                           revoke_reason, binding";

fn reg_row(r: &Row) -> Result<RegistrationRecord, Error> {
    Ok(RegistrationRecord {
        id: RegistrationId::new(u(get(r, 0)?)),
        device_id: DeviceId::new(get::<String>(r, 1)?)
            .map_err(|e| Error::store(format!("a stored device id: {e}")))?,
        pt_id: PtId::from_bytes(bytes(get::<&[u8]>(r, 2)?)?),
        operation_id: OperationId::from_bytes(bytes(get::<&[u8]>(r, 3)?)?),
        status: if get::<bool>(r, 4)? {
            RegistrationStatus::Active
        } else {
            RegistrationStatus::Revoked
        },
        generation: u32_of(get(r, 5)?),
        key_epoch: u32_of(get(r, 6)?),
        issued_at: u(get(r, 7)?),
        expires_at: u(get(r, 8)?),
        lifetime_secs: u(get(r, 9)?),
        created_at: ts(get(r, 10)?),
        revoked_at: ts_opt(get(r, 11)?),
        revoke_reason: get(r, 12)?,
        binding: u32_of(get(r, 13)?),
    })
}

fn block_row(r: &Row) -> Result<BlockRecord, Error> {
    Ok(BlockRecord {
        device_id: DeviceId::new(get::<String>(r, 0)?)
            .map_err(|e| Error::store(format!("a stored device id: {e}")))?,
        at: ts(get(r, 1)?),
        by: get(r, 2)?,
        reason: get(r, 3)?,
    })
}

fn admin_row(r: &Row) -> Result<(AdminTokenRecord, [u8; 32]), Error> {
    let role: String = get(r, 3)?;
    Ok((
        AdminTokenRecord {
            id: AdminTokenId::from_bytes(bytes(get::<&[u8]>(r, 0)?)?),
            name: get(r, 2)?,
            role: role
                .parse()
                .map_err(|e| Error::store(format!("a stored role: {e}")))?,
            created_at: ts(get(r, 4)?),
            revoked_at: ts_opt(get(r, 5)?),
        },
        bytes(get::<&[u8]>(r, 1)?)?,
    ))
}

fn ids(rows: Vec<Row>) -> Result<Vec<RegistrationId>, Error> {
    rows.iter()
        .map(|r| Ok(RegistrationId::new(u(get(r, 0)?))))
        .collect()
}

/// A statement's parameters built alongside its text.
#[derive(Default)]
struct Params(Vec<Box<dyn ToSql + Sync>>);

impl Params {
    /// Add a parameter; its placeholder.
    fn add(&mut self, v: impl ToSql + Sync + 'static) -> String {
        self.0.push(Box::new(v));
        format!("${}", self.0.len())
    }

    fn refs(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.0.iter().map(|b| &**b as &(dyn ToSql + Sync)).collect()
    }
}
