//! SQL over one PostgreSQL connection: a write job inside the writer's batch (whose reads lock
//! what they read), or a read-only snapshot.

use std::cell::{Cell, RefCell};

use postgres::types::{FromSql, ToSql};
use postgres::Row;

use super::super::sql::{
    json, limit_or_default, sql_ts, sql_u64, ts, ts_opt, PT_COLUMNS, PT_VISIBLE,
};
use super::super::{
    KeyEpochRecord, NewAuditEvent, NewLeakSignal, OperationQuery, RefreshAudit, RegistrationQuery,
    StoreCounts, StoreRead, StoreTxn, REFRESH_ACTION,
};
use super::Conn;
use crate::error::Error;
use crate::model::{
    AdminTokenId, AdminTokenRecord, AuditEvent, BlockRecord, DeviceId, LeakKind, LeakSignal,
    OperationId, OperationRecord, PtId, PtRecord, RegistrationId, RegistrationRecord,
    RegistrationStatus,
};
use crate::time::Timestamp;

/// The advisory lock key of the key epochs (and the root check in `meta`).
const KEYS_LOCK: i64 = 0x7465_7373_6572_6102;

/// Audit events and leak signals a batch wrote, numbered and inserted when it commits.
#[derive(Default)]
pub(crate) struct PendingLog {
    audit: Vec<AuditRow>,
    leaks: Vec<NewLeakSignal>,
    changes: Vec<String>,
    job_start: (usize, usize, usize),
    /// This node's id in the change feed.
    pub(crate) node: i64,
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
        self.job_start = (self.audit.len(), self.leaks.len(), self.changes.len());
    }

    pub(crate) fn rollback_job(&mut self) {
        self.audit.truncate(self.job_start.0);
        self.leaks.truncate(self.job_start.1);
        self.changes.truncate(self.job_start.2);
    }

    /// Number the batch's events from the counters (locking them until the commit) and insert
    /// them.
    pub(crate) fn write(&mut self, conn: &mut Conn) -> Result<(), Error> {
        if !self.audit.is_empty() {
            let first = take_numbers(conn, "audit", self.audit.len())?;
            let rows = std::mem::take(&mut self.audit);
            let seq: Vec<i64> = (first..).take(rows.len()).collect();
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
            conn.execute(
                "INSERT INTO audit (seq, at, actor, source, action, subject, detail) \
                 SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], \
                 $5::text[], $6::text[], $7::text[])",
                &[&seq, &at, &actor, &source, &action, &subject, &detail],
            )?;
        }
        if !self.changes.is_empty() {
            let first = take_numbers(conn, "feed", self.changes.len())?;
            let body = std::mem::take(&mut self.changes);
            let seq: Vec<i64> = (first..).take(body.len()).collect();
            conn.execute(
                "INSERT INTO changes (seq, node, body) \
                 SELECT s, $2, b FROM unnest($1::bigint[], $3::text[]) AS t(s, b)",
                &[&seq, &self.node, &body],
            )?;
            // Delivered when the transaction commits; followers also poll, so a lost
            // notification delays a change but never loses it.
            conn.batch(&format!("NOTIFY {}", super::feed::CHANNEL))?;
        }
        if !self.leaks.is_empty() {
            let first = take_numbers(conn, "leak", self.leaks.len())?;
            for (s, id) in std::mem::take(&mut self.leaks).into_iter().zip(first..) {
                conn.execute(
                    "INSERT INTO leak_signals (id, at, kind, pt_id, registration_id, \
                     operation_id, source, action, detail) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                    &[
                        &id,
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
        Ok(())
    }
}

/// Take `n` numbers from a counter; the first is returned. The counter's row stays locked
/// until the transaction ends, so numbers are handed out in commit order.
fn take_numbers(conn: &mut Conn, counter: &str, n: usize) -> Result<i64, Error> {
    let n = i64::try_from(n).unwrap_or(i64::MAX);
    let row = conn.query_opt(
        "UPDATE counters SET value = value + $2 WHERE name = $1 RETURNING value",
        &[&counter, &n],
    )?;
    let top: i64 = get(
        &row.ok_or_else(|| Error::store(format!("no counter {counter}")))?,
        0,
    )?;
    Ok(top - n + 1)
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

    fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, Error> {
        let r = self.conn.borrow_mut().query(sql, params);
        self.note(r)
    }

    fn query_opt(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Option<Row>, Error> {
        let r = self.conn.borrow_mut().query_opt(sql, params);
        self.note(r)
    }

    fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, Error> {
        let r = self.conn.borrow_mut().execute(sql, params);
        let n = self.note(r)?;
        if n > 0 {
            self.wrote.set(true);
        }
        Ok(n)
    }

    /// In a write job: hold an advisory lock until the batch commits.
    fn lock(&self, key: i64) -> Result<(), Error> {
        if self.locking() {
            self.query("SELECT pg_advisory_xact_lock($1)", &[&key])?;
        }
        Ok(())
    }

    /// In a write job: lock a device id (blocks, and the registrations under it).
    fn lock_device(&self, d: &DeviceId) -> Result<(), Error> {
        if self.locking() {
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

impl StoreRead for Db<'_> {
    fn meta(&self, key: &str) -> Result<Option<String>, Error> {
        // In a write job, meta is read to set it once (the root check): one node at a time.
        self.lock(KEYS_LOCK)?;
        self.query_opt("SELECT value FROM meta WHERE key = $1", &[&key])?
            .map(|r| get(&r, 0))
            .transpose()
    }

    fn key_epochs(&self) -> Result<Vec<KeyEpochRecord>, Error> {
        // A rotation on another node waits for this batch, then sees its epoch.
        self.lock(KEYS_LOCK)?;
        self.query(
            "SELECT epoch, created_at, rt_keep_until, retired_at FROM key_epochs ORDER BY epoch",
            &[],
        )?
        .iter()
        .map(|r| {
            Ok(KeyEpochRecord {
                epoch: u32_of(get(r, 0)?),
                created_at: ts(get(r, 1)?),
                rt_keep_until: ts_opt(get(r, 2)?),
                retired_at: ts_opt(get(r, 3)?),
            })
        })
        .collect()
    }

    fn pt(&self, id: &PtId) -> Result<Option<(PtRecord, [u8; 32])>, Error> {
        let lock = if self.locking() {
            " FOR UPDATE OF pts"
        } else {
            ""
        };
        self.query_opt(
            &format!("SELECT {PT_COLUMNS} FROM pts WHERE id = $1 AND {PT_VISIBLE}{lock}"),
            &[&&id.to_bytes()[..]],
        )?
        .map(|r| pt_row(&r))
        .transpose()
    }

    fn list_pts(
        &self,
        limit: usize,
        include_revoked: bool,
        before: Option<(Timestamp, PtId)>,
    ) -> Result<Vec<PtRecord>, Error> {
        let mut p = Params::default();
        let mut sql = format!("SELECT {PT_COLUMNS} FROM pts WHERE {PT_VISIBLE}");
        if !include_revoked {
            sql.push_str(" AND revoked_at IS NULL");
        }
        if let Some((at, id)) = before {
            let (a, b) = (p.add(sql_ts(at)), p.add(id.to_bytes().to_vec()));
            sql.push_str(&format!(" AND (created_at, id) < ({a}, {b})"));
        }
        let l = p.add(limit_or_default(limit));
        sql.push_str(&format!(" ORDER BY created_at DESC, id DESC LIMIT {l}"));
        self.query(&sql, &p.refs())?
            .iter()
            .map(|r| pt_row(r).map(|(p, _)| p))
            .collect()
    }

    fn operation(&self, id: &OperationId) -> Result<Option<OperationRecord>, Error> {
        self.query_opt(
            &format!(
                "SELECT {OP_COLUMNS} FROM operations WHERE id = $1{}",
                self.for_update()
            ),
            &[&&id.to_bytes()[..]],
        )?
        .map(|r| op_row(&r))
        .transpose()
    }

    fn pending_operations(&self, pt: &PtId) -> Result<Vec<OperationRecord>, Error> {
        // In a write job the PT's row is locked first (every job that begins or settles an
        // operation reads its PT), so this list cannot change under the job.
        self.query(
            &format!(
                "SELECT {OP_COLUMNS} FROM operations WHERE pt_id = $1 AND state = 'pending' \
                 ORDER BY created_at"
            ),
            &[&&pt.to_bytes()[..]],
        )?
        .iter()
        .map(op_row)
        .collect()
    }

    fn list_operations(&self, q: &OperationQuery) -> Result<Vec<OperationRecord>, Error> {
        let mut p = Params::default();
        let mut sql = format!("SELECT {OP_COLUMNS} FROM operations WHERE true");
        if let Some(state) = q.state {
            sql.push_str(&format!(" AND state = {}", p.add(state.as_str())));
        }
        if let Some(pt) = q.pt_id {
            sql.push_str(&format!(" AND pt_id = {}", p.add(pt.to_bytes().to_vec())));
        }
        if let Some((at, id)) = q.before {
            let (a, b) = (p.add(sql_ts(at)), p.add(id.to_bytes().to_vec()));
            sql.push_str(&format!(" AND (created_at, id) < ({a}, {b})"));
        }
        let l = p.add(limit_or_default(q.limit));
        sql.push_str(&format!(" ORDER BY created_at DESC, id DESC LIMIT {l}"));
        self.query(&sql, &p.refs())?.iter().map(op_row).collect()
    }

    fn registration(&self, id: RegistrationId) -> Result<Option<RegistrationRecord>, Error> {
        self.query_opt(
            &format!(
                "SELECT {REG_COLUMNS} FROM registrations WHERE id = $1{}",
                self.for_update()
            ),
            &[&sql_u64(id.get())],
        )?
        .map(|r| reg_row(&r))
        .transpose()
    }

    fn list_registrations(&self, q: &RegistrationQuery) -> Result<Vec<RegistrationRecord>, Error> {
        let mut p = Params::default();
        let mut sql = format!("SELECT {REG_COLUMNS} FROM registrations WHERE true");
        if let Some(d) = &q.device_id {
            self.lock_device(d)?;
            sql.push_str(&format!(
                " AND device_id = {}",
                p.add(d.as_str().to_owned())
            ));
        }
        if let Some(pt) = q.pt_id {
            sql.push_str(&format!(" AND pt_id = {}", p.add(pt.to_bytes().to_vec())));
        }
        if q.active_only {
            sql.push_str(" AND active");
        }
        if let Some(b) = q.before {
            sql.push_str(&format!(" AND id < {}", p.add(sql_u64(b.get()))));
        }
        let l = p.add(limit_or_default(q.limit));
        sql.push_str(&format!(" ORDER BY id DESC LIMIT {l}"));
        self.query(&sql, &p.refs())?.iter().map(reg_row).collect()
    }

    fn active_registrations_of_device(&self, d: &DeviceId) -> Result<Vec<RegistrationId>, Error> {
        self.lock_device(d)?;
        ids(self.query(
            &format!(
                "SELECT id FROM registrations WHERE device_id = $1 AND active{}",
                self.for_update()
            ),
            &[&d.as_str()],
        )?)
    }

    fn active_registrations_of_pt(&self, pt: &PtId) -> Result<Vec<RegistrationId>, Error> {
        ids(self.query(
            &format!(
                "SELECT id FROM registrations WHERE pt_id = $1 AND active{}",
                self.for_update()
            ),
            &[&&pt.to_bytes()[..]],
        )?)
    }

    fn for_each_live_registration(
        &self,
        min_expires_at: u64,
        f: &mut dyn FnMut(RegistrationId, u32, u32, u64),
    ) -> Result<(), Error> {
        let rows = self.query(
            "SELECT id, generation, binding, expires_at FROM registrations \
             WHERE active AND expires_at >= $1",
            &[&sql_u64(min_expires_at)],
        )?;
        for r in &rows {
            f(
                RegistrationId::new(u(get(r, 0)?)),
                u32_of(get(r, 1)?),
                u32_of(get(r, 2)?),
                u(get(r, 3)?),
            );
        }
        Ok(())
    }

    fn for_each_revoked_registration(
        &self,
        min_expires_at: u64,
        f: &mut dyn FnMut(RegistrationId),
    ) -> Result<(), Error> {
        for id in ids(self.query(
            "SELECT id FROM registrations WHERE NOT active AND expires_at >= $1",
            &[&sql_u64(min_expires_at)],
        )?)? {
            f(id);
        }
        Ok(())
    }

    fn blocked(&self, d: &DeviceId) -> Result<Option<BlockRecord>, Error> {
        self.lock_device(d)?;
        self.query_opt(
            "SELECT device_id, at, \"by\", reason FROM blocked_devices WHERE device_id = $1",
            &[&d.as_str()],
        )?
        .map(|r| block_row(&r))
        .transpose()
    }

    fn list_blocked(&self) -> Result<Vec<BlockRecord>, Error> {
        self.query(
            "SELECT device_id, at, \"by\", reason FROM blocked_devices ORDER BY at",
            &[],
        )?
        .iter()
        .map(block_row)
        .collect()
    }

    fn audit(&self, after: u64, limit: usize, newest: bool) -> Result<Vec<AuditEvent>, Error> {
        let events = "SELECT seq, at, actor, source, action, subject, detail FROM audit \
                      WHERE seq > $1";
        let sql = if newest {
            format!("SELECT * FROM ({events} ORDER BY seq DESC LIMIT $2) e ORDER BY seq")
        } else {
            format!("{events} ORDER BY seq LIMIT $2")
        };
        self.query(&sql, &[&sql_u64(after), &limit_or_default(limit)])?
            .iter()
            .map(|r| {
                Ok(AuditEvent {
                    seq: u(get(r, 0)?),
                    at: ts(get(r, 1)?),
                    actor: get(r, 2)?,
                    source: get(r, 3)?,
                    action: get(r, 4)?,
                    subject: get(r, 5)?,
                    detail: from_json(get(r, 6)?)?,
                })
            })
            .collect()
    }

    fn revocations(&self, after: u64, limit: usize) -> Result<(Vec<RegistrationId>, u64), Error> {
        let rows = self.query(
            "SELECT seq, subject FROM audit WHERE seq > $1 AND action = 'registration.revoke' \
             ORDER BY seq LIMIT $2",
            &[&sql_u64(after), &limit_or_default(limit)],
        )?;
        super::super::sql::revocation_page(
            after,
            rows.iter()
                .map(|r| Ok((u(get(r, 0)?), get::<String>(r, 1)?))),
        )
    }

    fn audit_head(&self) -> Result<u64, Error> {
        let r = self.query_opt("SELECT value FROM counters WHERE name = 'audit'", &[])?;
        Ok(r.map(|r| get::<i64>(&r, 0)).transpose()?.map_or(0, u))
    }

    fn leak_signals(&self, after: u64, limit: usize) -> Result<Vec<LeakSignal>, Error> {
        self.query(
            "SELECT id, at, kind, pt_id, registration_id, operation_id, source, action, detail \
             FROM leak_signals WHERE id > $1 ORDER BY id LIMIT $2",
            &[&sql_u64(after), &limit_or_default(limit)],
        )?
        .iter()
        .map(|r| {
            let kind: &str = get(r, 2)?;
            Ok(LeakSignal {
                id: u(get(r, 0)?),
                at: ts(get(r, 1)?),
                kind: LeakKind::parse(kind)
                    .ok_or_else(|| Error::store(format!("unknown leak kind {kind}")))?,
                pt_id: get(r, 3)?,
                registration_id: get::<Option<i64>>(r, 4)?.map(|v| RegistrationId::new(u(v))),
                operation_id: get(r, 5)?,
                source: get(r, 6)?,
                action: get(r, 7)?,
                detail: get(r, 8)?,
            })
        })
        .collect()
    }

    fn counts(&self) -> Result<StoreCounts, Error> {
        let r = self
            .query_opt(
                &format!(
                    "SELECT (SELECT count(*) FROM pts WHERE {PT_VISIBLE}), \
                     (SELECT count(*) FROM operations WHERE state = 'pending'), \
                     (SELECT count(*) FROM registrations WHERE active), \
                     (SELECT value FROM counters WHERE name = 'audit'), \
                     (SELECT count(*) FROM leak_signals)"
                ),
                &[],
            )?
            .ok_or_else(|| Error::store("counts: no row".into()))?;
        Ok(StoreCounts {
            pts: u(get(&r, 0)?),
            pending_operations: u(get(&r, 1)?),
            active_registrations: u(get(&r, 2)?),
            audit_events: u(get(&r, 3)?),
            leak_signals: u(get(&r, 4)?),
        })
    }

    fn admin_token(
        &self,
        id: &AdminTokenId,
    ) -> Result<Option<(AdminTokenRecord, [u8; 32])>, Error> {
        self.query_opt(
            "SELECT id, verifier, name, role, created_at, revoked_at FROM admin_tokens \
             WHERE id = $1",
            &[&&id.to_bytes()[..]],
        )?
        .map(|r| admin_row(&r))
        .transpose()
    }

    fn list_admin_tokens(&self) -> Result<Vec<AdminTokenRecord>, Error> {
        self.query(
            "SELECT id, verifier, name, role, created_at, revoked_at FROM admin_tokens \
             ORDER BY created_at, id",
            &[],
        )?
        .iter()
        .map(|r| admin_row(r).map(|(a, _)| a))
        .collect()
    }
}

impl Db<'_> {
    fn log(&mut self) -> Result<&mut PendingLog, Error> {
        self.log
            .as_deref_mut()
            .ok_or_else(|| Error::store("write outside the store's writer".into()))
    }
}

impl StoreTxn for Db<'_> {
    fn set_meta(&mut self, key: &str, value: &str) -> Result<(), Error> {
        self.execute(
            "INSERT INTO meta (key, value) VALUES ($1, $2) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            &[&key, &value],
        )?;
        Ok(())
    }

    fn put_key_epoch(&mut self, rec: &KeyEpochRecord) -> Result<(), Error> {
        self.execute(
            "INSERT INTO key_epochs (epoch, created_at, rt_keep_until, retired_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (epoch) DO UPDATE SET \
             created_at = excluded.created_at, rt_keep_until = excluded.rt_keep_until, \
             retired_at = excluded.retired_at",
            &[
                &i64::from(rec.epoch),
                &sql_ts(rec.created_at),
                &rec.rt_keep_until.map(sql_ts),
                &rec.retired_at.map(sql_ts),
            ],
        )?;
        Ok(())
    }

    fn insert_pt(&mut self, rec: &PtRecord, verifier: &[u8; 32]) -> Result<(), Error> {
        self.execute(
            &format!(
                "INSERT INTO pts ({PT_COLUMNS}) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
            ),
            &[
                &&rec.id.to_bytes()[..],
                &&verifier[..],
                &rec.label,
                &json(&rec.kind)?,
                &json(&rec.approval)?,
                &sql_u64(rec.rt_lifetime_secs),
                &json(&rec.device_id_policy)?,
                &rec.expires_at.map(sql_ts),
                &sql_ts(rec.created_at),
                &rec.revoked_at.map(sql_ts),
                &sql_u64(rec.registrations_created),
                &rec.batch,
            ],
        )?;
        Ok(())
    }

    fn update_pt(&mut self, rec: &PtRecord) -> Result<(), Error> {
        self.execute(
            "UPDATE pts SET revoked_at = $2, registrations_created = $3 WHERE id = $1",
            &[
                &&rec.id.to_bytes()[..],
                &rec.revoked_at.map(sql_ts),
                &sql_u64(rec.registrations_created),
            ],
        )?;
        Ok(())
    }

    fn insert_operation(&mut self, rec: &OperationRecord) -> Result<(), Error> {
        self.execute(
            "INSERT INTO operations (id, pt_id, state, created_at, expires_at, body, nonce_digest) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &&rec.id.to_bytes()[..],
                &&rec.pt_id.to_bytes()[..],
                &rec.state.as_str(),
                &sql_ts(rec.created_at),
                &sql_ts(rec.expires_at),
                &json(rec)?,
                &&rec.nonce_digest.0[..],
            ],
        )?;
        Ok(())
    }

    fn update_operation(&mut self, rec: &OperationRecord) -> Result<(), Error> {
        self.execute(
            "UPDATE operations SET state = $2, body = $3 WHERE id = $1",
            &[&&rec.id.to_bytes()[..], &rec.state.as_str(), &json(rec)?],
        )?;
        Ok(())
    }

    fn insert_registration(&mut self, rec: &RegistrationRecord) -> Result<RegistrationId, Error> {
        let row = self
            .query_opt(
                "INSERT INTO registrations (device_id, pt_id, operation_id, active, generation, \
                 key_epoch, issued_at, expires_at, lifetime, created_at, revoked_at, \
                 revoke_reason, binding) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING id",
                &[
                    &rec.device_id.as_str(),
                    &&rec.pt_id.to_bytes()[..],
                    &&rec.operation_id.to_bytes()[..],
                    &(rec.status == RegistrationStatus::Active),
                    &i64::from(rec.generation),
                    &i64::from(rec.key_epoch),
                    &sql_u64(rec.issued_at),
                    &sql_u64(rec.expires_at),
                    &sql_u64(rec.lifetime_secs),
                    &sql_ts(rec.created_at),
                    &rec.revoked_at.map(sql_ts),
                    &rec.revoke_reason,
                    &i64::from(rec.binding),
                ],
            )?
            .ok_or_else(|| Error::store("insert returned no id".into()))?;
        self.wrote.set(true);
        Ok(RegistrationId::new(u(get(&row, 0)?)))
    }

    fn update_registration(&mut self, rec: &RegistrationRecord) -> Result<(), Error> {
        self.execute(
            "UPDATE registrations SET active = $2, generation = $3, key_epoch = $4, \
             issued_at = $5, expires_at = $6, revoked_at = $7, revoke_reason = $8 WHERE id = $1",
            &[
                &sql_u64(rec.id.get()),
                &(rec.status == RegistrationStatus::Active),
                &i64::from(rec.generation),
                &i64::from(rec.key_epoch),
                &sql_u64(rec.issued_at),
                &sql_u64(rec.expires_at),
                &rec.revoked_at.map(sql_ts),
                &rec.revoke_reason,
            ],
        )?;
        Ok(())
    }

    fn refresh_registration(
        &mut self,
        rec: &RegistrationRecord,
        audit: RefreshAudit<'_>,
    ) -> Result<(), Error> {
        self.execute(
            "UPDATE registrations SET generation = $2, key_epoch = $3, issued_at = $4, \
             expires_at = $5 WHERE id = $1",
            &[
                &sql_u64(rec.id.get()),
                &i64::from(rec.generation),
                &i64::from(rec.key_epoch),
                &sql_u64(rec.issued_at),
                &sql_u64(rec.expires_at),
            ],
        )?;
        self.append_audit(&NewAuditEvent {
            at: audit.at,
            actor: audit.actor,
            source: audit.source,
            action: REFRESH_ACTION,
            subject: &rec.id.get().to_string(),
            detail: serde_json::json!({
                "expires_at": rec.expires_at,
                "generation": rec.generation,
            }),
        })?;
        Ok(())
    }

    fn block(&mut self, rec: &BlockRecord) -> Result<(), Error> {
        self.lock_device(&rec.device_id)?;
        self.execute(
            "INSERT INTO blocked_devices (device_id, at, \"by\", reason) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (device_id) DO UPDATE SET at = excluded.at, \"by\" = excluded.\"by\", \
             reason = excluded.reason",
            &[
                &rec.device_id.as_str(),
                &sql_ts(rec.at),
                &rec.by,
                &rec.reason,
            ],
        )?;
        Ok(())
    }

    fn unblock(&mut self, d: &DeviceId) -> Result<bool, Error> {
        self.lock_device(d)?;
        Ok(self.execute(
            "DELETE FROM blocked_devices WHERE device_id = $1",
            &[&d.as_str()],
        )? > 0)
    }

    /// The event is numbered when its batch commits (see the module's documentation).
    fn append_audit(&mut self, ev: &NewAuditEvent<'_>) -> Result<(), Error> {
        let row = AuditRow {
            at: sql_ts(ev.at),
            actor: ev.actor.to_owned(),
            source: ev.source.map(str::to_owned),
            action: ev.action.to_owned(),
            subject: ev.subject.to_owned(),
            detail: json(&ev.detail)?,
        };
        self.log()?.audit.push(row);
        self.wrote.set(true);
        Ok(())
    }

    fn publishes(&self) -> bool {
        true
    }

    fn publish(&mut self, changes: &[crate::store::Change]) -> Result<(), Error> {
        let mut bodies = Vec::with_capacity(changes.len());
        for c in changes {
            bodies.push(json(c)?);
        }
        self.log()?.changes.extend(bodies);
        self.wrote.set(true);
        Ok(())
    }

    /// The signal is numbered when its batch commits.
    fn insert_leak(&mut self, sig: &NewLeakSignal) -> Result<(), Error> {
        self.log()?.leaks.push(sig.clone());
        self.wrote.set(true);
        Ok(())
    }

    fn insert_admin_token(
        &mut self,
        rec: &AdminTokenRecord,
        verifier: &[u8; 32],
    ) -> Result<(), Error> {
        self.execute(
            "INSERT INTO admin_tokens (id, verifier, name, role, created_at, revoked_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &&rec.id.to_bytes()[..],
                &&verifier[..],
                &rec.name,
                &rec.role.as_str(),
                &sql_ts(rec.created_at),
                &rec.revoked_at.map(sql_ts),
            ],
        )?;
        Ok(())
    }

    fn revoke_admin_token(&mut self, id: &AdminTokenId, at: Timestamp) -> Result<bool, Error> {
        Ok(self.execute(
            "UPDATE admin_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
            &[&&id.to_bytes()[..], &sql_ts(at)],
        )? > 0)
    }

    fn stage_pt_batch(&mut self, batch: &str, at: Timestamp) -> Result<(), Error> {
        self.execute(
            "INSERT INTO pt_batches_staged (id, created_at) VALUES ($1, $2)",
            &[&batch, &sql_ts(at)],
        )?;
        Ok(())
    }

    fn commit_pt_batch(&mut self, batch: &str) -> Result<bool, Error> {
        Ok(self.execute(
            "DELETE FROM pt_batches_staged WHERE id = $1 AND NOT abandoned",
            &[&batch],
        )? > 0)
    }

    fn abandon_pt_batches(&mut self, batch: Option<&str>) -> Result<(), Error> {
        self.execute(
            "UPDATE pt_batches_staged SET abandoned = true WHERE $1::text IS NULL OR id = $1",
            &[&batch],
        )?;
        Ok(())
    }

    fn delete_abandoned_pts(&mut self, limit: usize) -> Result<usize, Error> {
        let Some(row) = self.query_opt(
            "SELECT id FROM pt_batches_staged WHERE abandoned LIMIT 1",
            &[],
        )?
        else {
            return Ok(0);
        };
        let batch: String = get(&row, 0)?;
        let n = self.execute(
            "DELETE FROM pts WHERE id IN (SELECT id FROM pts WHERE batch = $1 LIMIT $2)",
            &[&batch, &limit_or_default(limit)],
        )? as usize;
        if n < limit {
            self.execute("DELETE FROM pt_batches_staged WHERE id = $1", &[&batch])?;
        }
        Ok(n)
    }

    fn expired_pending(
        &mut self,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<OperationRecord>, Error> {
        // Another node sweeping at the same time takes other rows.
        self.query(
            &format!(
                "SELECT {OP_COLUMNS} FROM operations WHERE state = 'pending' AND expires_at <= $1 \
                 LIMIT $2 FOR UPDATE SKIP LOCKED"
            ),
            &[&sql_ts(now), &limit_or_default(limit)],
        )?
        .iter()
        .map(op_row)
        .collect()
    }
}
