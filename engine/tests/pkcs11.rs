//! The PKCS#11 keeper against SoftHSM2. These need a SoftHSM2 token: scripts/test-all.sh
//! creates throw-away tokens (scripts/softhsm-env.sh) and runs them with `--ignored`.

mod common;

use std::path::PathBuf;

use common::{pkcs11_config, pkcs11_keeper, Clock, Harness};
use tessera_engine::keys::{KeyKeeper, Pkcs11Keeper};
use tessera_engine::{Actor, Engine, EngineConfig, Error};

const NEEDS: &str =
    "needs a SoftHSM2 token (TESSERA_TEST_PKCS11_*); scripts/test-all.sh runs it with --ignored";

fn provision(engine: &Engine, now: tessera_engine::Timestamp) -> tessera_engine::Provisioned {
    let h_actor = Actor::operator("t");
    let (_, pt) = engine
        .create_pt(
            &common::spec(
                tessera_engine::PtKind::Fleet {
                    max_registrations: 10,
                },
                tessera_engine::ApprovalPolicy::Automatic,
            ),
            &h_actor,
            now,
        )
        .unwrap();
    let op = engine
        .begin_operation(
            tessera_engine::BeginRequest {
                pt,
                requested_device_id: None,
                attributes: Default::default(),
                instance_nonce: common::instance_nonce(b"n"),
            },
            &Actor::device(None),
            now,
        )
        .unwrap();
    match engine
        .poll_operation(
            &op.operation_id,
            op.secret.expose(),
            &tessera_engine::Actor::device(None),
            now,
        )
        .unwrap()
    {
        tessera_engine::OperationStatus::Provisioned(p) => p,
        other => panic!("{other:?}"),
    }
}

#[test]
#[ignore = "needs a SoftHSM2 token (TESSERA_TEST_PKCS11_*); scripts/test-all.sh runs it with --ignored"]
fn the_root_key_is_non_extractable_sensitive_and_unreadable() {
    let k = pkcs11_keeper("tessera-test-root").expect(NEEDS);
    let a = k.root_key_attributes().unwrap();
    assert!(!a.extractable, "CKA_EXTRACTABLE must be false");
    assert!(a.sensitive, "CKA_SENSITIVE must be true");
    assert!(!a.value_readable, "reading CKA_VALUE must fail");
    assert!(!format!("{k:?}").contains("1234"), "Debug shows no PIN");
    // The same context gives the same key every time; different contexts differ.
    assert_eq!(
        k.derive(b"x").unwrap().expose(),
        k.derive(b"x").unwrap().expose()
    );
    assert_ne!(
        k.derive(b"x").unwrap().expose(),
        k.derive(b"y").unwrap().expose()
    );
}

#[test]
#[ignore = "needs a SoftHSM2 token (TESSERA_TEST_PKCS11_*); scripts/test-all.sh runs it with --ignored"]
fn wrong_pin_missing_module_and_missing_key_are_clear_errors() {
    let mut cfg = pkcs11_config("TESSERA_TEST_PKCS11_PIN_TOKEN", "nope").expect(NEEDS);
    cfg.pin = "0000".to_owned().into();
    assert_eq!(
        Pkcs11Keeper::open(&cfg).unwrap_err(),
        Error::Keys("HSM: wrong PIN".into())
    );
    let mut missing = pkcs11_config("TESSERA_TEST_PKCS11_TOKEN", "nope").expect(NEEDS);
    missing.module = PathBuf::from("/nonexistent/libpkcs11.so");
    assert!(matches!(Pkcs11Keeper::open(&missing), Err(Error::Keys(m)) if m.contains("not found")));
    let no_key = pkcs11_config("TESSERA_TEST_PKCS11_TOKEN", "no-such-key").expect(NEEDS);
    assert!(
        matches!(Pkcs11Keeper::open(&no_key), Err(Error::Keys(m)) if m.contains("no key labelled"))
    );
    let mut no_token = pkcs11_config("TESSERA_TEST_PKCS11_TOKEN", "x").expect(NEEDS);
    no_token.token_label = Some("no-such-token".into());
    assert!(matches!(Pkcs11Keeper::open(&no_token), Err(Error::Keys(m)) if m.contains("no token")));
    // An engine cannot open at all without its keeper: there is no software fallback.
    let dir = tempfile::tempdir().unwrap();
    let err = Pkcs11Keeper::open(&no_key).and_then(|k| {
        Engine::open_dir_with(dir.path(), k, EngineConfig::default(), Clock::new().now())
    });
    assert!(matches!(err, Err(Error::Keys(_))));
    assert!(
        !dir.path().join("root.key").exists(),
        "no software key was created"
    );
}

