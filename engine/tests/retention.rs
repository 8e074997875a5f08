//! Retention: housekeeping deletes audit events, leak signals and refresh events older than
//! their configured age, and nothing else (on SQLite, and on PostgreSQL when the suite runs
//! against it).

mod common;

use std::time::Duration;

use common::Harness;
use tessera_engine::model::LeakKind;
use tessera_engine::store::NewLeakSignal;
use tessera_engine::{Actor, EngineConfig, PtSpec, RegistrationId, Retention, Timestamp};

const DAY: Duration = Duration::from_secs(86_400);

fn days(n: u64) -> Duration {
    DAY * n as u32
}

fn leak(at: Timestamp, detail: &str) -> NewLeakSignal {
    NewLeakSignal {
        at,
        kind: LeakKind::ManySources,
        pt_id: None,
        registration_id: None,
        operation_id: None,
        source: Some("192.0.2.7".into()),
        action: "flagged".into(),
        detail: detail.into(),
    }
}

/// Move the clock on by `by` and refresh `rt`; the successor RT.
fn refresh_after(h: &mut Harness, rt: &str, by: Duration) -> String {
    h.clock.advance(by);
    h.engine
        .refresh(rt, &Harness::device(), h.now())
        .unwrap()
        .rt
        .expose()
        .to_owned()
}

#[test]
fn housekeeping_deletes_what_is_old_and_nothing_else() {
    let mut config = EngineConfig::default();
    config.max_rt_lifetime(days(30)).retention(Retention {
        audit: Some(days(10)),
        leak_signals: Some(days(5)),
        refresh_events: Some(days(2)),
    });
    let mut h = Harness::with_config(config);
    let start = h.now();
    let day_of = |t: Timestamp| (t.unix_secs() - start.unix_secs()) / 86_400;

    // Day 0: two devices provisioned, the second revoked; a leak signal.
    let kept = h.provision("kept-unit");
    let gone = h.provision("gone-unit");
    h.engine
        .revoke_registration(gone.registration_id, "retired", &Harness::tech(), h.now())
        .unwrap();
    h.engine
        .raise_leak_signal(leak(h.now(), "first"), h.now())
        .unwrap();
    let before = h.engine.status().unwrap().counts;

    // Every day: the kept device refreshes, housekeeping runs. Day 6: a second leak signal.
    // Day 29: an operator makes a PT (an audit event newer than the revocation).
    let mut rt = kept.rt.expose().to_owned();
    for day in 1..=12 {
        rt = refresh_after(&mut h, &rt, DAY);
        if day == 6 {
            h.engine
                .raise_leak_signal(leak(h.now(), "second"), h.now())
                .unwrap();
        }
        h.engine.prune(h.now()).unwrap();
    }

    // Day 12. Refresh events: those of the last 2 days are left (days 10, 11 and 12).
    let events = h.engine.audit(0, 10_000).unwrap();
    let refreshed: Vec<u64> = events
        .iter()
        .filter(|e| e.action == "registration.refresh")
        .map(|e| day_of(e.at))
        .collect();
    assert_eq!(refreshed, [10, 11, 12], "{events:#?}");
    // Day 0's other events are past 10 days, but for the revocation: validators read
    // revocations from the log, so it stays while the revoked RT could be presented (30 days).
    let others: Vec<(&str, u64)> = events
        .iter()
        .filter(|e| e.action != "registration.refresh")
        .map(|e| (e.action.as_str(), day_of(e.at)))
        .collect();
    assert!(
        others
            .iter()
            .all(|(a, d)| *a == "registration.revoke" || *d >= 2),
        "{others:?}"
    );
    assert!(others.contains(&("registration.revoke", 0)), "{others:?}");
    let (revoked, _) = h.engine.revocations_after(0, 100).unwrap();
    assert_eq!(revoked, vec![gone.registration_id]);
    // Leak signals past 5 days go, but the newest of all is kept (numbering never goes back).
    let signals: Vec<String> = h
        .engine
        .leak_signals(0, 100)
        .unwrap()
        .into_iter()
        .map(|s| s.detail)
        .collect();
    assert_eq!(signals, ["second"]);
    // Nothing else: the same PTs and registrations, and the kept device still works.
    let after = h.engine.status().unwrap().counts;
    assert_eq!(after.pts, before.pts);
    assert_eq!(after.active_registrations, before.active_registrations);
    assert_eq!(
        h.engine
            .validate_rt(rt.as_bytes(), h.now())
            .unwrap()
            .claims
            .registration_id,
        kept.registration_id
    );

    // Past the longest RT lifetime the revocation event goes too.
    for day in 13..=32 {
        rt = refresh_after(&mut h, &rt, DAY);
        if day == 29 {
            h.engine
                .create_pt(&PtSpec::new("late"), &Actor::operator("ops"), h.now())
                .unwrap();
        }
        h.engine.prune(h.now()).unwrap();
    }
    let (revoked, _) = h.engine.revocations_after(0, 100).unwrap();
    assert_eq!(revoked, Vec::<RegistrationId>::new());
    let left: Vec<String> = h
        .engine
        .audit(0, 10_000)
        .unwrap()
        .into_iter()
        .filter(|e| e.action != "registration.refresh")
        .map(|e| e.action)
        .collect();
    assert_eq!(
        left,
        ["pt.create"],
        "only day 29's event is younger than 10 days"
    );

    // Reopened, the store numbers on after what it deleted.
    let last = h.engine.audit_newest(0, 1).unwrap()[0].seq;
    h.reopen();
    h.engine
        .create_pt(&PtSpec::new("after"), &Actor::operator("ops"), h.now())
        .unwrap();
    assert!(h.engine.audit_newest(0, 1).unwrap()[0].seq > last);
}

#[test]
fn without_retention_nothing_is_deleted() {
    let mut config = EngineConfig::default();
    config.retention(Retention::FOREVER);
    let h = Harness::with_config(config);
    let mut h = h;
    let p = h.provision("unit");
    h.engine
        .raise_leak_signal(leak(h.now(), "only"), h.now())
        .unwrap();
    let events = h.engine.audit(0, 10_000).unwrap().len();
    let mut rt = p.rt.expose().to_owned();
    for _ in 0..3 {
        rt = refresh_after(&mut h, &rt, days(20));
        h.engine.prune(h.now()).unwrap();
    }
    assert_eq!(h.engine.audit(0, 10_000).unwrap().len(), events + 3);
    assert_eq!(h.engine.leak_signals(0, 100).unwrap().len(), 1);
}
