//! The rules that close the holes of the security review, one test (or more) per rule, through
//! the engine's public API. docs/reliability.md ("Hardening rules") lists each rule with its
//! test.

mod common;

use std::time::Duration;

use common::{spec, Harness};
use tessera_engine::model::LeakKind;
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
    assert_eq!(h.active_registrations(), 1);
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

/// An output that hands each write to the test and blocks until the test lets it go on (or
/// fails it), like a client that stops reading, then goes away.
struct GatedOutput {
    written: std::sync::mpsc::Sender<Vec<u8>>,
    proceed: std::sync::mpsc::Receiver<bool>,
}

impl std::io::Write for GatedOutput {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = self.written.send(buf.to_vec());
        match self.proceed.recv() {
            Ok(true) => Ok(buf.len()),
            _ => Err(std::io::Error::other("client went away")),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Rule: no store job waits on a batch's reader, and a batch whose reader goes away commits
/// nothing.
#[test]
fn a_stalled_batch_reader_never_blocks_the_writer_and_a_vanished_one_commits_nothing() {
    let h = Harness::new();
    let device = h.provision("bystander");
    let pts_before = h.engine.status().unwrap().counts.pts;
    let (written_tx, written) = std::sync::mpsc::channel();
    let (proceed, proceed_rx) = std::sync::mpsc::channel();
    let out = GatedOutput {
        written: written_tx,
        proceed: proceed_rx,
    };
    let engine = h.engine.clone();
    let now = h.now();
    let batch = std::thread::spawn(move || {
        engine.create_pt_batch(
            &PtSpec::new("factory run"),
            3 * tessera_engine::BATCH_CHUNK,
            Box::new(out),
            &Harness::tech(),
            now,
        )
    });
    // The first chunk's lines reach the reader, who lets them through, then stalls on the
    // second chunk.
    let first = written.recv().unwrap();
    proceed.send(true).unwrap();
    let _second = written.recv().unwrap();
    // While the reader stalls, refreshes and revocations complete (with a generous deadline:
    // before, they waited for the reader for ever).
    let engine = h.engine.clone();
    let rt = device.rt.clone();
    let (done_tx, done) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let refreshed = engine.refresh(rt.expose(), &Harness::device(), now);
        let revoked = refreshed
            .as_ref()
            .map(|r| r.claims.registration_id)
            .map(|id| engine.revoke_registration(id, "stolen", &Harness::tech(), now));
        let _ = done_tx.send((refreshed.is_ok(), revoked.is_ok()));
    });
    assert_eq!(
        done.recv_timeout(Duration::from_secs(30))
            .expect("the writer was blocked by the batch's reader"),
        (true, true)
    );
    // The staged PTs do not exist yet.
    let line = String::from_utf8(first).unwrap();
    let token = line
        .lines()
        .next()
        .unwrap()
        .split('\t')
        .nth(1)
        .unwrap()
        .to_owned();
    assert_eq!(
        h.engine.verify_pt(&token, h.now()).unwrap_err(),
        Error::Unauthenticated
    );
    // The reader goes away: nothing of the batch is committed, and prune removes its rows.
    proceed.send(false).unwrap();
    assert!(batch.join().unwrap().is_err());
    assert_eq!(
        h.engine.verify_pt(&token, h.now()).unwrap_err(),
        Error::Unauthenticated
    );
    assert_eq!(h.engine.status().unwrap().counts.pts, pts_before);
    let pruned = h.engine.prune(h.now()).unwrap();
    assert_eq!(
        pruned.abandoned_pts_deleted as u64,
        tessera_engine::BATCH_CHUNK
    );
    assert!(!h
        .engine
        .audit(0, 1000)
        .unwrap()
        .iter()
        .any(|e| e.action == "pt.batch_create"));
}

/// Rule: a complete batch commits every PT at once.
#[test]
fn a_complete_batch_commits_every_pt() {
    let h = Harness::new();
    let out = tempfile::NamedTempFile::new().unwrap();
    let count = tessera_engine::BATCH_CHUNK + 5;
    let batch = h
        .engine
        .create_pt_batch(
            &PtSpec::new("factory run"),
            count,
            Box::new(out.reopen().unwrap()),
            &Harness::tech(),
            h.now(),
        )
        .unwrap();
    assert_eq!(batch.count, count);
    let text = std::fs::read_to_string(out.path()).unwrap();
    let tokens: Vec<&str> = text
        .lines()
        .map(|l| l.split('\t').nth(1).unwrap())
        .collect();
    assert_eq!(tokens.len() as u64, count);
    for t in [tokens[0], tokens[tokens.len() - 1]] {
        assert_eq!(
            h.engine.verify_pt(t, h.now()).unwrap().batch.as_deref(),
            Some(batch.batch_id.as_str())
        );
    }
    assert_eq!(h.engine.status().unwrap().counts.pts, count);
}

