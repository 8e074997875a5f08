//! The refresh journal's tests: folding, overlays, followers, upgrades.
use super::*;

fn db() -> Connection {
    let mut c = Connection::open_in_memory().expect("sqlite");
    crate::store::sqlite::schema::migrate(&mut c, std::path::Path::new(":memory:"))
        .expect("schema");
    c
}

/// A device's refresh event.
const BY_DEVICE: RefreshAudit<'static> = RefreshAudit {
    at: crate::time::Timestamp::from_unix_millis(1),
    actor: DEVICE_ACTOR,
    source: None,
};

fn state(generation: u32) -> RefreshState {
    RefreshState {
        generation,
        key_epoch: 1,
        issued_at: 10 * u64::from(generation),
        expires_at: 10 * u64::from(generation) + 100,
    }
}

#[test]
fn a_rolled_back_job_leaves_the_batch_as_it_was() {
    let c = db();
    let mut b = BatchJournal::default();
    b.begin_job();
    b.append(&c, 7, state(2), BY_DEVICE).unwrap();
    b.begin_job();
    b.append(&c, 7, state(3), BY_DEVICE).unwrap();
    b.append(&c, 8, state(2), BY_DEVICE).unwrap();
    b.rollback_job();
    assert_eq!(b.get(7), Some(state(2)));
    assert_eq!(b.get(8), None);
    assert_eq!(b.rows, 1);
}

/// Every sealed state in one batch.
const WHOLE: usize = usize::MAX;

/// Run one committed batch of refreshes `(registration, generation)` (sealing a fold first
/// after 2 committed rows, writing `slice` states of a fold in progress); whether it
/// completed a fold.
fn batch(
    c: &Connection,
    o: &Overlay,
    b: &mut BatchJournal,
    slice: usize,
    refreshes: &[(u64, u32)],
) -> bool {
    b.start(c, o, 2, slice).unwrap();
    let folded = b.completes_fold();
    for &(id, generation) in refreshes {
        b.append(c, id, state(generation), BY_DEVICE).unwrap();
    }
    b.committed();
    o.commit(b);
    folded
}

#[test]
fn folded_states_stay_visible_for_one_more_round_and_the_newest_wins() {
    let c = db();
    let o = Overlay::default();
    let mut b = BatchJournal::default();
    batch(&c, &o, &mut b, WHOLE, &[(1, 2), (2, 5)]);
    assert_eq!((o.get(1), o.get(2)), (Some(state(2)), Some(state(5))));

    // Two rows committed: the next batch folds them first.
    assert!(batch(&c, &o, &mut b, WHOLE, &[(1, 3)]));
    assert_eq!(b.committed_rows, 1);
    assert_eq!(o.get(1), Some(state(3)), "the batch's own state is newer");
    assert_eq!(o.get(2), Some(state(5)), "kept one round after the fold");
    let current: Vec<_> = o.maps.read().unwrap().current.clone().into_iter().collect();
    assert_eq!(
        current,
        [(1, state(3))],
        "only the batch's state is unfolded"
    );

    let rows: u32 = c
        .query_row("SELECT count(*) FROM refresh_journal", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 3, "the fold keeps the rows: they are audit events");
    assert_eq!(
        folded_upto(&c).unwrap(),
        2,
        "the watermark covers the folded rows"
    );
    let folded: u32 = c
        .query_row(
            "SELECT generation FROM registrations WHERE id = 2",
            [],
            |r| r.get(0),
        )
        .unwrap_or(0);
    assert_eq!(folded, 0, "no such row here: the fold touched nothing else");
}

