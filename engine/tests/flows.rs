//! End-to-end flows through the engine API, with an injected clock.

mod common;

use std::time::Duration;

use common::{spec, Harness};
use tessera_engine::model::LeakKind;
use tessera_engine::store::OperationQuery;
use tessera_engine::{
    Actor, Approval, ApprovalPolicy, DeviceId, DeviceIdPolicy, EngineConfig, Error, LeakPolicy,
    LeakResponse, OperationState, OperationStatus, PtKind, PtSpec, Rate,
};

fn manual() -> PtSpec {
    spec(PtKind::SingleDevice, ApprovalPolicy::Manual)
}

#[test]
fn manual_approval_delivers_rt_only_to_the_secret_holder() {
    let h = Harness::new();
    let pt = h.pt(manual());
    let op = h.begin(&pt, Some("pump-1"), b"n1").unwrap();
    assert_eq!(op.state, OperationState::Pending);
    assert!(op.verification_code.is_none());
    assert!(matches!(
        h.engine
            .poll_operation(
                &op.operation_id,
                op.secret.expose(),
                &tessera_engine::Actor::device(None),
                h.now()
            )
            .unwrap(),
        OperationStatus::Pending { .. }
    ));
    let reg = h.approve_with_code(&op.operation_id, None).unwrap();
    assert_eq!(reg.device_id.as_str(), "pump-1");

    // Another operation's secret, or a forged one, gets nothing.
    let other = h.begin(&h.pt(manual()), None, b"n2").unwrap();
    assert_eq!(
        h.engine
            .poll_operation(
                &op.operation_id,
                other.secret.expose(),
                &tessera_engine::Actor::device(None),
                h.now()
            )
            .unwrap_err(),
        Error::Unauthenticated
    );
    assert_eq!(
        h.engine
            .poll_operation(
                &other.operation_id,
                op.secret.expose(),
                &tessera_engine::Actor::device(None),
                h.now()
            )
            .unwrap_err(),
        Error::Unauthenticated
    );
    let unknown = tessera_engine::OperationId::from_bytes([7; 16]);
    assert_eq!(
        h.engine
            .poll_operation(
                &unknown,
                op.secret.expose(),
                &tessera_engine::Actor::device(None),
                h.now()
            )
            .unwrap_err(),
        Error::Unauthenticated
    );
    assert!(matches!(
        h.engine
            .poll_operation(
                &op.operation_id,
                "tsos_garbage",
                &tessera_engine::Actor::device(None),
                h.now()
            )
            .unwrap_err(),
        Error::TokenFormat(_)
    ));

    let p = h.collect(&op);
    assert_eq!(p.registration_id, reg.id);
    assert_eq!(p.claims.generation, 1);
    // A lost response: collecting again returns the same RT.
    let again = h.collect(&op);
    assert_eq!(again.rt, p.rt);
    assert_eq!(
        h.engine.operation(&op.operation_id).unwrap().state,
        OperationState::Completed
    );
    let v = h
        .engine
        .validate_rt(p.rt.expose().as_bytes(), h.now())
        .unwrap();
    assert_eq!(v.claims.registration_id, reg.id);
    let i = h
        .engine
        .introspect(p.rt.expose().as_bytes(), h.now())
        .unwrap();
    assert_eq!(i.device_id.as_str(), "pump-1");

    // Once refreshed, the operation cannot hand out generation 1 again.
    h.engine
        .refresh(p.rt.expose(), &Harness::device(), h.now())
        .unwrap();
    assert_eq!(
        h.engine
            .poll_operation(
                &op.operation_id,
                op.secret.expose(),
                &tessera_engine::Actor::device(None),
                h.now()
            )
            .unwrap_err(),
        Error::OperationClosed(OperationState::Completed)
    );
}

#[test]
fn verification_code_is_checked_counted_and_limited() {
    let h = Harness::new();
    let pt = h.pt(spec(PtKind::SingleDevice, ApprovalPolicy::ManualWithCode));
    let op = h.begin(&pt, Some("valve-9"), b"n").unwrap();
    let code = op.verification_code.clone().expect("code shown");
    assert_eq!(code.expose().len(), 9);
    let approve = |c: Option<&str>| {
        h.engine.approve_operation(
            &op.operation_id,
            Approval {
                verification_code: c.map(str::to_owned),
                ..Approval::default()
            },
            &Harness::tech(),
            h.now(),
        )
    };
    assert_eq!(approve(None).unwrap_err(), Error::VerificationCodeRequired);
    let wrong = if code.expose() == "0000-0000" {
        "1111-1111"
    } else {
        "0000-0000"
    };
    assert_eq!(
        approve(Some(wrong)).unwrap_err(),
        Error::WrongVerificationCode { remaining: 4 }
    );
    assert_eq!(
        approve(Some("not a code")).unwrap_err(),
        Error::WrongVerificationCode { remaining: 3 }
    );
    // Typed in lower case with a space instead of the dash: still the right code.
    let typed = code.expose().to_lowercase().replace('-', " ");
    approve(Some(&typed)).unwrap();
    assert!(matches!(
        h.engine
            .poll_operation(
                &op.operation_id,
                op.secret.expose(),
                &tessera_engine::Actor::device(None),
                h.now()
            )
            .unwrap(),
        OperationStatus::Provisioned(_)
    ));

    // Guessing: the fifth wrong code rejects the operation and raises a leak signal.
    let op2 = h
        .begin(
            &h.pt(spec(PtKind::SingleDevice, ApprovalPolicy::ManualWithCode)),
            None,
            b"n",
        )
        .unwrap();
    let wrong2 = Harness::wrong_code(&op2);
    for remaining in (1..5).rev() {
        let e = h.approve_with_code(&op2.operation_id, Some(wrong2));
        assert_eq!(e.unwrap_err(), Error::WrongVerificationCode { remaining });
    }
    let e = h.approve_with_code(&op2.operation_id, Some(wrong2));
    assert_eq!(e.unwrap_err(), Error::VerificationAttemptsExhausted);
    assert_eq!(
        h.engine.operation(&op2.operation_id).unwrap().state,
        OperationState::Rejected
    );
    let leaks = h.engine.leak_signals(0, 0).unwrap();
    assert!(leaks.iter().any(|l| l.kind == LeakKind::CodeGuessing));
    // Even the right code no longer works.
    let right = op2.verification_code.unwrap().expose().to_owned();
    assert_eq!(
        h.approve_with_code(&op2.operation_id, Some(&right))
            .unwrap_err(),
        Error::OperationClosed(OperationState::Rejected)
    );
}