/// Rule: every RT is bound to its registration, so after a restore hands a registration id out
/// again, an RT of the registration the restore lost never validates as the new one.
#[test]
fn an_rt_lost_in_a_restore_never_validates_as_the_registration_that_reuses_its_id() {
    use tessera_engine::store::backup;
    let h = Harness::sqlite();
    let kept = h.provision("kept-1");
    let to = tempfile::tempdir().unwrap();
    backup(
        h.dir.path(),
        &to.path().join(tessera_engine::store::DATABASE_FILE),
    )
    .unwrap();
    let lost = h.provision("lost-2");

    let root = h.dir.path().join(tessera_engine::keys::ROOT_KEY_FILE);
    if root.exists() {
        std::fs::copy(&root, to.path().join(tessera_engine::keys::ROOT_KEY_FILE)).unwrap();
    }
    let restored = common::open_engine_on(
        common::StoreKind::Sqlite,
        to.path(),
        tessera_engine::EngineConfig::default(),
        h.now(),
    )
    .unwrap();
    restored
        .validate_rt(kept.rt.expose().as_bytes(), h.now())
        .unwrap();
    let restored_h = Harness {
        dir: to,
        engine: restored,
        clock: common::Clock(h.now()),
        config: tessera_engine::EngineConfig::default(),
        kind: common::StoreKind::Sqlite,
    };
    let newcomer = restored_h.provision("newcomer-3");
    assert_eq!(
        newcomer.registration_id, lost.registration_id,
        "the restore handed the id out again"
    );
    let e = &restored_h.engine;
    assert_eq!(
        e.validate_rt(lost.rt.expose().as_bytes(), h.now())
            .unwrap_err(),
        Error::Revoked
    );
    assert_eq!(
        e.introspect(lost.rt.expose().as_bytes(), h.now())
            .unwrap_err(),
        Error::Revoked
    );
    assert!(e
        .refresh(lost.rt.expose(), &Harness::device(), h.now())
        .is_err());
    // The newcomer is untouched by the attempt.
    e.validate_rt(newcomer.rt.expose().as_bytes(), h.now())
        .unwrap();
    // The local validator (another process on the host) applies the same rule.
    if std::env::var("TESSERA_TEST_KEEPER").as_deref() != Ok("pkcs11") {
        let v = tessera_engine::LocalValidator::open(restored_h.dir.path()).unwrap();
        assert_eq!(
            v.validate(lost.rt.expose().as_bytes(), h.now())
                .unwrap_err(),
            Error::Revoked
        );
        v.validate(newcomer.rt.expose().as_bytes(), h.now())
            .unwrap();
    }
}

/// Rule: the audit log says where each action came from: the collector's address for a
/// collection (not the BEGIN's), and every operation a PT revocation cancels gets its own event.
#[test]
fn audit_records_the_collectors_address_and_cancellations_by_pt_revocation() {
    let h = Harness::new();
    let pt = h.pt(manual());
    let op = h
        .begin(&pt, Some("sensor-4"), b"sensor-four-nonce-1")
        .unwrap();
    h.approve_with_code(&op.operation_id, None).unwrap();
    let collector = tessera_engine::Actor::device(Some("198.51.100.7".into()));
    h.engine
        .poll_operation(&op.operation_id, op.secret.expose(), &collector, h.now())
        .unwrap();
    let events = h.engine.audit(0, 1000).unwrap();
    let collect = events
        .iter()
        .find(|e| e.action == "operation.collect")
        .unwrap();
    assert_eq!(collect.source.as_deref(), Some("198.51.100.7"));

    let pt2 = h.pt(manual());
    let pending = h
        .begin(&pt2, Some("sensor-5"), b"sensor-five-nonce-1")
        .unwrap();
    let pt2_id = h.engine.verify_pt(pt2.expose(), h.now()).unwrap().id;
    let admin = Harness::tech().from_source("203.0.113.9");
    h.engine
        .revoke_pt(&pt2_id, "leaked", &admin, h.now())
        .unwrap();
    let events = h.engine.audit(0, 1000).unwrap();
    let cancel = events
        .iter()
        .find(|e| e.action == "operation.cancel" && e.subject == pending.operation_id.to_string())
        .expect("the cancelled operation has its own event");
    assert_eq!(cancel.source.as_deref(), Some("203.0.113.9"));
    assert_eq!(cancel.detail["reason"], "provisioning token revoked");
}

