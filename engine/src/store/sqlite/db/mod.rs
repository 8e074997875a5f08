//! The SQLite data layer: one [`Db`] over a connection (the writer's, inside its batch, or a
//! reader's), with the row decoders both halves share. `read.rs` implements the engine's reads
//! (`StoreRead`), `write.rs` its writes (`StoreTxn`).

mod read;
mod write;

use rusqlite::{Connection, Row};

use super::super::sql::{limit_or_default, ts, ts_opt, PT_COLUMNS};
use super::journal::{BatchJournal, Follower, Overlay, RefreshState};
use crate::error::Error;
use crate::model::{
    AdminTokenId, AdminTokenRecord, BlockRecord, DeviceId, OperationId, OperationRecord, PtId,
    PtRecord, RegistrationId, RegistrationRecord, RegistrationStatus,
};

/// SQL over one connection: inside a write job, or a read transaction.
pub(super) struct Db<'c> {
    pub(super) conn: &'c Connection,
    pub(super) view: View<'c>,
}

/// Where a [`Db`] finds refresh states not yet folded into the registration rows.
pub(super) enum View<'c> {
    /// A read connection of this store: committed states.
    Reader(&'c Overlay),
    /// The writer: its batch's own states, then committed ones.
    Writer(&'c Overlay, &'c mut BatchJournal),
    /// A reader in another process, following the journal itself.
    Follower(&'c Follower),
}

impl Db<'_> {
    /// The writer's batch journal; writes happen only on the writer.
    fn writer_journal(&mut self) -> Result<&mut BatchJournal, Error> {
        match &mut self.view {
            View::Writer(_, batch) => Ok(batch),
            _ => Err(Error::store("write outside the store's writer".into())),
        }
    }

    fn overlay(&self, rec: &mut RegistrationRecord) {
        let id = rec.id.get();
        let s = match &self.view {
            View::Reader(o) => o.get(id),
            View::Writer(o, b) => b.get(id).or_else(|| o.get(id)),
            View::Follower(f) => f.get(id),
        };
        if let Some(s) = s {
            s.apply(rec);
        }
    }
}

fn from_json<T: serde::de::DeserializeOwned>(s: &str) -> rusqlite::Result<T> {
    serde_json::from_str(s).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

/// The sequence number of the newest audit event (0 for none), refresh events included.
pub(super) const LAST_AUDIT_SEQ: &str = "SELECT max(coalesce((SELECT max(seq) FROM audit), 0), \
     coalesce((SELECT max(seq) FROM refresh_journal WHERE audit_at IS NOT NULL), 0))";

fn conversion<E: std::error::Error + Send + Sync + 'static>(e: E) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
}

fn pt_row(r: &Row<'_>) -> rusqlite::Result<(PtRecord, [u8; 32])> {
    let id: [u8; PtId::LEN] = r.get(0)?;
    let verifier: [u8; 32] = r.get(1)?;
    let rec = PtRecord {
        id: PtId::from_bytes(id),
        label: r.get(2)?,
        kind: from_json(&r.get::<_, String>(3)?)?,
        approval: from_json(&r.get::<_, String>(4)?)?,
        rt_lifetime_secs: r.get::<_, i64>(5)? as u64,
        device_id_policy: from_json(&r.get::<_, String>(6)?)?,
        expires_at: ts_opt(r.get(7)?),
        created_at: ts(r.get(8)?),
        revoked_at: ts_opt(r.get(9)?),
        registrations_created: r.get::<_, i64>(10)? as u64,
        batch: r.get(11)?,
    };
    Ok((rec, verifier))
}

fn op_row(r: &Row<'_>) -> rusqlite::Result<OperationRecord> {
    let mut op: OperationRecord = from_json(&r.get::<_, String>(0)?)?;
    // Operations from before the digest have none: all zeros never matches a nonce's digest.
    if let Some(d) = r.get::<_, Option<[u8; 32]>>(1)? {
        op.nonce_digest = crate::model::NonceDigest(d);
    }
    Ok(op)
}

macro_rules! reg_columns {
    () => {
        "id, device_id, pt_id, operation_id, active, generation, key_epoch, issued_at, \
         expires_at, lifetime, created_at, revoked_at, revoke_reason, binding"
    };
}
const REG_COLUMNS: &str = reg_columns!();
/// One registration by id (a `'static` string: the writer runs it on every refresh).
const REG_BY_ID: &str = concat!(
    "SELECT ",
    reg_columns!(),
    " FROM registrations WHERE id = ?1"
);

fn reg_row(r: &Row<'_>) -> rusqlite::Result<RegistrationRecord> {
    let pt: [u8; PtId::LEN] = r.get(2)?;
    let op: [u8; 16] = r.get(3)?;
    Ok(RegistrationRecord {
        id: RegistrationId::new(r.get::<_, i64>(0)? as u64),
        device_id: DeviceId::new(r.get::<_, String>(1)?).map_err(conversion)?,
        pt_id: PtId::from_bytes(pt),
        operation_id: OperationId::from_bytes(op),
        status: if r.get::<_, i64>(4)? == 1 {
            RegistrationStatus::Active
        } else {
            RegistrationStatus::Revoked
        },
        generation: r.get(5)?,
        key_epoch: r.get(6)?,
        issued_at: r.get::<_, i64>(7)? as u64,
        expires_at: r.get::<_, i64>(8)? as u64,
        lifetime_secs: r.get::<_, i64>(9)? as u64,
        created_at: ts(r.get(10)?),
        revoked_at: ts_opt(r.get(11)?),
        revoke_reason: r.get(12)?,
        binding: r.get::<_, i64>(13)? as u32,
    })
}

fn admin_row(r: &Row<'_>) -> rusqlite::Result<(AdminTokenRecord, [u8; 32])> {
    let id: [u8; PtId::LEN] = r.get(0)?;
    let role: String = r.get(3)?;
    Ok((
        AdminTokenRecord {
            id: AdminTokenId::from_bytes(id),
            name: r.get(2)?,
            role: role.parse().map_err(conversion)?,
            created_at: ts(r.get(4)?),
            revoked_at: ts_opt(r.get(5)?),
        },
        r.get(1)?,
    ))
}

fn block_row(r: &Row<'_>) -> rusqlite::Result<BlockRecord> {
    Ok(BlockRecord {
        device_id: DeviceId::new(r.get::<_, String>(0)?).map_err(conversion)?,
        at: ts(r.get(1)?),
        by: r.get(2)?,
        reason: r.get(3)?,
    })
}