#[test]
fn a_fold_in_slices_keeps_every_state_visible_and_moves_the_watermark_last() {
    let c = db();
    for id in 1..=3 {
        c.execute(
            "INSERT INTO registrations (id, device_id, pt_id, operation_id, active, \
             generation, key_epoch, issued_at, expires_at, lifetime, created_at) \
             VALUES (?1, 'd', x'00', x'00', 1, 1, 1, 10, 110, 100, 1)",
            [id],
        )
        .unwrap();
    }
    let rows = || -> Vec<u32> {
        let mut st = c
            .prepare("SELECT generation FROM registrations ORDER BY id")
            .unwrap();
        let v = st.query_map([], |r| r.get(0)).unwrap();
        v.map(Result::unwrap).collect()
    };
    let o = Overlay::default();
    let mut b = BatchJournal::default();
    let mut f = Follower::default();
    batch(&c, &o, &mut b, 1, &[(3, 2), (1, 2), (2, 2)]);

    // Sealed: rows 1 to 3. This batch writes one registration, in id order.
    assert!(!batch(&c, &o, &mut b, 1, &[(3, 3)]));
    assert_eq!(rows(), [2, 1, 1]);
    assert_eq!(
        folded_upto(&c).unwrap(),
        0,
        "the watermark waits for the last slice"
    );
    assert_eq!(
        [o.get(1), o.get(2), o.get(3)],
        [Some(state(2)), Some(state(2)), Some(state(3))]
    );
    f.catch_up(&c).unwrap();
    assert_eq!(
        f.get(2),
        Some(state(2)),
        "a follower still reads the sealed rows"
    );

    // A batch that fails after writing its slice changes nothing; the next one writes it.
    c.execute_batch("BEGIN").unwrap();
    b.start(&c, &o, 2, 1).unwrap();
    c.execute_batch("ROLLBACK").unwrap();
    b.clear();
    assert_eq!(rows(), [2, 1, 1]);
    assert!(!batch(&c, &o, &mut b, 1, &[]));
    assert_eq!(rows(), [2, 2, 1]);

    // The last slice moves the watermark to the end of what was sealed.
    assert!(batch(&c, &o, &mut b, 1, &[]));
    assert_eq!(
        rows(),
        [2, 2, 2],
        "the sealed state; the newer one is not folded yet"
    );
    assert_eq!(folded_upto(&c).unwrap(), 3);
    assert_eq!(o.get(3), Some(state(3)));
    assert_eq!(o.get(2), Some(state(2)), "kept one round after the fold");
    f.catch_up(&c).unwrap();
    assert_eq!(
        (f.get(2), f.get(3)),
        (None, Some(state(3))),
        "the follower starts again at the watermark"
    );
    assert!(
        b.fold.is_none() && b.committed_rows == 1,
        "row 4 waits for the next fold"
    );
}

#[test]
fn a_state_only_ever_raises_a_record() {
    use crate::model::{DeviceId, OperationId, PtId, RegistrationId, RegistrationStatus};
    let mut rec = RegistrationRecord {
        id: RegistrationId::new(1),
        device_id: DeviceId::new("d").unwrap(),
        pt_id: PtId::from_bytes([0; PtId::LEN]),
        operation_id: OperationId::from_bytes([0; 16]),
        binding: 7,
        status: RegistrationStatus::Active,
        generation: 5,
        key_epoch: 1,
        issued_at: 50,
        expires_at: 150,
        lifetime_secs: 100,
        created_at: crate::Timestamp::from_unix_secs(1),
        revoked_at: None,
        revoke_reason: None,
    };
    state(4).apply(&mut rec);
    assert_eq!(rec.generation, 5);
    state(6).apply(&mut rec);
    assert_eq!((rec.generation, rec.issued_at), (6, 60));
}

#[test]
fn a_follower_reads_only_what_is_new_and_starts_over_after_a_fold() {
    let c = db();
    let o = Overlay::default();
    let mut b = BatchJournal::default();
    let mut f = Follower::default();
    batch(&c, &o, &mut b, WHOLE, &[(1, 2), (1, 3)]);
    f.catch_up(&c).unwrap();
    assert_eq!(f.get(1), Some(state(3)));
    let seen = f.last_seq;
    f.catch_up(&c).unwrap();
    assert_eq!(f.last_seq, seen);
    batch(&c, &o, &mut b, WHOLE, &[(2, 2)]); // folds
    f.catch_up(&c).unwrap();
    assert_eq!(
        f.get(1),
        None,
        "folded into the row; the follower forgot it"
    );
    assert_eq!(f.get(2), Some(state(2)));
}

#[test]
fn a_follower_starts_at_the_watermark_not_at_the_first_row() {
    let c = db();
    let o = Overlay::default();
    let mut b = BatchJournal::default();
    batch(&c, &o, &mut b, WHOLE, &[(1, 2), (2, 2)]);
    batch(&c, &o, &mut b, WHOLE, &[(3, 2)]); // folds the first two rows
    let mut f = Follower::default();
    f.catch_up(&c).unwrap();
    assert_eq!(f.folded_upto, 2);
    assert_eq!(
        f.states.keys().copied().collect::<Vec<_>>(),
        [3],
        "only the unfolded row was read"
    );
    let mut c = c;
    fold_all(&mut c).unwrap();
    assert_eq!(folded_upto(&c).unwrap(), 3, "opening folds the rest");
    fold_all(&mut c).unwrap();
    assert_eq!(folded_upto(&c).unwrap(), 3, "and nothing twice");
}

/// An audit row: seq, at, actor, source, action, subject, detail.
type AuditRow = (i64, i64, String, Option<String>, String, String, String);

/// The audit rows, journal events included, in sequence order.
fn audit_rows(c: &Connection) -> Vec<AuditRow> {
    let sql = format!(
        "SELECT seq, at, actor, source, action, subject, detail FROM audit \
         UNION ALL {} ORDER BY seq",
        audit_from_journal()
    );
    let mut st = c.prepare(&sql).unwrap();
    let rows = st
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
            ))
        })
        .unwrap();
    rows.map(Result::unwrap).collect()
}

