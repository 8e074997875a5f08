//! DEVICE_REVOKE's engine side: every active registration of a device id revoked in one
//! transaction, with no cap.

mod common;

use std::sync::mpsc;

use common::{open_engine_on, StoreKind};
use tessera_engine::model::{RegistrationRecord, RegistrationStatus};
use tessera_engine::store::{JobOutcome, RegistrationQuery, SqliteOptions, SqliteStore, Store};
use tessera_engine::{
    Actor, DeviceId, EngineConfig, OperationId, PtSpec, RegistrationId, Timestamp,
};

/// More than any page or cap the admin layer ever used (it once revoked at most 10,000).
const REGISTRATIONS: u64 = 20_000;

/// A device id that holds 20,000 active registrations (rows written straight through the
/// store's own write path, since approvals keep one active registration per device id) loses
/// all of them in one revocation, committed as one write job, and nothing else changes.
#[test]
fn revoking_a_device_revokes_every_registration_in_one_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let now = Timestamp::from_unix_secs(1_800_000_000);
    let engine =
        open_engine_on(StoreKind::Sqlite, dir.path(), EngineConfig::default(), now).unwrap();
    let (pt, _) = engine
        .create_pt(&PtSpec::new("line"), &Actor::operator("t"), now)
        .unwrap();
    drop(engine);

    let device: DeviceId = "shared-unit".parse().unwrap();
    let other: DeviceId = "other-unit".parse().unwrap();
    {
        let store = SqliteStore::open(dir.path(), &SqliteOptions::default()).unwrap();
        let (done, committed) = mpsc::channel();
        let (d, o, pt_id) = (device.clone(), other.clone(), pt.id);
        store.submit(Box::new(move |tx| {
            let ok = (0..=REGISTRATIONS).all(|i| {
                let mut op = [0u8; 16];
                op[..8].copy_from_slice(&i.to_be_bytes());
                tx.insert_registration(&RegistrationRecord {
                    id: RegistrationId::new(0),
                    device_id: if i == REGISTRATIONS {
                        o.clone()
                    } else {
                        d.clone()
                    },
                    pt_id,
                    operation_id: OperationId::from_bytes(op),
                    binding: i as u32,
                    status: RegistrationStatus::Active,
                    generation: 1,
                    key_epoch: 1,
                    issued_at: now.unix_secs(),
                    expires_at: now.unix_secs() + 86_400,
                    lifetime_secs: 86_400,
                    created_at: now,
                    revoked_at: None,
                    revoke_reason: None,
                })
                .is_ok()
            });
            JobOutcome {
                keep: ok,
                on_commit: Box::new(move |r| done.send(r.is_ok() && ok).unwrap()),
            }
        }));
        assert!(committed.recv().unwrap(), "seeding committed");
    }

    let engine =
        open_engine_on(StoreKind::Sqlite, dir.path(), EngineConfig::default(), now).unwrap();
    let active_of = |d: &DeviceId| {
        engine
            .list_registrations(&RegistrationQuery {
                device_id: Some(d.clone()),
                active_only: true,
                limit: 100,
                ..Default::default()
            })
            .unwrap()
            .len()
    };
    assert_eq!(active_of(&device), 100, "a full page of them is active");
    let jobs_before = engine.status().unwrap().commits.jobs;
    let n = engine
        .revoke_device(&device, "stolen batch", &Actor::operator("t"), now)
        .unwrap();
    assert_eq!(n as u64, REGISTRATIONS);
    assert_eq!(
        engine.status().unwrap().commits.jobs,
        jobs_before + 1,
        "one write job"
    );
    assert_eq!(active_of(&device), 0);
    assert_eq!(
        active_of(&other),
        1,
        "another device id keeps its registration"
    );
    assert_eq!(
        engine.status().unwrap().counts.active_registrations,
        1,
        "only the other device's registration is left"
    );
    // Once more: nothing left to revoke.
    assert_eq!(
        engine
            .revoke_device(&device, "again", &Actor::operator("t"), now)
            .unwrap(),
        0
    );
}
