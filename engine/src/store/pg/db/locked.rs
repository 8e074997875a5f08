//! The registrations a batch of refreshes reads: locked in one statement before the jobs run
//! (in id order, so two writers locking overlapping batches cannot deadlock), served to the
//! jobs from memory, and their new generations written back in one statement, with the batch's
//! other rows when it commits, or before any other statement of the batch (which might read or
//! change them). A refresh then costs no statement of its own.

use std::collections::{BTreeSet, HashMap};

use super::{reg_row, sql_u64, Params, REG_COLUMNS};
use crate::error::Error;
use crate::model::RegistrationRecord;
use crate::store::pg::Conn;

/// The rows a batch holds locked, as its jobs left them.
#[derive(Default)]
pub(crate) struct LockedRows {
    rows: HashMap<u64, RegistrationRecord>,
    /// Rows a refresh changed, not yet written.
    dirty: BTreeSet<u64>,
}

impl LockedRows {
    /// Lock the registrations `ids` (a batch's refreshes) in one statement and hold them.
    pub(crate) fn lock(&mut self, conn: &mut Conn, ids: &mut Vec<i64>) -> Result<(), Error> {
        ids.sort_unstable();
        ids.dedup();
        if ids.is_empty() {
            return Ok(());
        }
        let rows = conn.query(
            &format!(
                "SELECT {REG_COLUMNS} FROM registrations WHERE id = ANY($1) ORDER BY id FOR UPDATE"
            ),
            &[&*ids],
        )?;
        for r in &rows {
            let rec = reg_row(r)?;
            self.rows.insert(rec.id.get(), rec);
        }
        Ok(())
    }

    /// A row this batch holds, as its jobs left it.
    pub(crate) fn get(&self, id: u64) -> Option<RegistrationRecord> {
        self.rows.get(&id).cloned()
    }

    /// A refresh of a held row: kept here and written with the batch. False if the row is not
    /// held (the caller writes it itself).
    pub(crate) fn refresh(&mut self, rec: &RegistrationRecord) -> bool {
        let id = rec.id.get();
        match self.rows.get_mut(&id) {
            Some(row) => {
                *row = rec.clone();
                self.dirty.insert(id);
                true
            }
            None => false,
        }
    }

    /// Whether nothing is held (so no statement needs to write anything first).
    pub(crate) fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The changed rows to write, and forget every row: the statement about to run may change
    /// them (later reads go to the database, where the rows stay locked).
    pub(super) fn take(&mut self) -> Updates {
        let mut u = Updates::default();
        for id in std::mem::take(&mut self.dirty) {
            if let Some(r) = self.rows.get(&id) {
                u.id.push(sql_u64(id));
                u.generation.push(i64::from(r.generation));
                u.key_epoch.push(i64::from(r.key_epoch));
                u.issued_at.push(sql_u64(r.issued_at));
                u.expires_at.push(sql_u64(r.expires_at));
            }
        }
        self.rows.clear();
        u
    }

    /// Write the changed rows now, and forget every row.
    pub(crate) fn flush(&mut self, conn: &mut Conn) -> Result<(), Error> {
        let updates = self.take();
        if updates.is_empty() {
            return Ok(());
        }
        let mut p = Params::default();
        let sql = updates.sql(&mut p);
        conn.execute(&sql, &p.refs())?;
        Ok(())
    }
}

/// Refreshed rows, as columns.
#[derive(Default)]
pub(super) struct Updates {
    id: Vec<i64>,
    generation: Vec<i64>,
    key_epoch: Vec<i64>,
    issued_at: Vec<i64>,
    expires_at: Vec<i64>,
}

impl Updates {
    pub(crate) fn is_empty(&self) -> bool {
        self.id.is_empty()
    }

    /// One `UPDATE … FROM unnest(…)` for every row (each id at most once), its parameters
    /// added to `p`.
    pub(super) fn sql(self, p: &mut Params) -> String {
        format!(
            "UPDATE registrations AS r SET generation = u.generation, key_epoch = u.key_epoch, \
             issued_at = u.issued_at, expires_at = u.expires_at \
             FROM unnest({}::bigint[], {}::bigint[], {}::bigint[], {}::bigint[], {}::bigint[]) \
             AS u(id, generation, key_epoch, issued_at, expires_at) WHERE r.id = u.id",
            p.add(self.id),
            p.add(self.generation),
            p.add(self.key_epoch),
            p.add(self.issued_at),
            p.add(self.expires_at),
        )
    }
}