/// Rule: one registration refreshed from more addresses than allowed within the window raises
/// `many_sources` (once per window); with the `revoke_pt` policy its PT is revoked and the
/// refresh refused.
#[test]
fn many_sources_is_raised_and_its_policy_applies() {
    for revoke in [false, true] {
        let mut config = tessera_engine::EngineConfig::default();
        config.many_sources(tessera_engine::ManySources {
            threshold: 2,
            window: Duration::from_secs(600),
        });
        if revoke {
            config.leak_policy(tessera_engine::LeakPolicy {
                many_sources: tessera_engine::LeakResponse::RevokePt,
                ..Default::default()
            });
        }
        let h = Harness::with_config(config);
        let mut rt = h.provision("roamer").rt;
        let from = |a: &str| tessera_engine::Actor::device(Some(a.into()));
        for addr in ["192.0.2.1", "192.0.2.1", "192.0.2.2"] {
            rt = h
                .engine
                .refresh(rt.expose(), &from(addr), h.now())
                .unwrap()
                .rt;
        }
        let third = h.engine.refresh(rt.expose(), &from("192.0.2.3"), h.now());
        let signals: Vec<_> = h
            .engine
            .leak_signals(0, 100)
            .unwrap()
            .into_iter()
            .filter(|s| s.kind == LeakKind::ManySources)
            .collect();
        assert_eq!(signals.len(), 1);
        assert_eq!(signals[0].source.as_deref(), Some("192.0.2.3"));
        if revoke {
            assert_eq!(third.unwrap_err(), Error::Revoked);
            assert_eq!(signals[0].action, "revoked_pt");
        } else {
            assert_eq!(signals[0].action, "flagged");
            let rt = third.unwrap().rt;
            h.engine
                .refresh(rt.expose(), &from("192.0.2.4"), h.now())
                .unwrap();
            assert_eq!(
                h.engine
                    .leak_signals(0, 100)
                    .unwrap()
                    .iter()
                    .filter(|s| s.kind == LeakKind::ManySources)
                    .count(),
                1,
                "once per window"
            );
        }
    }
}

/// Rule: the instance nonce is a secret of at least 128 bits: shorter ones are refused, the
/// engine keeps only a keyed digest (never serialised, shown or in `Debug`), and BEGINs with
/// an unknown nonce on a PT at its pending cap are counted and signalled.
#[test]
fn the_instance_nonce_is_long_kept_only_as_a_digest_and_failed_resumes_are_signalled() {
    let mut config = tessera_engine::EngineConfig::default();
    config.pt_rates(
        tessera_engine::Rate::new(100, 100),
        tessera_engine::Rate::new(100, 100),
    );
    let h = Harness::with_config(config);
    let pt = h.pt(manual());
    assert!(matches!(
        h.begin_raw(&pt, None, &[7u8; 15]),
        Err(Error::InvalidInput(e)) if e.field == "instance_nonce"
    ));
    let nonce = *b"0123456789abcdef";
    let op = h.begin_raw(&pt, Some("n-1"), &nonce).unwrap();
    let again = h.begin_raw(&pt, Some("n-1"), &nonce).unwrap();
    assert!(again.resumed && again.operation_id == op.operation_id);
    assert_eq!(again.secret.expose(), op.secret.expose());

    let rec = h.engine.operation(&op.operation_id).unwrap();
    let shown = serde_json::to_string(&rec).unwrap();
    let debug = format!("{rec:?}");
    let nonce_text = std::str::from_utf8(&nonce).unwrap();
    for text in [&shown, &debug] {
        assert!(!text.contains(nonce_text), "nonce leaked: {text}");
        assert!(
            !text.contains("instance_nonce"),
            "nonce field shown: {text}"
        );
    }
    let req = tessera_engine::BeginRequest {
        pt: pt.clone(),
        requested_device_id: None,
        attributes: Default::default(),
        instance_nonce: nonce.to_vec(),
    };
    assert!(!format!("{req:?}").contains(nonce_text));

    // Fill the single-device PT's pending cap (4), then guess.
    for i in 0..3u8 {
        h.begin(&pt, Some("n-1"), &[b'x', i]).unwrap();
    }
    let signals_before = h.engine.leak_signals(0, 100).unwrap().len();
    for guess in 0..5u8 {
        assert_eq!(
            h.begin(&pt, Some("n-1"), &[b'g', guess]).unwrap_err(),
            Error::TooManyPendingOperations
        );
    }
    assert_eq!(h.engine.status().unwrap().failed_resumes, 5);
    let refused: Vec<_> = h.engine.leak_signals(0, 100).unwrap()[signals_before..]
        .iter()
        .filter(|s| s.kind == LeakKind::ParallelOperations && s.action == "refused")
        .cloned()
        .collect();
    assert_eq!(refused.len(), 3, "signalled, throttled after a burst of 3");
    assert_eq!(h.engine.status().unwrap().suppressed_signals, 2);
    // The real device still resumes.
    assert!(h.begin_raw(&pt, Some("n-1"), &nonce).unwrap().resumed);
}