#[test]
fn code_guessing_can_revoke_the_pt() {
    let mut cfg = EngineConfig::default();
    cfg.max_code_attempts(1).leak_policy(LeakPolicy {
        code_guessing: LeakResponse::RevokePt,
        ..LeakPolicy::default()
    });
    let h = Harness::with_config(cfg);
    let pt = h.pt(spec(PtKind::SingleDevice, ApprovalPolicy::ManualWithCode));
    let op = h.begin(&pt, None, b"n").unwrap();
    let wrong = Harness::wrong_code(&op);
    let e = h.approve_with_code(&op.operation_id, Some(wrong));
    assert_eq!(e.unwrap_err(), Error::VerificationAttemptsExhausted);
    assert_eq!(h.begin(&pt, None, b"n2").unwrap_err(), Error::Revoked);
}

#[test]
fn automatic_and_attribute_rule_policies() {
    let h = Harness::new();
    let auto = h.pt(spec(
        PtKind::Fleet {
            max_registrations: 10,
        },
        ApprovalPolicy::Automatic,
    ));
    let op = h.begin(&auto, None, b"n").unwrap();
    assert_eq!(op.state, OperationState::Approved);
    let p = h.collect(&op);
    assert!(
        p.device_id.as_str().starts_with("dev-"),
        "generated id {}",
        p.device_id
    );

    let rule = ApprovalPolicy::AttributeRule("model=TX-7;serial^=SN26".parse().unwrap());
    let pt = h.pt(spec(
        PtKind::Fleet {
            max_registrations: 10,
        },
        rule,
    ));
    let mut attrs = std::collections::BTreeMap::new();
    attrs.insert("model".to_string(), "TX-7".to_string());
    attrs.insert("serial".to_string(), "SN26-0042".to_string());
    let begin = |attrs: std::collections::BTreeMap<String, String>, nonce: &[u8], dev: &str| {
        h.engine.begin_operation(
            tessera_engine::BeginRequest {
                pt: pt.clone(),
                requested_device_id: Some(DeviceId::new(dev).unwrap()),
                attributes: tessera_engine::Attributes::new(attrs).unwrap(),
                instance_nonce: common::instance_nonce(nonce),
            },
            &Harness::device(),
            h.now(),
        )
    };
    assert_eq!(
        begin(attrs.clone(), b"a", "tx-42").unwrap().state,
        OperationState::Approved
    );
    attrs.insert("serial".to_string(), "SN25-0001".to_string());
    assert_eq!(
        begin(attrs, b"b", "tx-43").unwrap().state,
        OperationState::Pending
    );

    // Automatic approval with technician-chosen ids is refused at creation.
    let bad = PtSpec {
        device_id_policy: DeviceIdPolicy::Technician,
        ..spec(PtKind::SingleDevice, ApprovalPolicy::Automatic)
    };
    assert!(matches!(
        h.engine.create_pt(&bad, &Harness::tech(), h.now()),
        Err(Error::InvalidInput(_))
    ));
}

#[test]
fn device_id_policies() {
    let h = Harness::new();
    let dev = h.pt(PtSpec {
        device_id_policy: DeviceIdPolicy::Device,
        ..manual()
    });
    assert!(matches!(
        h.begin(&dev, None, b"n"),
        Err(Error::InvalidInput(_))
    ));
    let op = h.begin(&dev, Some("chosen"), b"n").unwrap();
    let other = Approval {
        device_id: Some(DeviceId::new("other").unwrap()),
        ..Approval::default()
    };
    assert!(matches!(
        h.engine
            .approve_operation(&op.operation_id, other, &Harness::tech(), h.now()),
        Err(Error::InvalidInput(_))
    ));
    assert_eq!(
        h.approve_with_code(&op.operation_id, None)
            .unwrap()
            .device_id
            .as_str(),
        "chosen"
    );

    let tech = h.pt(PtSpec {
        device_id_policy: DeviceIdPolicy::Technician,
        ..manual()
    });
    let op = h.begin(&tech, Some("ignored"), b"n").unwrap();
    assert!(matches!(
        h.approve_with_code(&op.operation_id, None),
        Err(Error::InvalidInput(_))
    ));
    let named = Approval {
        device_id: Some(DeviceId::new("by-tech").unwrap()),
        ..Approval::default()
    };
    assert_eq!(
        h.engine
            .approve_operation(&op.operation_id, named, &Harness::tech(), h.now())
            .unwrap()
            .device_id
            .as_str(),
        "by-tech"
    );
}