#[test]
fn refresh_audit_events_keep_their_place_in_the_audit_sequence_across_a_fold() {
    let c = db();
    let mut b = BatchJournal::open(&c).unwrap();
    let other = |b: &mut BatchJournal, what: &str| {
        c.execute(
            "INSERT INTO audit (seq, at, actor, source, action, subject, detail) \
             VALUES (?1, 1, 'admin', NULL, ?2, 'x', '{}')",
            rusqlite::params![b.next_seq(), what],
        )
        .unwrap();
    };
    other(&mut b, "before");
    let at = crate::time::Timestamp::from_unix_millis(5_000);
    let audit = RefreshAudit {
        at,
        actor: "device",
        source: Some("192.0.2.1"),
    };
    b.append(&c, 1, state(2), audit).unwrap();
    other(&mut b, "after");
    // A row from before the audit columns: its event is in `audit` already.
    c.execute(
        "INSERT INTO refresh_journal (seq, registration_id, generation, key_epoch, \
         issued_at, expires_at) VALUES (?1, 2, 2, 1, 20, 120)",
        [b.next_seq()],
    )
    .unwrap();

    // What the engine would have written as a row of its own.
    let detail = serde_json::json!({ "generation": 2, "expires_at": 120 }).to_string();
    let refresh = (
        2,
        5_000,
        DEVICE_ACTOR.to_owned(),
        Some("192.0.2.1".to_owned()),
        REFRESH_ACTION.to_owned(),
        "1".to_owned(),
        detail,
    );
    let before = audit_rows(&c);
    assert_eq!(before.len(), 3);
    assert_eq!((before[0].0, before[0].4.as_str()), (1, "before"));
    assert_eq!(before[1], refresh);
    assert_eq!((before[2].0, before[2].4.as_str()), (3, "after"));

    fold(&c, &[(1, state(2)), (2, state(2))], 4).unwrap();
    assert_eq!(
        audit_rows(&c),
        before,
        "the fold left every event in its place"
    );
    let copied: i64 = c
        .query_row(
            "SELECT count(*) FROM audit WHERE action = ?1",
            [REFRESH_ACTION],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(copied, 0, "and copied none of them");
    // Numbering continues after everything the store holds (the row without an event
    // is number 4).
    assert_eq!(BatchJournal::open(&c).unwrap().next_seq(), 5);
}

#[test]
fn journal_rows_from_before_the_audit_columns_fold_without_a_second_event() {
    let mut c = Connection::open_in_memory().unwrap();
    // A store at schema version 3, whose refreshes wrote their events to `audit` directly.
    for sql in &crate::store::sqlite::schema::MIGRATIONS[..3] {
        c.execute_batch(sql).unwrap();
    }
    c.pragma_update(None, "user_version", 3).unwrap();
    c.execute(
        "INSERT INTO refresh_journal (registration_id, generation, key_epoch, issued_at, \
         expires_at) VALUES (1, 2, 1, 20, 120)",
        [],
    )
    .unwrap();
    c.execute(
        "INSERT INTO audit (at, actor, action, subject, detail) \
         VALUES (1, 'device', 'registration.refresh', '1', '{}')",
        [],
    )
    .unwrap();
    crate::store::sqlite::schema::migrate(&mut c, std::path::Path::new(":memory:")).unwrap();
    assert_eq!(audit_rows(&c).len(), 1);
    fold_all(&mut c).unwrap();
    let rows = audit_rows(&c);
    assert_eq!(rows.len(), 1, "the event was already in audit: {rows:?}");
    assert_eq!(BatchJournal::open(&c).unwrap().next_seq(), 2);
}

#[test]
fn a_refresh_by_someone_other_than_a_device_keeps_its_actor() {
    let c = db();
    let mut b = BatchJournal::open(&c).unwrap();
    let at = crate::time::Timestamp::from_unix_millis(7_000);
    for actor in ["device", "tech-1"] {
        let audit = RefreshAudit {
            at,
            actor,
            source: None,
        };
        b.append(&c, 1, state(2), audit).unwrap();
    }
    let stored: Vec<Option<String>> = c
        .prepare("SELECT audit_actor FROM refresh_journal ORDER BY seq")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        stored,
        [None, Some("tech-1".to_owned())],
        "a device is not spelled out"
    );
    let actors =
        |c: &Connection| -> Vec<String> { audit_rows(c).into_iter().map(|r| r.2).collect() };
    assert_eq!(actors(&c), ["device", "tech-1"]);
    fold(&c, &[(1, state(2))], 2).unwrap();
    assert_eq!(actors(&c), ["device", "tech-1"]);
}
