//! The engine's writes over PostgreSQL (inside a writer's batch transaction).

use super::*;

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
            "INSERT INTO operations (id, pt_id, state, created_at, expires_at, body, nonce_digest, \
             requested_device_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &[
                &&rec.id.to_bytes()[..],
                &&rec.pt_id.to_bytes()[..],
                &rec.state.as_str(),
                &sql_ts(rec.created_at),
                &sql_ts(rec.expires_at),
                &json(rec)?,
                &&rec.nonce_digest.0[..],
                &rec.requested_device_id.as_ref().map(|d| d.as_str()),
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
        // A row the batch locked for its refreshes is written with the batch.
        if self.log()?.locked.get_mut().refresh(rec) {
            self.wrote.set(true);
        } else {
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
        }
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

    fn delete_old(
        &mut self,
        class: RetentionClass,
        cursor: u64,
        cutoff: Timestamp,
        limit: usize,
    ) -> Result<RetentionStep, Error> {
        // Refreshes update their registration's row here: there is no journal.
        if class == RetentionClass::RefreshJournal {
            return Ok(RetentionStep {
                deleted: 0,
                cursor,
                done: true,
            });
        }
        let (table, key, at, ours) = retention_table(class);
        let (cursor, cutoff) = (sql_u64(cursor), sql_ts(cutoff));
        let rows = self.query(
            &format!(
                "SELECT {key}, {at}, {ours} FROM {table} \
                 WHERE {key} > $1 AND {key} < (SELECT max({key}) FROM {table}) \
                 ORDER BY {key} LIMIT $2"
            ),
            &[&cursor, &limit_or_default(limit)],
        )?;
        let (upto, done) = retention_scan(
            rows.iter()
                .map(|r| Ok((get(r, 0)?, get(r, 1)?, get(r, 2)?))),
            cutoff,
            limit,
        )?;
        let Some(upto) = upto else {
            return Ok(RetentionStep {
                deleted: 0,
                cursor: cursor as u64,
                done,
            });
        };
        // Another node deleting the same rows at once only makes this delete fewer.
        let deleted = self.execute(
            &format!(
                "DELETE FROM {table} WHERE {key} > $1 AND {key} <= $2 AND {ours} AND {at} < $3"
            ),
            &[&cursor, &upto, &cutoff],
        )? as usize;
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