#[test]
fn retries_resume_and_parallel_operations_conflict() {
    let h = Harness::new();
    let pt = h.pt(manual());
    let a = h.begin(&pt, Some("d"), b"instance-a").unwrap();
    let a2 = h.begin(&pt, Some("d"), b"instance-a").unwrap();
    assert!(a2.resumed);
    assert_eq!(a2.operation_id, a.operation_id);
    assert_eq!(a2.secret, a.secret);
    assert!(!h.engine.operation(&a.operation_id).unwrap().conflict);

    let b = h.begin(&pt, Some("d"), b"instance-b").unwrap();
    assert_ne!(b.operation_id, a.operation_id);
    assert!(h.engine.operation(&a.operation_id).unwrap().conflict);
    assert!(h.engine.operation(&b.operation_id).unwrap().conflict);
    let leaks = h.engine.leak_signals(0, 0).unwrap();
    assert_eq!(
        leaks
            .iter()
            .filter(|l| l.kind == LeakKind::ParallelOperations)
            .count(),
        1
    );

    h.approve_with_code(&b.operation_id, None).unwrap();
    assert_eq!(
        h.engine.operation(&a.operation_id).unwrap().state,
        OperationState::Cancelled
    );
    assert!(matches!(
        h.engine
            .poll_operation(
                &a.operation_id,
                a.secret.expose(),
                &tessera_engine::Actor::device(None),
                h.now()
            )
            .unwrap(),
        OperationStatus::Cancelled { .. }
    ));
}

#[test]
fn pending_cap_and_rate_limits_change_nothing() {
    let mut cfg = EngineConfig::default();
    cfg.max_pending(2, 2)
        .pt_rates(Rate::new(3, 6), Rate::new(3, 6));
    let mut h = Harness::with_config(cfg);
    let pt = h.pt(manual());
    h.begin(&pt, None, b"1").unwrap();
    h.begin(&pt, None, b"2").unwrap();
    let before = h
        .engine
        .list_operations(&OperationQuery::default())
        .unwrap()
        .len();
    assert_eq!(
        h.begin(&pt, None, b"3").unwrap_err(),
        Error::TooManyPendingOperations
    );
    assert_eq!(
        h.engine
            .list_operations(&OperationQuery::default())
            .unwrap()
            .len(),
        before
    );
    // The rate limit: 3 at once, then 1 every 10 s.
    let e = h.begin(&pt, None, b"4").unwrap_err();
    assert_eq!(
        e,
        Error::RateLimited {
            retry_after: Duration::from_secs(10)
        }
    );
    h.clock.advance(Duration::from_secs(10));
    assert_eq!(
        h.begin(&pt, None, b"5").unwrap_err(),
        Error::TooManyPendingOperations
    );

    // Per source address.
    let mut cfg = EngineConfig::default();
    cfg.source_rate(Rate::new(1, 1));
    let h = Harness::with_config(cfg);
    let pt = h.pt(spec(
        PtKind::Fleet {
            max_registrations: 5,
        },
        ApprovalPolicy::Manual,
    ));
    h.begin(&pt, None, b"1").unwrap();
    assert!(matches!(
        h.begin(&pt, None, b"2"),
        Err(Error::RateLimited { .. })
    ));
}

#[test]
fn fleet_cap_is_enforced() {
    let h = Harness::new();
    let pt = h.pt(spec(
        PtKind::Fleet {
            max_registrations: 2,
        },
        ApprovalPolicy::Automatic,
    ));
    h.begin(&pt, Some("a"), b"1").unwrap();
    h.begin(&pt, Some("b"), b"2").unwrap();
    assert_eq!(
        h.begin(&pt, Some("c"), b"3").unwrap_err(),
        Error::RegistrationCapReached
    );
}

#[test]
fn operations_expire() {
    let mut h = Harness::new();
    let pt = h.pt(manual());
    let op = h.begin(&pt, None, b"n").unwrap();
    h.clock.advance(Duration::from_secs(15 * 60));
    assert!(matches!(
        h.engine
            .poll_operation(
                &op.operation_id,
                op.secret.expose(),
                &tessera_engine::Actor::device(None),
                h.now()
            )
            .unwrap(),
        OperationStatus::Expired
    ));
    assert_eq!(
        h.approve_with_code(&op.operation_id, None).unwrap_err(),
        Error::OperationClosed(OperationState::Expired)
    );
    assert_eq!(h.engine.expire_operations(h.now()).unwrap(), 1);
    assert_eq!(
        h.engine.operation(&op.operation_id).unwrap().state,
        OperationState::Expired
    );
    assert_eq!(h.engine.expire_operations(h.now()).unwrap(), 0);
    // Expired operations no longer count against the pending cap or as siblings.
    let op2 = h.begin(&pt, None, b"other").unwrap();
    assert!(!h.engine.operation(&op2.operation_id).unwrap().conflict);
}