#[test]
#[ignore = "needs a SoftHSM2 token (TESSERA_TEST_PKCS11_*); scripts/test-all.sh runs it with --ignored"]
fn an_hsm_that_goes_away_fails_clearly_and_never_falls_back() {
    let cfg = pkcs11_config("TESSERA_TEST_PKCS11_GONE_TOKEN", "gone-root").expect(NEEDS);
    Pkcs11Keeper::init_root_key(&cfg).unwrap();
    let keeper = std::sync::Arc::new(Pkcs11Keeper::open(&cfg).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let now = Clock::new().now();
    let engine =
        Engine::open_dir_with(dir.path(), keeper.clone(), EngineConfig::default(), now).unwrap();
    let p = provision(&engine, now);
    keeper.log_out().unwrap();
    // Working keys were derived at open: validation goes on at memory speed…
    engine.validate_rt(p.rt.expose().as_bytes(), now).unwrap();
    // …but anything that needs the root now fails with a clear error.
    assert!(
        matches!(engine.rotate_keys(&Actor::system(), now), Err(Error::Keys(m)) if m.starts_with("HSM:"))
    );
    assert_eq!(
        engine.key_epochs().unwrap().len(),
        1,
        "the failed rotation changed nothing"
    );
    drop(engine);
    let again = Engine::open_dir_with(dir.path(), keeper, EngineConfig::default(), now);
    assert!(matches!(again, Err(Error::Keys(_))));
}

#[test]
#[ignore = "needs a SoftHSM2 token (TESSERA_TEST_PKCS11_*); scripts/test-all.sh runs it with --ignored"]
fn tokens_stay_with_their_root_and_survive_a_restart() {
    let now = Clock::new().now();
    let hsm_dir = tempfile::tempdir().unwrap();
    let hsm = Engine::open_dir_with(
        hsm_dir.path(),
        pkcs11_keeper("tessera-test-root").expect(NEEDS),
        EngineConfig::default(),
        now,
    )
    .unwrap();
    let p = provision(&hsm, now);
    let soft = Harness::new();
    let q = soft.provision("soft-1");
    // Each root refuses the other's tokens.
    assert_eq!(
        hsm.validate_rt(q.rt.expose().as_bytes(), now).unwrap_err(),
        Error::Unauthenticated
    );
    assert_eq!(
        soft.engine
            .validate_rt(p.rt.expose().as_bytes(), now)
            .unwrap_err(),
        Error::Unauthenticated
    );
    // A software keeper cannot open the HSM engine's data directory.
    drop(hsm);
    let wrong = Engine::open_dir(hsm_dir.path(), EngineConfig::default(), now).unwrap_err();
    assert!(matches!(wrong, Error::Keys(m) if m.contains("does not match")));
    std::fs::remove_file(hsm_dir.path().join("root.key")).unwrap();
    // The same HSM root after a restart: the RT still validates.
    let hsm = Engine::open_dir_with(
        hsm_dir.path(),
        pkcs11_keeper("tessera-test-root").unwrap(),
        EngineConfig::default(),
        now,
    )
    .unwrap();
    hsm.validate_rt(p.rt.expose().as_bytes(), now).unwrap();
}

#[test]
#[ignore = "needs a SoftHSM2 token (TESSERA_TEST_PKCS11_*); scripts/test-all.sh runs it with --ignored"]
fn the_hsm_is_touched_per_epoch_never_per_token() {
    let keeper = std::sync::Arc::new(pkcs11_keeper("tessera-test-root").expect(NEEDS));
    let dir = tempfile::tempdir().unwrap();
    let now = Clock::new().now();
    let before = keeper.hsm_calls();
    let engine =
        Engine::open_dir_with(dir.path(), keeper.clone(), EngineConfig::default(), now).unwrap();
    let at_open = keeper.hsm_calls() - before;
    let p = provision(&engine, now);
    let before = keeper.hsm_calls();
    for _ in 0..1_000_000 {
        engine.validate_rt(p.rt.expose().as_bytes(), now).unwrap();
    }
    assert_eq!(
        keeper.hsm_calls() - before,
        0,
        "validation never calls the HSM"
    );
    let before = keeper.hsm_calls();
    engine.rotate_keys(&Actor::system(), now).unwrap();
    let per_rotation = keeper.hsm_calls() - before;
    eprintln!("HSM calls: {at_open} to open (1 epoch), 0 per 1,000,000 validations, {per_rotation} per rotation");
    // The validator key file (RT keys only, for validators beside the server) is derived anew
    // when it is written: at open (1 live epoch) and at a rotation (2 live epochs).
    assert_eq!(
        at_open, 7,
        "root check + 5 working keys of epoch 1 + its RT key for the validator key file"
    );
    assert_eq!(
        per_rotation, 7,
        "5 working keys of the new epoch + the RT keys of the 2 live epochs for the key file"
    );
}