/// Rule: refreshes are rate-limited per registration (the error carries a retry hint and
/// changes nothing), and repeated signals from one revoked RT are throttled.
#[test]
fn refreshes_are_limited_per_registration_and_repeated_signals_throttled() {
    let mut config = tessera_engine::EngineConfig::default();
    config.refresh_rate(tessera_engine::Rate::new(2, 1));
    let mut h = Harness::with_config(config);
    let p = h.provision("busy-1");
    let mut rt = p.rt;
    for _ in 0..2 {
        rt = h
            .engine
            .refresh(rt.expose(), &Harness::device(), h.now())
            .unwrap()
            .rt;
    }
    let audit_before = h.engine.status().unwrap().counts.audit_events;
    match h.engine.refresh(rt.expose(), &Harness::device(), h.now()) {
        Err(Error::RateLimited { retry_after }) => assert!(retry_after > Duration::ZERO),
        other => panic!("expected a rate limit, got {other:?}"),
    }
    assert_eq!(h.engine.status().unwrap().counts.audit_events, audit_before);
    h.engine
        .validate_rt(rt.expose().as_bytes(), h.now())
        .unwrap();
    h.clock.advance(Duration::from_secs(60));
    h.engine
        .refresh(rt.expose(), &Harness::device(), h.now())
        .expect("a token again after a minute");

    // A revoked RT presented again and again: the signals stop after a burst of 3.
    let h = Harness::new();
    let p = h.provision("stolen-1");
    h.engine
        .revoke_registration(p.registration_id, "stolen", &Harness::tech(), h.now())
        .unwrap();
    for _ in 0..8 {
        assert_eq!(
            h.engine
                .refresh(p.rt.expose(), &Harness::device(), h.now())
                .unwrap_err(),
            Error::Revoked
        );
    }
    let revoked_uses = h
        .engine
        .leak_signals(0, 100)
        .unwrap()
        .iter()
        .filter(|s| s.kind == LeakKind::RevokedTokenUse)
        .count();
    assert_eq!(revoked_uses, 3);
    assert_eq!(h.engine.status().unwrap().suppressed_signals, 5);
}

/// Rule: a validator beside the server holds the RT keys of the live epochs and nothing else
/// (no root, so no operation-secret or verification-code key); it follows rotations through
/// the key file, and refuses a key file that belongs to another store.
#[test]
fn a_local_validator_holds_only_the_rt_keys() {
    use std::os::unix::fs::PermissionsExt;
    use tessera_engine::keys::{ROOT_KEY_FILE, VALIDATOR_KEYS_FILE};
    use tessera_engine::LocalValidator;
    let h = Harness::sqlite();
    let p = h.provision("brokered-1");
    let dir = h.dir.path();
    let file = dir.join(VALIDATOR_KEYS_FILE);
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let keys = doc["rt_keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["epoch"], 1);
    assert_eq!(
        doc.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["root_check", "rt_keys", "version"]
    );

    // The validator works with the root key out of reach.
    let root = dir.join(ROOT_KEY_FILE);
    if root.exists() {
        std::fs::rename(&root, dir.join("root.key.elsewhere")).unwrap();
    }
    let v = LocalValidator::open(dir).unwrap();
    assert_eq!(
        v.validate(p.rt.expose().as_bytes(), h.now())
            .unwrap()
            .device_id
            .as_str(),
        "brokered-1"
    );
    // A rotation reaches it through the file: an RT minted under the new epoch validates.
    let epoch = h.engine.rotate_keys(&Harness::tech(), h.now()).unwrap();
    let next = h
        .engine
        .refresh(p.rt.expose(), &Harness::device(), h.now())
        .unwrap();
    assert_eq!(next.claims.key_id, epoch);
    v.validate(next.rt.expose().as_bytes(), h.now()).unwrap();

    // A key file of another store (another root check value) is refused.
    let mut other: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    other["root_check"] = "00000000000000000000000000000000".into();
    std::fs::write(&file, serde_json::to_vec(&other).unwrap()).unwrap();
    let e = LocalValidator::open(dir).unwrap_err();
    assert!(e.to_string().contains("another data directory"), "{e}");
}