#[test]
fn refresh_rotation_grace_and_reuse() {
    let mut h = Harness::new();
    let p = h.provision("meter-7");
    let dev = Harness::device();
    h.clock.advance(Duration::from_secs(60));
    let g2 = h.engine.refresh(p.rt.expose(), &dev, h.now()).unwrap();
    assert_eq!(g2.claims.generation, 2);
    assert!(!g2.retried);
    // The old generation stops validating once the device has moved on.
    assert_eq!(
        h.engine
            .validate_rt(p.rt.expose().as_bytes(), h.now())
            .unwrap_err(),
        Error::Superseded
    );
    h.engine
        .validate_rt(g2.rt.expose().as_bytes(), h.now())
        .unwrap();

    // Lost response: the retry inside the grace window gets the same successor.
    h.clock.advance(Duration::from_secs(100));
    let again = h.engine.refresh(p.rt.expose(), &dev, h.now()).unwrap();
    assert!(again.retried);
    assert_eq!(again.rt, g2.rt);

    // Moving on normally.
    let g3 = h.engine.refresh(g2.rt.expose(), &dev, h.now()).unwrap();
    assert_eq!(g3.claims.generation, 3);
    // Presenting generation 1 now is reuse: the family is revoked.
    assert_eq!(
        h.engine.refresh(p.rt.expose(), &dev, h.now()).unwrap_err(),
        Error::RotationReuse
    );
    assert_eq!(
        h.engine
            .validate_rt(g3.rt.expose().as_bytes(), h.now())
            .unwrap_err(),
        Error::Revoked
    );
    assert_eq!(
        h.engine.refresh(g3.rt.expose(), &dev, h.now()).unwrap_err(),
        Error::Revoked
    );
    let leaks = h.engine.leak_signals(0, 0).unwrap();
    assert!(
        leaks
            .iter()
            .any(|l| l.kind == LeakKind::RotationReuse
                && l.registration_id == Some(p.registration_id))
    );
    assert!(leaks.iter().any(|l| l.kind == LeakKind::RevokedTokenUse));
}

#[test]
fn previous_generation_after_grace_is_reuse() {
    let mut h = Harness::new();
    let p = h.provision("meter-8");
    let g2 = h
        .engine
        .refresh(p.rt.expose(), &Harness::device(), h.now())
        .unwrap();
    h.clock.advance(Duration::from_secs(301));
    assert_eq!(
        h.engine
            .refresh(p.rt.expose(), &Harness::device(), h.now())
            .unwrap_err(),
        Error::RotationReuse
    );
    assert_eq!(
        h.engine
            .validate_rt(g2.rt.expose().as_bytes(), h.now())
            .unwrap_err(),
        Error::Revoked
    );
}

#[test]
fn rts_expire_with_bounded_leeway() {
    let mut h = Harness::new();
    let p = h.provision("x");
    let life = p.claims.expires_at - p.claims.issued_at;
    assert_eq!(life, 3600 * 24 * 30);
    h.clock.advance(Duration::from_secs(life + 59));
    h.engine
        .validate_rt(p.rt.expose().as_bytes(), h.now())
        .unwrap();
    h.clock.advance(Duration::from_secs(1));
    assert_eq!(
        h.engine
            .validate_rt(p.rt.expose().as_bytes(), h.now())
            .unwrap_err(),
        Error::Expired
    );
    assert_eq!(
        h.engine
            .refresh(p.rt.expose(), &Harness::device(), h.now())
            .unwrap_err(),
        Error::Expired
    );
    // Pruning drops the family; the RT stays expired (the MAC is checked first).
    assert_eq!(h.engine.prune(h.now()).unwrap().families, 0);
    h.clock.advance(Duration::from_secs(61));
    assert_eq!(h.engine.prune(h.now()).unwrap().families, 1);
    assert_eq!(
        h.engine
            .validate_rt(p.rt.expose().as_bytes(), h.now())
            .unwrap_err(),
        Error::Expired
    );
}

#[test]
fn revoking_a_pt_cascades() {
    let h = Harness::new();
    let pt_text = h.pt(spec(
        PtKind::Fleet {
            max_registrations: 10,
        },
        ApprovalPolicy::Automatic,
    ));
    let pt_id = h.engine.verify_pt(pt_text.expose(), h.now()).unwrap().id;
    let a = h.collect(&h.begin(&pt_text, Some("a"), b"1").unwrap());
    let b = h.collect(&h.begin(&pt_text, Some("b"), b"2").unwrap());
    let other = h.provision("c");
    assert_eq!(
        h.engine
            .revoke_pt(&pt_id, "firmware dump leaked", &Harness::tech(), h.now())
            .unwrap(),
        2
    );
    for p in [&a, &b] {
        assert_eq!(
            h.engine
                .validate_rt(p.rt.expose().as_bytes(), h.now())
                .unwrap_err(),
            Error::Revoked
        );
    }
    h.engine
        .validate_rt(other.rt.expose().as_bytes(), h.now())
        .unwrap();
    assert_eq!(
        h.begin(&pt_text, Some("d"), b"3").unwrap_err(),
        Error::Revoked
    );
    assert_eq!(
        h.engine.verify_pt(pt_text.expose(), h.now()).unwrap_err(),
        Error::Revoked
    );
    assert!(h
        .engine
        .leak_signals(0, 0)
        .unwrap()
        .iter()
        .any(|l| l.kind == LeakKind::RevokedTokenUse));
    // Irreversible and idempotent.
    assert_eq!(
        h.engine
            .revoke_pt(&pt_id, "again", &Harness::tech(), h.now())
            .unwrap(),
        0
    );
}

