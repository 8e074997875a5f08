//! The engine's writes over SQLite (inside the writer's batch).

use rusqlite::{params, OptionalExtension};

use super::super::super::sql::{json, retention_scan, retention_table, sql_ts, sql_u64};
use super::super::super::{
    KeyEpochRecord, NewAuditEvent, NewLeakSignal, RefreshAudit, RetentionClass, RetentionStep,
    StoreTxn,
};
use super::*;
use crate::time::Timestamp;

impl StoreTxn for Db<'_> {
    fn set_meta(&mut self, key: &str, value: &str) -> Result<(), Error> {
        self.conn
            .prepare_cached("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)")?
            .execute([key, value])?;
        Ok(())
    }

    fn put_key_epoch(&mut self, rec: &KeyEpochRecord) -> Result<(), Error> {
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO key_epochs (epoch, created_at, rt_keep_until, retired_at) \
                 VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![
                rec.epoch,
                sql_ts(rec.created_at),
                rec.rt_keep_until.map(sql_ts),
                rec.retired_at.map(sql_ts)
            ])?;
        Ok(())
    }

    fn insert_pt(&mut self, rec: &PtRecord, verifier: &[u8; 32]) -> Result<(), Error> {
        self.conn
            .prepare_cached(&format!(
                "INSERT INTO pts ({PT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
            ))?
            .execute(params![
                &rec.id.to_bytes()[..],
                &verifier[..],
                rec.label,
                json(&rec.kind)?,
                json(&rec.approval)?,
                sql_u64(rec.rt_lifetime_secs),
                json(&rec.device_id_policy)?,
                rec.expires_at.map(sql_ts),
                sql_ts(rec.created_at),
                rec.revoked_at.map(sql_ts),
                sql_u64(rec.registrations_created),
                rec.batch,
            ])?;
        Ok(())
    }

    fn update_pt(&mut self, rec: &PtRecord) -> Result<(), Error> {
        self.conn
            .prepare_cached(
                "UPDATE pts SET revoked_at = ?2, registrations_created = ?3 WHERE id = ?1",
            )?
            .execute(params![
                &rec.id.to_bytes()[..],
                rec.revoked_at.map(sql_ts),
                sql_u64(rec.registrations_created)
            ])?;
        Ok(())
    }

    fn insert_operation(&mut self, rec: &OperationRecord) -> Result<(), Error> {
        self.conn
            .prepare_cached(
                "INSERT INTO operations (id, pt_id, state, created_at, expires_at, body, \
                 nonce_digest, requested_device_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                &rec.id.to_bytes()[..],
                &rec.pt_id.to_bytes()[..],
                rec.state.as_str(),
                sql_ts(rec.created_at),
                sql_ts(rec.expires_at),
                json(rec)?,
                &rec.nonce_digest.0[..],
                rec.requested_device_id.as_ref().map(|d| d.as_str()),
            ])?;
        Ok(())
    }

    fn update_operation(&mut self, rec: &OperationRecord) -> Result<(), Error> {
        self.conn
            .prepare_cached("UPDATE operations SET state = ?2, body = ?3 WHERE id = ?1")?
            .execute(params![
                &rec.id.to_bytes()[..],
                rec.state.as_str(),
                json(rec)?
            ])?;
        Ok(())
    }

    fn insert_registration(&mut self, rec: &RegistrationRecord) -> Result<RegistrationId, Error> {
        self.conn
            .prepare_cached(&format!(
                "INSERT INTO registrations ({REG_COLUMNS}) \
                 VALUES (NULL, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
            ))?
            .execute(params![
                rec.device_id.as_str(),
                &rec.pt_id.to_bytes()[..],
                &rec.operation_id.to_bytes()[..],
                rec.status == RegistrationStatus::Active,
                rec.generation,
                rec.key_epoch,
                sql_u64(rec.issued_at),
                sql_u64(rec.expires_at),
                sql_u64(rec.lifetime_secs),
                sql_ts(rec.created_at),
                rec.revoked_at.map(sql_ts),
                rec.revoke_reason,
                i64::from(rec.binding),
            ])?;
        Ok(RegistrationId::new(self.conn.last_insert_rowid() as u64))
    }

    fn update_registration(&mut self, rec: &RegistrationRecord) -> Result<(), Error> {
        self.conn
            .prepare_cached(
                "UPDATE registrations SET active = ?2, generation = ?3, key_epoch = ?4, \
                 issued_at = ?5, expires_at = ?6, revoked_at = ?7, revoke_reason = ?8 WHERE id = ?1",
            )?
            .execute(params![
                sql_u64(rec.id.get()),
                rec.status == RegistrationStatus::Active,
                rec.generation,
                rec.key_epoch,
                sql_u64(rec.issued_at),
                sql_u64(rec.expires_at),
                rec.revoked_at.map(sql_ts),
                rec.revoke_reason,
            ])?;
        Ok(())
    }

    fn refresh_registration(
        &mut self,
        rec: &RegistrationRecord,
        audit: RefreshAudit<'_>,
    ) -> Result<(), Error> {
        // Appended to the refresh journal rather than updating the row in place (see
        // store/journal.rs); the fold writes it into the row later.
        let conn = self.conn;
        let batch = self.writer_journal()?;
        batch.append(conn, rec.id.get(), RefreshState::of(rec), audit)
    }

    fn block(&mut self, rec: &BlockRecord) -> Result<(), Error> {
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO blocked_devices (device_id, at, by, reason) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![rec.device_id.as_str(), sql_ts(rec.at), rec.by, rec.reason])?;
        Ok(())
    }

    fn unblock(&mut self, d: &DeviceId) -> Result<bool, Error> {
        Ok(self
            .conn
            .prepare_cached("DELETE FROM blocked_devices WHERE device_id = ?1")?
            .execute([d.as_str()])?
            > 0)
    }

    fn append_audit(&mut self, ev: &NewAuditEvent<'_>) -> Result<(), Error> {
        // Numbered by the writer, in one sequence with the refresh events in the journal.
        let seq = self.writer_journal()?.next_seq();
        self.conn
            .prepare_cached(
                "INSERT INTO audit (seq, at, actor, source, action, subject, detail) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                seq,
                sql_ts(ev.at),
                ev.actor,
                ev.source,
                ev.action,
                ev.subject,
                json(&ev.detail)?
            ])?;
        Ok(())
    }

    fn insert_leak(&mut self, s: &NewLeakSignal) -> Result<(), Error> {
        self.conn
            .prepare_cached(
                "INSERT INTO leak_signals (at, kind, pt_id, registration_id, operation_id, source, action, detail) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                sql_ts(s.at),
                s.kind.as_str(),
                s.pt_id.map(|p| p.to_string()),
                s.registration_id.map(|r| sql_u64(r.get())),
                s.operation_id.map(|o| o.to_string()),
                s.source,
                s.action,
                s.detail
            ])?;
        Ok(())
    }

    fn insert_admin_token(
        &mut self,
        rec: &AdminTokenRecord,
        verifier: &[u8; 32],
    ) -> Result<(), Error> {
        self.conn
            .prepare_cached(
                "INSERT INTO admin_tokens (id, verifier, name, role, created_at, revoked_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                &rec.id.to_bytes()[..],
                &verifier[..],
                rec.name,
                rec.role.as_str(),
                sql_ts(rec.created_at),
                rec.revoked_at.map(sql_ts)
            ])?;
        Ok(())
    }

    fn revoke_admin_token(&mut self, id: &AdminTokenId, at: Timestamp) -> Result<bool, Error> {
        Ok(self
            .conn
            .prepare_cached(
                "UPDATE admin_tokens SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
            )?
            .execute(params![&id.to_bytes()[..], sql_ts(at)])?
            > 0)
    }

    fn stage_pt_batch(&mut self, batch: &str, at: Timestamp) -> Result<(), Error> {
        self.conn
            .prepare_cached("INSERT INTO pt_batches_staged (id, created_at) VALUES (?1, ?2)")?
            .execute(params![batch, sql_ts(at)])?;
        Ok(())
    }

    fn commit_pt_batch(&mut self, batch: &str) -> Result<bool, Error> {
        Ok(self
            .conn
            .prepare_cached("DELETE FROM pt_batches_staged WHERE id = ?1 AND abandoned = 0")?
            .execute([batch])?
            > 0)
    }

    fn abandon_pt_batches(&mut self, batch: Option<&str>) -> Result<(), Error> {
        self.conn
            .prepare_cached(
                "UPDATE pt_batches_staged SET abandoned = 1 WHERE ?1 IS NULL OR id = ?1",
            )?
            .execute([batch])?;
        Ok(())
    }

    fn delete_abandoned_pts(&mut self, limit: usize) -> Result<usize, Error> {
        let batch: Option<String> = self
            .conn
            .prepare_cached("SELECT id FROM pt_batches_staged WHERE abandoned = 1 LIMIT 1")?
            .query_row([], |r| r.get(0))
            .optional()?;
        let Some(batch) = batch else {
            return Ok(0);
        };
        let n = self
            .conn
            .prepare_cached(
                "DELETE FROM pts WHERE id IN (SELECT id FROM pts WHERE batch = ?1 LIMIT ?2)",
            )?
            .execute(params![batch, limit_or_default(limit)])?;
        if n < limit {
            self.conn
                .prepare_cached("DELETE FROM pt_batches_staged WHERE id = ?1")?
                .execute([&batch])?;
        }
        Ok(n)
    }

    fn delete_old(
        &mut self,
        class: RetentionClass,
        cursor: u64,
        cutoff: Timestamp,
        limit: usize,
    ) -> Result<RetentionStep, Error> {
        let (table, key, at, ours) = retention_table(class);
        // Journal rows only once folded into their registrations.
        let bound = match class {
            RetentionClass::RefreshJournal => {
                super::super::journal::folded_upto(self.conn)?.to_string()
            }
            _ => format!("(SELECT max({key}) FROM {table}) - 1"),
        };
        let (cursor, cutoff) = (sql_u64(cursor), sql_ts(cutoff));
        let (upto, done) = {
            let mut st = self.conn.prepare_cached(&format!(
                "SELECT {key}, {at}, {ours} FROM {table} WHERE {key} > ?1 AND {key} <= {bound} \
                 ORDER BY {key} LIMIT ?2"
            ))?;
            let rows = st.query_map(params![cursor, limit_or_default(limit)], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?;
            retention_scan(rows.map(|r| r.map_err(Error::from)), cutoff, limit)?
        };
        let Some(upto) = upto else {
            return Ok(RetentionStep {
                deleted: 0,
                cursor: cursor as u64,
                done,
            });
        };
        let deleted = self
            .conn
            .prepare_cached(&format!(
                "DELETE FROM {table} WHERE {key} > ?1 AND {key} <= ?2 AND {ours} AND {at} < ?3"
            ))?
            .execute(params![cursor, upto, cutoff])?;
        Ok(RetentionStep {
            deleted,
            cursor: upto as u64,
            done,
        })
    }

    fn expired_pending(
        &mut self,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<OperationRecord>, Error> {
        let mut st = self.conn.prepare_cached(
            "SELECT body, nonce_digest FROM operations INDEXED BY operations_state_expiry \
             WHERE state = 'pending' AND expires_at <= ?1 LIMIT ?2",
        )?;
        let rows = st.query_map(params![sql_ts(now), limit_or_default(limit)], op_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
