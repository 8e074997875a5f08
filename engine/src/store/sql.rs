//! What the SQLite and PostgreSQL stores write alike: times as Unix milliseconds and unsigned
//! numbers in signed 64-bit columns, JSON for the policy columns, and the statements' shared
//! parts.

use crate::error::Error;
use crate::model::RegistrationId;
use crate::time::Timestamp;

/// A stored time.
pub(super) fn ts(v: i64) -> Timestamp {
    Timestamp::from_unix_millis(u64::try_from(v).unwrap_or(0))
}

/// A stored optional time.
pub(super) fn ts_opt(v: Option<i64>) -> Option<Timestamp> {
    v.map(ts)
}

/// A time as stored.
pub(super) fn sql_ts(t: Timestamp) -> i64 {
    i64::try_from(t.unix_millis()).unwrap_or(i64::MAX)
}

/// An unsigned number as stored.
pub(super) fn sql_u64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A value as the JSON text of its column.
pub(super) fn json<T: serde::Serialize>(v: &T) -> Result<String, Error> {
    serde_json::to_string(v).map_err(|e| Error::store(format!("encode: {e}")))
}

/// A list's `LIMIT`: 0 means 100.
pub(super) fn limit_or_default(n: usize) -> i64 {
    if n == 0 {
        100
    } else {
        i64::try_from(n).unwrap_or(i64::MAX)
    }
}

/// The PTs that exist: none of a batch still staged or abandoned.
pub(super) const PT_VISIBLE: &str =
    "(batch IS NULL OR batch NOT IN (SELECT id FROM pt_batches_staged))";

/// The columns of a PT row, in the order both stores read them.
pub(super) const PT_COLUMNS: &str = "id, verifier, label, kind, approval, rt_lifetime, \
                                     device_id_policy, expires_at, created_at, revoked_at, \
                                     registrations_created, batch";

/// REVOCATIONS' page from its rows (`seq`, `subject`: the audit events
/// `registration.revoke` after `after`, in order): the registrations and the next cursor.
pub(super) fn revocation_page(
    after: u64,
    rows: impl IntoIterator<Item = Result<(u64, String), Error>>,
) -> Result<(Vec<RegistrationId>, u64), Error> {
    let (mut ids, mut next) = (Vec::new(), after);
    for row in rows {
        let (seq, subject) = row?;
        let id = subject
            .parse::<u64>()
            .map_err(|_| Error::store(format!("audit event {seq} names no registration")))?;
        ids.push(RegistrationId::new(id));
        next = seq;
    }
    Ok((ids, next))
}

/// A retention class's table: its name, key column, time column and the condition a row of
/// the class meets.
pub(super) fn retention_table(
    class: super::RetentionClass,
) -> (&'static str, &'static str, &'static str, &'static str) {
    use super::RetentionClass::*;
    match class {
        Events => (
            "audit",
            "seq",
            "at",
            "action NOT IN ('registration.refresh', 'registration.revoke')",
        ),
        Revocations => ("audit", "seq", "at", "action = 'registration.revoke'"),
        RefreshEvents => ("audit", "seq", "at", "action = 'registration.refresh'"),
        RefreshJournal => (
            "refresh_journal",
            "seq",
            "coalesce(audit_at, issued_at)",
            "TRUE",
        ),
        LeakSignals => ("leak_signals", "id", "at", "TRUE"),
    }
}

/// Where a retention step stops, from the rows after its cursor in key order (key, time,
/// whether the row is of the class): the last key it may delete up to (every row of the class
/// up to it is older than `cutoff`), and whether it is done (it met a row of the class that is
/// not, or the rows ran out).
pub(super) fn retention_scan(
    rows: impl Iterator<Item = Result<(i64, i64, bool), Error>>,
    cutoff: i64,
    limit: usize,
) -> Result<(Option<i64>, bool), Error> {
    let (mut upto, mut n) = (None, 0);
    for row in rows {
        let (key, at, ours) = row?;
        n += 1;
        if ours && at >= cutoff {
            return Ok((upto, true));
        }
        upto = Some(key);
    }
    Ok((upto, n < limit))
}