#[test]
fn blocking_a_device_revokes_and_refuses() {
    let h = Harness::new();
    let p = h.provision("stolen-1");
    let d = DeviceId::new("stolen-1").unwrap();
    assert_eq!(
        h.engine
            .block_device(&d, "stolen", &Harness::tech(), h.now())
            .unwrap(),
        1
    );
    assert_eq!(
        h.engine
            .validate_rt(p.rt.expose().as_bytes(), h.now())
            .unwrap_err(),
        Error::Revoked
    );
    let pt = h.pt(manual());
    assert_eq!(
        h.begin(&pt, Some("stolen-1"), b"n").unwrap_err(),
        Error::DeviceBlocked
    );
    // A technician cannot give the blocked id to another operation either.
    let op = h.begin(&pt, None, b"m").unwrap();
    let named = Approval {
        device_id: Some(d.clone()),
        ..Approval::default()
    };
    assert_eq!(
        h.engine
            .approve_operation(&op.operation_id, named, &Harness::tech(), h.now())
            .unwrap_err(),
        Error::DeviceBlocked
    );
    assert!(h
        .engine
        .unblock_device(&d, &Harness::tech(), h.now())
        .unwrap());
    assert!(!h
        .engine
        .unblock_device(&d, &Harness::tech(), h.now())
        .unwrap());
    assert_eq!(h.engine.list_blocked().unwrap().len(), 0);
}

#[test]
fn reprovisioning_supersedes_the_old_registration() {
    let h = Harness::new();
    let pt = h.pt(manual());
    let first = h.begin(&pt, Some("gw-1"), b"boot-1").unwrap();
    h.approve_with_code(&first.operation_id, None).unwrap();
    let old = h.collect(&first);
    // The device lost its storage and provisions again; a technician re-decides.
    let second = h.begin(&pt, Some("gw-1"), b"boot-2").unwrap();
    h.approve_with_code(&second.operation_id, None).unwrap();
    let new = h.collect(&second);
    assert_eq!(
        h.engine
            .validate_rt(old.rt.expose().as_bytes(), h.now())
            .unwrap_err(),
        Error::Revoked
    );
    h.engine
        .validate_rt(new.rt.expose().as_bytes(), h.now())
        .unwrap();
    assert_eq!(h.active_registrations(), 1);
}

#[test]
fn revoke_registration_is_immediate_and_final() {
    let h = Harness::new();
    let p = h.provision("r");
    h.engine
        .revoke_registration(p.registration_id, "lost", &Harness::tech(), h.now())
        .unwrap();
    assert_eq!(
        h.engine
            .validate_rt(p.rt.expose().as_bytes(), h.now())
            .unwrap_err(),
        Error::Revoked
    );
    assert_eq!(
        h.engine
            .refresh(p.rt.expose(), &Harness::device(), h.now())
            .unwrap_err(),
        Error::Revoked
    );
    assert_eq!(
        h.engine
            .revoke_registration(
                tessera_engine::RegistrationId::new(999),
                "x",
                &Harness::tech(),
                h.now()
            )
            .unwrap_err(),
        Error::NotFound("registration")
    );
}

#[test]
fn unknown_pt_and_wrong_secret_fail_alike() {
    let h = Harness::new();
    let real = h.pt(manual());
    // A well-formed PT for a real id with another secret: build it by re-encoding.
    let other_engine = Harness::new();
    let foreign = other_engine.pt(manual());
    assert_eq!(
        h.engine.verify_pt(foreign.expose(), h.now()).unwrap_err(),
        Error::Unauthenticated
    );
    assert_eq!(
        h.begin(&foreign, None, b"n").unwrap_err(),
        Error::Unauthenticated
    );
    h.engine.verify_pt(real.expose(), h.now()).unwrap();
    // Nothing was written by the refused attempt.
    assert!(h
        .engine
        .list_operations(&OperationQuery::default())
        .unwrap()
        .is_empty());
}

#[test]
fn pt_expiry() {
    let mut h = Harness::new();
    let at = h.now().saturating_add(Duration::from_secs(10));
    let pt = h.pt(PtSpec {
        expires_at: Some(at),
        ..manual()
    });
    h.engine.verify_pt(pt.expose(), h.now()).unwrap();
    h.clock.advance(Duration::from_secs(10));
    assert_eq!(h.begin(&pt, None, b"n").unwrap_err(), Error::Expired);
}

