//! The engine's reads over SQLite.

use rusqlite::{params, OptionalExtension};

use super::super::super::sql::{limit_or_default, sql_ts, sql_u64, ts, PT_COLUMNS, PT_VISIBLE};
use super::super::super::{
    KeyEpochRecord, OperationQuery, RegistrationQuery, StoreCounts, StoreRead,
};
use super::super::journal::audit_from_journal;
use super::*;
use crate::model::{
    AuditEvent, DeviceId, LeakKind, LeakSignal, NonceDigest, OperationId, OperationState,
};
use crate::time::Timestamp;

impl StoreRead for Db<'_> {
    fn meta(&self, key: &str) -> Result<Option<String>, Error> {
        Ok(self
            .conn
            .prepare_cached("SELECT value FROM meta WHERE key = ?1")?
            .query_row([key], |r| r.get(0))
            .optional()?)
    }

    fn key_epochs(&self) -> Result<Vec<KeyEpochRecord>, Error> {
        let mut st = self.conn.prepare_cached(
            "SELECT epoch, created_at, rt_keep_until, retired_at FROM key_epochs ORDER BY epoch",
        )?;
        let rows = st.query_map([], |r| {
            Ok(KeyEpochRecord {
                epoch: r.get(0)?,
                created_at: ts(r.get(1)?),
                rt_keep_until: ts_opt(r.get(2)?),
                retired_at: ts_opt(r.get(3)?),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn pt(&self, id: &PtId) -> Result<Option<(PtRecord, [u8; 32])>, Error> {
        Ok(self
            .conn
            .prepare_cached(&format!(
                "SELECT {PT_COLUMNS} FROM pts WHERE id = ?1 AND {PT_VISIBLE}"
            ))?
            .query_row([&id.to_bytes()[..]], pt_row)
            .optional()?)
    }

    fn list_pts(
        &self,
        limit: usize,
        include_revoked: bool,
        before: Option<(Timestamp, PtId)>,
    ) -> Result<Vec<PtRecord>, Error> {
        let mut st = self.conn.prepare_cached(&format!(
            "SELECT {PT_COLUMNS} FROM pts WHERE (?1 OR revoked_at IS NULL) AND {PT_VISIBLE} \
             AND (?3 IS NULL OR (created_at, id) < (?3, ?4)) \
             ORDER BY created_at DESC, id DESC LIMIT ?2"
        ))?;
        let (at, id) = match before {
            Some((at, id)) => (Some(sql_ts(at)), Some(id.to_bytes().to_vec())),
            None => (None, None),
        };
        let rows = st.query_map(
            params![include_revoked, limit_or_default(limit), at, id],
            pt_row,
        )?;
        Ok(rows.map(|r| r.map(|(p, _)| p)).collect::<Result<_, _>>()?)
    }

    fn operation(&self, id: &OperationId) -> Result<Option<OperationRecord>, Error> {
        Ok(self
            .conn
            .prepare_cached("SELECT body, nonce_digest FROM operations WHERE id = ?1")?
            .query_row([&id.to_bytes()[..]], op_row)
            .optional()?)
    }

    fn pending_operations(&self, pt: &PtId) -> Result<Vec<OperationRecord>, Error> {
        let mut st = self.conn.prepare_cached(
            // The PT's own index: a PT has few pending operations, all of them may.
            "SELECT body, nonce_digest FROM operations INDEXED BY operations_pt_state \
             WHERE pt_id = ?1 AND state = 'pending' ORDER BY created_at",
        )?;
        let rows = st.query_map([&pt.to_bytes()[..]], op_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn pending_operations_by_nonce(
        &self,
        pt: &PtId,
        digests: &[NonceDigest],
    ) -> Result<Vec<OperationRecord>, Error> {
        let mut st = self.conn.prepare_cached(
            "SELECT body, nonce_digest FROM operations INDEXED BY operations_pending_nonce \
             WHERE pt_id = ?1 AND state = 'pending' AND nonce_digest = ?2",
        )?;
        let mut found = Vec::new();
        for d in digests {
            for op in st.query_map(params![&pt.to_bytes()[..], &d.0[..]], op_row)? {
                found.push(op?);
            }
        }
        Ok(found)
    }

    fn pending_count(&self, pt: &PtId, now: Timestamp) -> Result<usize, Error> {
        let n: i64 = self
            .conn
            .prepare_cached(
                "SELECT count(*) FROM operations INDEXED BY operations_pending_expiry \
                 WHERE pt_id = ?1 AND state = 'pending' AND expires_at > ?2",
            )?
            .query_row(params![&pt.to_bytes()[..], sql_ts(now)], |r| r.get(0))?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    fn pending_operations_for_device(
        &self,
        pt: &PtId,
        device: &DeviceId,
    ) -> Result<Vec<OperationRecord>, Error> {
        let mut st = self.conn.prepare_cached(
            "SELECT body, nonce_digest FROM operations INDEXED BY operations_pending_device \
             WHERE pt_id = ?1 AND state = 'pending' AND requested_device_id = ?2 \
             ORDER BY created_at",
        )?;
        let rows = st.query_map(params![&pt.to_bytes()[..], device.as_str()], op_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn list_operations(&self, q: &OperationQuery) -> Result<Vec<OperationRecord>, Error> {
        // Only the filters given are in the statement, so that SQLite can use their indexes.
        use rusqlite::types::Value as V;
        let mut sql = "SELECT body, nonce_digest FROM operations WHERE 1".to_owned();
        let mut args: Vec<V> = Vec::new();
        match (q.state, q.as_of) {
            (Some(OperationState::Pending), Some(now)) => {
                sql.push_str(" AND state = 'pending' AND expires_at > ?");
                args.push(V::Integer(sql_ts(now)));
            }
            (Some(OperationState::Expired), Some(now)) => {
                sql.push_str(" AND (state = 'expired' OR (state = 'pending' AND expires_at <= ?))");
                args.push(V::Integer(sql_ts(now)));
            }
            (Some(state), _) => {
                sql.push_str(" AND state = ?");
                args.push(V::Text(state.as_str().to_owned()));
            }
            (None, _) => {}
        }
        if let Some(p) = q.pt_id {
            sql.push_str(" AND pt_id = ?");
            args.push(V::Blob(p.to_bytes().to_vec()));
        }
        if let Some((at, id)) = q.before {
            // A row value, so that the index seeks to the page's start.
            sql.push_str(" AND (created_at, id) < (?, ?)");
            args.push(V::Integer(sql_ts(at)));
            args.push(V::Blob(id.to_bytes().to_vec()));
        }
        sql.push_str(" ORDER BY created_at DESC, id DESC LIMIT ?");
        args.push(V::Integer(limit_or_default(q.limit)));
        let mut st = self.conn.prepare_cached(&sql)?;
        let rows = st.query_map(rusqlite::params_from_iter(args), op_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn registration(&self, id: RegistrationId) -> Result<Option<RegistrationRecord>, Error> {
        let mut rec = self
            .conn
            .prepare_cached(REG_BY_ID)?
            .query_row([sql_u64(id.get())], reg_row)
            .optional()?;
        if let Some(r) = &mut rec {
            self.overlay(r);
        }
        Ok(rec)
    }

    fn list_registrations(&self, q: &RegistrationQuery) -> Result<Vec<RegistrationRecord>, Error> {
        // Only the filters given are in the statement, so that SQLite can use their indexes.
        use rusqlite::types::Value as V;
        let mut sql = format!("SELECT {REG_COLUMNS} FROM registrations WHERE 1");
        let mut args: Vec<V> = Vec::new();
        if let Some(d) = &q.device_id {
            sql.push_str(" AND device_id = ?");
            args.push(V::Text(d.as_str().to_owned()));
        }
        if let Some(p) = q.pt_id {
            sql.push_str(" AND pt_id = ?");
            args.push(V::Blob(p.to_bytes().to_vec()));
        }
        if q.active_only {
            sql.push_str(" AND active = 1");
        }
        if let Some(b) = q.before {
            sql.push_str(" AND id < ?");
            args.push(V::Integer(sql_u64(b.get())));
        }
        sql.push_str(" ORDER BY id DESC LIMIT ?");
        args.push(V::Integer(limit_or_default(q.limit)));
        let mut st = self.conn.prepare_cached(&sql)?;
        let rows = st.query_map(rusqlite::params_from_iter(args), reg_row)?;
        let mut out: Vec<RegistrationRecord> = rows.collect::<Result<_, _>>()?;
        for r in &mut out {
            self.overlay(r);
        }
        Ok(out)
    }

    fn active_registrations_of_device(&self, d: &DeviceId) -> Result<Vec<RegistrationId>, Error> {
        let mut st = self
            .conn
            .prepare_cached("SELECT id FROM registrations WHERE device_id = ?1 AND active = 1")?;
        let rows = st.query_map([d.as_str()], |r| {
            Ok(RegistrationId::new(r.get::<_, i64>(0)? as u64))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn active_registrations_of_pt(&self, pt: &PtId) -> Result<Vec<RegistrationId>, Error> {
        let mut st = self
            .conn
            .prepare_cached("SELECT id FROM registrations WHERE pt_id = ?1 AND active = 1")?;
        let rows = st.query_map([&pt.to_bytes()[..]], |r| {
            Ok(RegistrationId::new(r.get::<_, i64>(0)? as u64))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn for_each_live_registration(
        &self,
        min_expires_at: u64,
        f: &mut dyn FnMut(RegistrationId, u32, u32, u64),
    ) -> Result<(), Error> {
        let mut st = self.conn.prepare_cached(
            "SELECT id, generation, binding, expires_at FROM registrations \
             WHERE active = 1 AND expires_at >= ?1",
        )?;
        let mut rows = st.query([sql_u64(min_expires_at)])?;
        while let Some(r) = rows.next()? {
            f(
                RegistrationId::new(r.get::<_, i64>(0)? as u64),
                r.get(1)?,
                r.get::<_, i64>(2)? as u32,
                r.get::<_, i64>(3)? as u64,
            );
        }
        Ok(())
    }

    fn for_each_revoked_registration(
        &self,
        min_expires_at: u64,
        f: &mut dyn FnMut(RegistrationId),
    ) -> Result<(), Error> {
        let mut st = self
            .conn
            .prepare_cached("SELECT id FROM registrations WHERE active = 0 AND expires_at >= ?1")?;
        let mut rows = st.query([sql_u64(min_expires_at)])?;
        while let Some(r) = rows.next()? {
            f(RegistrationId::new(r.get::<_, i64>(0)? as u64));
        }
        Ok(())
    }

    fn blocked(&self, d: &DeviceId) -> Result<Option<BlockRecord>, Error> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT device_id, at, by, reason FROM blocked_devices WHERE device_id = ?1",
            )?
            .query_row([d.as_str()], block_row)
            .optional()?)
    }

    fn list_blocked(&self) -> Result<Vec<BlockRecord>, Error> {
        let mut st = self
            .conn
            .prepare_cached("SELECT device_id, at, by, reason FROM blocked_devices ORDER BY at")?;
        let rows = st.query_map([], block_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn audit(&self, after: u64, limit: usize, newest: bool) -> Result<Vec<AuditEvent>, Error> {
        // Refresh events are journal rows; they interleave with the others by sequence (a
        // merge of two primary-key range scans, backwards for the newest).
        let events = format!(
            "SELECT seq, at, actor, source, action, subject, detail FROM audit \
             WHERE seq > ?1 UNION ALL {} AND seq > ?1",
            audit_from_journal()
        );
        let mut st = self.conn.prepare_cached(&if newest {
            format!("SELECT * FROM ({events} ORDER BY seq DESC LIMIT ?2) ORDER BY seq")
        } else {
            format!("{events} ORDER BY seq LIMIT ?2")
        })?;
        let rows = st.query_map(params![sql_u64(after), limit_or_default(limit)], |r| {
            Ok(AuditEvent {
                seq: r.get::<_, i64>(0)? as u64,
                at: ts(r.get(1)?),
                actor: r.get(2)?,
                source: r.get(3)?,
                action: r.get(4)?,
                subject: r.get(5)?,
                detail: from_json(&r.get::<_, String>(6)?)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn revocations(&self, after: u64, limit: usize) -> Result<(Vec<RegistrationId>, u64), Error> {
        // A range scan of the primary key from the cursor; revocations are a small share of
        // the audit rows after it, and the cursor keeps up.
        let mut st = self.conn.prepare_cached(
            "SELECT seq, subject FROM audit WHERE seq > ?1 AND action = 'registration.revoke' \
             ORDER BY seq LIMIT ?2",
        )?;
        let rows = st.query_map(params![sql_u64(after), limit_or_default(limit)], |r| {
            Ok((r.get::<_, i64>(0)? as u64, r.get::<_, String>(1)?))
        })?;
        super::super::super::sql::revocation_page(after, rows.map(|r| r.map_err(Error::from)))
    }

    fn audit_head(&self) -> Result<u64, Error> {
        let head: Option<i64> = self
            .conn
            .query_row("SELECT MAX(seq) FROM audit", [], |r| r.get(0))?;
        Ok(head.unwrap_or(0) as u64)
    }

    fn leak_signals(&self, after: u64, limit: usize) -> Result<Vec<LeakSignal>, Error> {
        let mut st = self.conn.prepare_cached(
            "SELECT id, at, kind, pt_id, registration_id, operation_id, source, action, detail \
             FROM leak_signals WHERE id > ?1 ORDER BY id LIMIT ?2",
        )?;
        let rows = st.query_map(params![sql_u64(after), limit_or_default(limit)], |r| {
            let kind: String = r.get(2)?;
            Ok(LeakSignal {
                id: r.get::<_, i64>(0)? as u64,
                at: ts(r.get(1)?),
                kind: LeakKind::parse(&kind).ok_or_else(|| {
                    conversion(std::io::Error::other(format!("unknown leak kind {kind}")))
                })?,
                pt_id: r.get(3)?,
                registration_id: r
                    .get::<_, Option<i64>>(4)?
                    .map(|v| RegistrationId::new(v as u64)),
                operation_id: r.get(5)?,
                source: r.get(6)?,
                action: r.get(7)?,
                detail: r.get(8)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn counts(&self) -> Result<StoreCounts, Error> {
        let c = |sql: &str| -> Result<u64, Error> {
            Ok(self
                .conn
                .prepare_cached(sql)?
                .query_row([], |r| r.get::<_, i64>(0))? as u64)
        };
        Ok(StoreCounts {
            pts: c(&format!("SELECT count(*) FROM pts WHERE {PT_VISIBLE}"))?,
            pending_operations: c("SELECT count(*) FROM operations WHERE state = 'pending'")?,
            active_registrations: c("SELECT count(*) FROM registrations WHERE active = 1")?,
            audit_events: c(LAST_AUDIT_SEQ)?,
            leak_signals: c("SELECT count(*) FROM leak_signals")?,
        })
    }

    fn admin_token(
        &self,
        id: &AdminTokenId,
    ) -> Result<Option<(AdminTokenRecord, [u8; 32])>, Error> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT id, verifier, name, role, created_at, revoked_at FROM admin_tokens WHERE id = ?1",
            )?
            .query_row([&id.to_bytes()[..]], admin_row)
            .optional()?)
    }

    fn list_admin_tokens(&self) -> Result<Vec<AdminTokenRecord>, Error> {
        let mut st = self.conn.prepare_cached(
            "SELECT id, verifier, name, role, created_at, revoked_at FROM admin_tokens ORDER BY created_at",
        )?;
        let rows = st.query_map([], admin_row)?;
        Ok(rows.map(|r| r.map(|(a, _)| a)).collect::<Result<_, _>>()?)
    }
}
