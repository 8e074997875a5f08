//! The rules that close the holes of the security review, one test (or more) per rule, through
//! the engine's public API. docs/reliability.md ("Hardening rules") lists each rule with its
//! test.

mod common;

use std::time::Duration;

use common::{spec, Harness};
use tessera_engine::model::LeakKind;
use tessera_engine::store::RegistrationQuery;
use tessera_engine::{Approval, ApprovalPolicy, DeviceId, Error, OperationState, PtKind, PtSpec};

fn manual() -> PtSpec {
    spec(PtKind::SingleDevice, ApprovalPolicy::Manual)
}

fn fleet_automatic() -> PtSpec {
    spec(
        PtKind::Fleet {
            max_registrations: 100,
        },
        ApprovalPolicy::Automatic,
    )
}

fn collisions(h: &Harness) -> Vec<tessera_engine::model::LeakSignal> {
    h.engine
        .leak_signals(0, 100)
        .unwrap()
        .into_iter()
        .filter(|s| s.kind == LeakKind::DeviceIdCollision)
        .collect()
}

/// Rule: an operation that would replace an active registration of the same device id is never
/// approved automatically; it waits for a technician and raises `device_id_collision`.
#[test]
fn a_self_approving_pt_cannot_take_over_another_pts_device_id() {
    let h = Harness::new();
    let a = h.pt(manual());
    let op_a = h
        .begin(&a, Some("pump-17"), b"device-a-nonce-0001")
        .unwrap();
    h.approve_with_code(&op_a.operation_id, None).unwrap();
    let rt_a = h.collect(&op_a);

    let b = h.pt(fleet_automatic());
    let op_b = h
        .begin(&b, Some("pump-17"), b"attacker-nonce-0001")
        .unwrap();
    assert_eq!(op_b.state, OperationState::Pending, "held, not approved");
    // A's RT still works: nothing was replaced.
    h.engine
        .validate_rt(rt_a.rt.expose().as_bytes(), h.now())
        .unwrap();
    let signals = collisions(&h);
    assert_eq!(signals.len(), 1);
    assert_eq!(signals[0].action, "held_for_technician");
    assert_eq!(signals[0].operation_id, Some(op_b.operation_id.to_string()));
    assert_eq!(signals[0].registration_id, Some(rt_a.registration_id));
    // The technician sees what it would replace, and under which PT.
    let op = h.engine.operation(&op_b.operation_id).unwrap();
    assert_eq!(op.replaces.len(), 1);
    assert_eq!(op.replaces[0].registration_id, rt_a.registration_id);
    assert_eq!(
        op.replaces[0].pt_id,
        h.engine.verify_pt(a.expose(), h.now()).unwrap().id
    );

    // A plain approval is refused and changes nothing.
    assert_eq!(
        h.approve_with_code(&op_b.operation_id, None).unwrap_err(),
        Error::DeviceIdInUse
    );
    assert_eq!(
        h.engine.operation(&op_b.operation_id).unwrap().state,
        OperationState::Pending
    );
    h.engine
        .validate_rt(rt_a.rt.expose().as_bytes(), h.now())
        .unwrap();

    // An explicit reassignment moves the device id, and the audit log says so.
    let reg = h
        .engine
        .approve_operation(
            &op_b.operation_id,
            Approval {
                reassign: true,
                ..Approval::default()
            },
            &Harness::tech(),
            h.now(),
        )
        .unwrap();
    assert_eq!(reg.device_id.as_str(), "pump-17");
    assert_eq!(
        h.engine
            .validate_rt(rt_a.rt.expose().as_bytes(), h.now())
            .unwrap_err(),
        Error::Revoked
    );
    let approve = h
        .engine
        .audit(0, 1000)
        .unwrap()
        .into_iter()
        .find(|e| e.action == "operation.approve" && e.subject == op_b.operation_id.to_string())
        .expect("approval audited");
    assert_eq!(approve.detail["reassign"], true);
    assert_eq!(
        approve.detail["reassigned_from"][0]["registration_id"],
        rt_a.registration_id.get()
    );
}

/// Rule: the same holds within one PT: an automatic PT whose device provisions again while its
/// registration is active waits for a technician, who may approve without `reassign`.
#[test]
fn automatic_reprovisioning_of_an_active_device_id_waits_for_a_technician() {
    let h = Harness::new();
    let b = h.pt(fleet_automatic());
    let first = h.begin(&b, Some("gw-9"), b"first-boot-nonce-01").unwrap();
    assert_eq!(first.state, OperationState::Approved);
    let old = h.collect(&first);
    let second = h.begin(&b, Some("gw-9"), b"second-boot-nonce-1").unwrap();
    assert_eq!(second.state, OperationState::Pending);
    assert_eq!(collisions(&h).len(), 1);
    h.approve_with_code(&second.operation_id, None).unwrap();
    assert_eq!(
        h.engine
            .validate_rt(old.rt.expose().as_bytes(), h.now())
            .unwrap_err(),
        Error::Revoked
    );
    let active = h
        .engine
        .list_registrations(&RegistrationQuery {
            active_only: true,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(active.len(), 1);
}

/// Rule: a technician who names a device id that is registered under another PT must say
/// `reassign` too (the check is on the final device id, not only the requested one).
#[test]
fn a_technician_chosen_device_id_in_use_needs_reassign() {
    let h = Harness::new();
    h.provision("valve-3");
    let pt = h.pt(manual());
    let op = h.begin(&pt, None, b"some-device-nonce-1").unwrap();
    let named = Approval {
        device_id: Some(DeviceId::new("valve-3").unwrap()),
        ..Approval::default()
    };
    assert_eq!(
        h.engine
            .approve_operation(&op.operation_id, named.clone(), &Harness::tech(), h.now())
            .unwrap_err(),
        Error::DeviceIdInUse
    );
    h.engine
        .approve_operation(
            &op.operation_id,
            Approval {
                reassign: true,
                ..named
            },
            &Harness::tech(),
            h.now(),
        )
        .unwrap();
}

/// Rule: approval honours the PT's expiry and never raises the RT lifetime above the PT's.
#[test]
fn approval_respects_the_pts_expiry_and_lifetime() {
    let mut h = Harness::new();
    let at = h.now().saturating_add(Duration::from_secs(60));
    let pt = h.pt(PtSpec {
        expires_at: Some(at),
        ..manual()
    });
    let op = h
        .begin(&pt, Some("meter-1"), b"meter-one-nonce-01")
        .unwrap();
    let longer = Approval {
        rt_lifetime: Some(Duration::from_secs(7200)),
        ..Approval::default()
    };
    assert!(matches!(
        h.engine
            .approve_operation(&op.operation_id, longer, &Harness::tech(), h.now())
            .unwrap_err(),
        Error::InvalidInput(e) if e.field == "rt_lifetime"
    ));
    h.clock.advance(Duration::from_secs(60));
    assert_eq!(
        h.approve_with_code(&op.operation_id, None).unwrap_err(),
        Error::PtExpired
    );
    assert_eq!(
        h.engine.operation(&op.operation_id).unwrap().state,
        OperationState::Pending
    );
    let shorter = Approval {
        rt_lifetime: Some(Duration::from_secs(600)),
        ..Approval::default()
    };
    let h2 = Harness::new();
    let pt2 = h2.pt(manual());
    let op2 = h2.begin(&pt2, None, b"meter-two-nonce-01").unwrap();
    let reg = h2
        .engine
        .approve_operation(&op2.operation_id, shorter, &Harness::tech(), h2.now())
        .unwrap();
    assert_eq!(reg.lifetime_secs, 600);
}
