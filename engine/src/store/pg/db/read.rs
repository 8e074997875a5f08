//! The engine's reads over PostgreSQL.

use super::*;
use crate::model::{DeviceId, NonceDigest, OperationState};

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

    fn pending_operations_by_nonce(
        &self,
        pt: &PtId,
        digests: &[NonceDigest],
    ) -> Result<Vec<OperationRecord>, Error> {
        let digests: Vec<&[u8]> = digests.iter().map(|d| &d.0[..]).collect();
        self.query(
            &format!(
                "SELECT {OP_COLUMNS} FROM operations WHERE pt_id = $1 AND state = 'pending' \
                 AND nonce_digest = ANY($2) ORDER BY created_at"
            ),
            &[&&pt.to_bytes()[..], &digests],
        )?
        .iter()
        .map(op_row)
        .collect()
    }

    fn pending_count(&self, pt: &PtId, now: Timestamp) -> Result<usize, Error> {
        let r = self
            .query_opt(
                "SELECT count(*) FROM operations \
                 WHERE pt_id = $1 AND state = 'pending' AND expires_at > $2",
                &[&&pt.to_bytes()[..], &sql_ts(now)],
            )?
            .ok_or_else(|| Error::store("count: no row".into()))?;
        Ok(usize::try_from(get::<i64>(&r, 0)?).unwrap_or(0))
    }

    fn pending_operations_for_device(
        &self,
        pt: &PtId,
        device: &DeviceId,
    ) -> Result<Vec<OperationRecord>, Error> {
        self.query(
            &format!(
                "SELECT {OP_COLUMNS} FROM operations WHERE pt_id = $1 AND state = 'pending' \
                 AND requested_device_id = $2 ORDER BY created_at"
            ),
            &[&&pt.to_bytes()[..], &device.as_str()],
        )?
        .iter()
        .map(op_row)
        .collect()
    }

    fn list_operations(&self, q: &OperationQuery) -> Result<Vec<OperationRecord>, Error> {
        let mut p = Params::default();
        let mut sql = format!("SELECT {OP_COLUMNS} FROM operations WHERE true");
        match (q.state, q.as_of) {
            (Some(OperationState::Pending), Some(now)) => {
                let now = p.add(sql_ts(now));
                sql.push_str(&format!(" AND state = 'pending' AND expires_at > {now}"));
            }
            (Some(OperationState::Expired), Some(now)) => {
                let now = p.add(sql_ts(now));
                sql.push_str(&format!(
                    " AND (state = 'expired' OR (state = 'pending' AND expires_at <= {now}))"
                ));
            }
            (Some(state), _) => sql.push_str(&format!(" AND state = {}", p.add(state.as_str()))),
            (None, _) => {}
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
        // A row the batch locked for its refreshes, as they left it.
        if let Some(rec) = self
            .log
            .as_deref()
            .and_then(|l| l.locked.borrow().get(id.get()))
        {
            return Ok(Some(rec));
        }
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
        super::super::super::sql::revocation_page(
            after,
            rows.iter()
                .map(|r| Ok((u(get(r, 0)?), get::<String>(r, 1)?))),
        )
    }

    fn audit_head(&self) -> Result<u64, Error> {
        // Numbered events only: one written but not yet numbered gets a higher number.
        let r = self.query_opt("SELECT coalesce(max(seq), 0) FROM audit", &[])?;
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
                     (SELECT coalesce(max(seq), 0) FROM audit), \
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