#[test]
fn key_rotation_keeps_old_rts_until_they_expire_and_retirement_kills_them() {
    let mut h = Harness::new();
    let old = h.provision("k1");
    assert_eq!(old.claims.key_id, 1);
    assert_eq!(h.engine.rotate_keys(&Harness::tech(), h.now()).unwrap(), 2);
    h.engine
        .validate_rt(old.rt.expose().as_bytes(), h.now())
        .unwrap();
    let new = h.provision("k2");
    assert_eq!(new.claims.key_id, 2);
    // PTs made before the rotation keep working.
    let epochs = h.engine.key_epochs().unwrap();
    assert_eq!(epochs.len(), 2);
    assert!(epochs[1].current && epochs[0].rt_key_loaded);
    let keep_until = epochs[0].record.rt_keep_until.unwrap();
    // Refreshing an old-epoch RT moves it to the new epoch.
    let moved = h
        .engine
        .refresh(old.rt.expose(), &Harness::device(), h.now())
        .unwrap();
    assert_eq!(moved.claims.key_id, 2);

    // Survives a restart.
    h.reopen();
    h.engine
        .validate_rt(moved.rt.expose().as_bytes(), h.now())
        .unwrap();
    let stale = h.provision("k3");
    h.engine.rotate_keys(&Harness::tech(), h.now()).unwrap();
    h.engine
        .validate_rt(stale.rt.expose().as_bytes(), h.now())
        .unwrap();
    h.engine
        .retire_key_epoch(2, &Harness::tech(), h.now())
        .unwrap();
    assert_eq!(
        h.engine
            .validate_rt(stale.rt.expose().as_bytes(), h.now())
            .unwrap_err(),
        Error::Unauthenticated
    );
    assert!(matches!(
        h.engine.retire_key_epoch(3, &Harness::tech(), h.now()),
        Err(Error::InvalidInput(_))
    ));
    h.reopen();
    assert_eq!(
        h.engine
            .validate_rt(stale.rt.expose().as_bytes(), h.now())
            .unwrap_err(),
        Error::Unauthenticated
    );

    // Epoch 1's RT key is dropped once its keep-until has passed.
    h.clock.0 = keep_until;
    let report = h.engine.prune(h.now()).unwrap();
    assert_eq!(report.rt_keys_dropped, 1);
    assert!(!h.engine.key_epochs().unwrap()[0].rt_key_loaded);
    let audit = h.engine.audit(0, 1000).unwrap();
    assert!(audit.iter().any(|e| e.action == "keys.rotate"));
    assert!(audit.iter().any(|e| e.action == "keys.retire"));
}

#[test]
fn a_different_root_is_refused() {
    let h = Harness::new();
    drop(h.provision("a"));
    // On either store (with PostgreSQL: a node joining a database made with another root).
    let other = tessera_engine::SoftwareKeeper::from_bytes([42; 32]);
    let e = match common::postgres_url(h.dir.path()) {
        Some(url) => {
            let store = tessera_engine::store::PostgresStore::open(&url, &Default::default());
            tessera_engine::Engine::open(store.unwrap(), other, EngineConfig::default(), h.now())
        }
        None => {
            let store = tessera_engine::store::SqliteStore::open(h.dir.path(), &Default::default());
            tessera_engine::Engine::open(store.unwrap(), other, EngineConfig::default(), h.now())
        }
    }
    .unwrap_err();
    assert!(matches!(e, Error::Keys(m) if m.contains("does not match")));
}

#[test]
fn every_state_change_is_audited_without_secrets() {
    let h = Harness::new();
    let pt = h.pt(spec(PtKind::SingleDevice, ApprovalPolicy::ManualWithCode));
    let op = h.begin(&pt, Some("aud-1"), b"n").unwrap();
    let code = op.verification_code.clone().unwrap();
    h.approve_with_code(&op.operation_id, Some(code.expose()))
        .unwrap();
    let p = h.collect(&op);
    let r = h
        .engine
        .refresh(p.rt.expose(), &Harness::device(), h.now())
        .unwrap();
    h.engine
        .revoke_registration(p.registration_id, "test", &Harness::tech(), h.now())
        .unwrap();
    let audit = h.engine.audit(0, 1000).unwrap();
    let actions: Vec<&str> = audit.iter().map(|e| e.action.as_str()).collect();
    for want in [
        "keys.init",
        "pt.create",
        "operation.begin",
        "operation.approve",
        "operation.collect",
        "registration.refresh",
        "registration.revoke",
    ] {
        assert!(actions.contains(&want), "missing {want} in {actions:?}");
    }
    assert!(audit.windows(2).all(|w| w[1].seq == w[0].seq + 1));
    // The end of the log, as `tail` shows a file's: the newest events, oldest first, with the
    // refresh event (a journal row) merged in by sequence.
    let n = audit.len();
    let tail = h.engine.audit_newest(0, 3).unwrap();
    assert_eq!(tail, audit[n - 3..]);
    assert_eq!(
        tail.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(),
        [
            "operation.collect",
            "registration.refresh",
            "registration.revoke"
        ]
    );
    assert_eq!(h.engine.audit_newest(0, 0).unwrap(), audit);
    assert_eq!(
        h.engine.audit_newest(audit[n - 2].seq, 1000).unwrap(),
        audit[n - 1..]
    );
    let dump = format!("{audit:?}{:?}", h.engine.leak_signals(0, 0).unwrap());
    let code_plain = code.expose().replace('-', "");
    for secret in [
        pt.expose(),
        op.secret.expose(),
        p.rt.expose(),
        r.rt.expose(),
        code.expose(),
        &code_plain,
    ] {
        assert!(!dump.contains(secret), "secret found in audit");
    }
    // Debug output of secret-holding values is redacted.
    let dbg = format!("{pt:?}{op:?}{p:?}{r:?}{:?}", h.engine);
    for secret in [
        pt.expose(),
        op.secret.expose(),
        p.rt.expose(),
        r.rt.expose(),
        code.expose(),
    ] {
        assert!(!dbg.contains(secret), "secret found in Debug output");
    }
    assert!(dbg.contains("<redacted>"));
}

#[test]
fn observer_hears_about_durable_changes() {
    use std::sync::{Arc, Mutex};
    #[derive(Default)]
    struct Seen(Mutex<Vec<String>>);
    impl tessera_engine::EngineObserver for Seen {
        fn operation_changed(&self, id: tessera_engine::OperationId, st: OperationState) {
            self.0.lock().unwrap().push(format!("{id} {st}"));
        }
        fn registration_revoked(&self, id: tessera_engine::RegistrationId) {
            self.0.lock().unwrap().push(format!("revoked {id}"));
        }
    }
    let h = Harness::new();
    let seen = Arc::new(Seen::default());
    h.engine.set_observer(seen.clone());
    let p = h.provision("obs");
    h.engine
        .revoke_registration(p.registration_id, "t", &Actor::operator("x"), h.now())
        .unwrap();
    let log = seen.0.lock().unwrap().clone();
    assert!(log.iter().any(|l| l.ends_with("approved")));
    assert!(log.iter().any(|l| l.ends_with("completed")));
    assert_eq!(
        log.last().unwrap(),
        &format!("revoked {}", p.registration_id)
    );
}

#[test]
fn bad_input_changes_nothing() {
    let h = Harness::new();
    let pt = h.pt(manual());
    let before = format!("{:?}", h.engine.status().unwrap().counts);
    assert!(matches!(
        h.begin_raw(&pt, None, b""),
        Err(Error::InvalidInput(_))
    ));
    assert!(matches!(
        h.begin_raw(&pt, None, &[0u8; 65]),
        Err(Error::InvalidInput(_))
    ));
    let long_label = PtSpec {
        label: "x".repeat(129),
        ..manual()
    };
    assert!(matches!(
        h.engine.create_pt(&long_label, &Harness::tech(), h.now()),
        Err(Error::InvalidInput(_))
    ));
    let short = PtSpec {
        rt_lifetime: Duration::from_secs(5),
        ..manual()
    };
    assert!(matches!(
        h.engine.create_pt(&short, &Harness::tech(), h.now()),
        Err(Error::InvalidInput(_))
    ));
    let long = PtSpec {
        rt_lifetime: Duration::from_secs(400 * 86_400),
        ..manual()
    };
    assert!(matches!(
        h.engine.create_pt(&long, &Harness::tech(), h.now()),
        Err(Error::InvalidInput(_))
    ));
    let zero = spec(
        PtKind::Fleet {
            max_registrations: 0,
        },
        ApprovalPolicy::Manual,
    );
    assert!(matches!(
        h.engine.create_pt(&zero, &Harness::tech(), h.now()),
        Err(Error::InvalidInput(_))
    ));
    assert!(matches!(
        h.engine.revoke_registration(
            tessera_engine::RegistrationId::new(1),
            "bad\nreason",
            &Harness::tech(),
            h.now()
        ),
        Err(Error::InvalidInput(_))
    ));
    for bad in ["", "tsrt_", "tspt_AAAA", "hello", "tsrt_\u{e9}\u{e9}"] {
        assert!(
            matches!(
                h.engine.validate_rt(bad.as_bytes(), h.now()),
                Err(Error::TokenFormat(_))
            ),
            "{bad}"
        );
        assert!(
            matches!(h.engine.verify_pt(bad, h.now()), Err(Error::TokenFormat(_))),
            "{bad}"
        );
    }
    assert!(matches!(
        h.engine.validate_rt(&[0xff, 0xfe, 0x00], h.now()),
        Err(Error::TokenFormat(_))
    ));
    let pt_as_rt = h
        .engine
        .validate_rt(pt.expose().as_bytes(), h.now())
        .unwrap_err();
    assert_eq!(
        pt_as_rt,
        Error::TokenFormat(tessera_engine::TokenFormatError::WrongPrefix)
    );
    assert_eq!(format!("{:?}", h.engine.status().unwrap().counts), before);
}

#[test]
fn every_truncation_and_bit_flip_of_live_tokens_is_rejected() {
    let h = Harness::new();
    let pt = h.pt(manual());
    let p = h.provision("flip");
    let rt = p.rt.expose().as_bytes();
    let ptb = pt.expose().as_bytes();
    for n in 0..rt.len() {
        assert!(h.engine.validate_rt(&rt[..n], h.now()).is_err());
    }
    for n in 0..ptb.len() {
        assert!(h.engine.verify_pt(&pt.expose()[..n], h.now()).is_err());
    }
    for i in 0..rt.len() {
        for bit in 0..8 {
            let mut t = rt.to_vec();
            t[i] ^= 1 << bit;
            assert!(
                h.engine.validate_rt(&t, h.now()).is_err(),
                "RT flip {i}/{bit}"
            );
        }
    }
    for i in 0..ptb.len() {
        for bit in 0..7 {
            let mut t = ptb.to_vec();
            t[i] ^= 1 << bit;
            let s = String::from_utf8(t).unwrap();
            assert!(
                h.engine.verify_pt(&s, h.now()).is_err(),
                "PT flip {i}/{bit}"
            );
        }
    }
    let bin = tessera_engine::token::UntrustedRt::parse(rt)
        .unwrap()
        .to_bytes();
    h.engine.validate_rt_bytes(&bin, h.now()).unwrap();
    for i in 0..bin.len() {
        for bit in 0..8 {
            let mut b = bin;
            b[i] ^= 1 << bit;
            assert!(h.engine.validate_rt_bytes(&b, h.now()).is_err());
        }
    }
}

#[test]
fn admin_tokens_verify_revoke_and_stay_secret() {
    let h = Harness::new();
    let (rec, tok) = h
        .engine
        .create_admin_token(
            "alice",
            tessera_engine::AdminRole::Technician,
            &Actor::system(),
            h.now(),
        )
        .unwrap();
    assert!(tok.expose().starts_with("tsat_"));
    let got = h.engine.verify_admin_token(tok.expose(), h.now()).unwrap();
    assert_eq!(got, rec);
    let other = Harness::new();
    let (_, foreign) = other
        .engine
        .create_admin_token(
            "mallory",
            tessera_engine::AdminRole::Admin,
            &Actor::system(),
            other.now(),
        )
        .unwrap();
    assert_eq!(
        h.engine
            .verify_admin_token(foreign.expose(), h.now())
            .unwrap_err(),
        Error::Unauthenticated
    );
    // A PT is not an admin token, even with a valid checksum.
    let pt = h.pt(manual());
    assert!(matches!(
        h.engine.verify_admin_token(pt.expose(), h.now()),
        Err(Error::TokenFormat(_))
    ));
    assert!(h
        .engine
        .revoke_admin_token(&rec.id, &Actor::system(), h.now())
        .unwrap());
    assert_eq!(
        h.engine
            .verify_admin_token(tok.expose(), h.now())
            .unwrap_err(),
        Error::Revoked
    );
    assert!(matches!(
        h.engine.create_admin_token(
            "",
            tessera_engine::AdminRole::Admin,
            &Actor::system(),
            h.now()
        ),
        Err(Error::InvalidInput(_))
    ));
    let dump = format!(
        "{:?}{:?}",
        h.engine.audit(0, 0).unwrap(),
        h.engine.list_admin_tokens().unwrap()
    );
    assert!(!dump.contains(tok.expose()));
}

#[test]
fn operation_pages_follow_the_state_operators_see() {
    let mut cfg = EngineConfig::default();
    cfg.operation_ttl(Duration::from_secs(600));
    let mut h = Harness::with_config(cfg);
    // Six operations a minute apart; the last one is rejected.
    let mut ops = Vec::new();
    for i in 0..6u8 {
        let pt = h.pt(manual());
        ops.push(h.begin(&pt, None, &[b'o', i]).unwrap().operation_id);
        h.clock.advance(Duration::from_secs(60));
    }
    h.engine
        .reject_operation(&ops[5], "not ours", &Harness::tech(), h.now())
        .unwrap();
    // Twelve minutes after the first: operations 0, 1 and 2 have expired (2 exactly now), but
    // no sweep has stored that.
    h.clock.0 = ops_start(&h, &ops[0]).saturating_add(Duration::from_secs(720));
    let page = |state, before| {
        let q = OperationQuery {
            state: Some(state),
            limit: 2,
            before,
            ..OperationQuery::default()
        };
        h.engine.operations_page(&q, h.now()).unwrap()
    };
    let ids =
        |p: &[tessera_engine::model::OperationRecord]| p.iter().map(|o| o.id).collect::<Vec<_>>();

    let (first, next) = page(OperationState::Expired, None);
    assert_eq!(ids(&first), [ops[2], ops[1]]);
    assert!(first.iter().all(|o| o.state == OperationState::Expired));
    let (second, next) = page(OperationState::Expired, next);
    assert_eq!(ids(&second), [ops[0]]);
    assert_eq!(next, None, "a short page is the last");

    let (pending, next) = page(OperationState::Pending, None);
    assert_eq!(ids(&pending), [ops[4], ops[3]]);
    assert!(pending.iter().all(|o| o.state == OperationState::Pending));
    let (rest, next) = page(OperationState::Pending, next);
    assert!(rest.is_empty() && next.is_none());

    let (rejected, _) = page(OperationState::Rejected, None);
    assert_eq!(ids(&rejected), [ops[5]]);
    // With no state asked for, every operation, each in the state operators see.
    let q = OperationQuery::default();
    let (all, next) = h.engine.operations_page(&q, h.now()).unwrap();
    assert_eq!(all.len(), 6);
    assert_eq!(next, None);
    let expired = all
        .iter()
        .filter(|o| o.state == OperationState::Expired)
        .count();
    assert_eq!(expired, 3);
}

fn ops_start(h: &Harness, id: &tessera_engine::OperationId) -> tessera_engine::Timestamp {
    h.engine.operation(id).unwrap().created_at
}
