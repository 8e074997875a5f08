//! Several nodes on one PostgreSQL store: every rule of the engine holds across nodes, and what
//! one node changes reaches the memory of the others through the change feed.
//!
//! These need PostgreSQL: scripts/test-all.sh starts a throw-away server and runs them with
//! `TESSERA_TEST_STORE=postgres://…` and `--ignored`.

mod common;

use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use common::{spec, Harness, StoreKind};
use tessera_engine::model::{OperationState, RegistrationStatus};
use tessera_engine::store::RegistrationQuery;
use tessera_engine::{
    ApprovalPolicy, EngineConfig, EngineObserver, Error, OperationId, PtKind, RegistrationId,
};
use tessera_tests::proxy::{via, Proxy};

const NEEDS: &str =
    "needs PostgreSQL (TESSERA_TEST_STORE=postgres://…): scripts/test-all.sh runs it";

/// What a node's observer was told.
#[derive(Default)]
struct Recorder {
    operations: Mutex<Vec<(OperationId, OperationState)>>,
    revoked: Mutex<Vec<RegistrationId>>,
}

impl EngineObserver for Recorder {
    fn operation_changed(&self, id: OperationId, state: OperationState) {
        self.operations.lock().unwrap().push((id, state));
    }
    fn registration_revoked(&self, id: RegistrationId) {
        self.revoked.lock().unwrap().push(id);
    }
}

/// A harness on PostgreSQL (node 1).
fn first_node(config: EngineConfig) -> Harness {
    assert!(common::on_postgres(), "{NEEDS}");
    Harness::on(StoreKind::FromEnv, config)
}

/// Another node of `h`'s store: a directory of its own, the same database and the same root,
/// reached at `url` (the database's own address, or a proxy in front of it).
fn node_at(h: &Harness, url: &str, config: EngineConfig) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let root = h.dir.path().join(tessera_engine::keys::ROOT_KEY_FILE);
    if root.exists() {
        std::fs::copy(&root, dir.path().join(tessera_engine::keys::ROOT_KEY_FILE)).unwrap();
    }
    let engine = common::open_engine_at(url, dir.path(), config.clone(), h.now()).unwrap();
    Harness {
        dir,
        engine,
        clock: h.clock,
        config,
        kind: StoreKind::FromEnv,
    }
}

fn node(h: &Harness) -> Harness {
    let url = common::postgres_url(h.dir.path()).unwrap();
    node_at(h, &url, h.config.clone())
}

/// Wait until `f` holds (what another node committed travels through the feed), at most 10 s.
fn eventually(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::yield_now();
    }
}

#[test]
#[ignore = "needs PostgreSQL (TESSERA_TEST_STORE=postgres://…): scripts/test-all.sh runs it"]
fn concurrent_refreshes_of_one_rt_on_two_nodes_give_one_successor() {
    // Each node limits refreshes per registration on its own (a rate, not a rule): above the
    // rounds here.
    let mut config = EngineConfig::default();
    config.refresh_rate(tessera_engine::Rate::new(100, 100));
    let a = first_node(config);
    let b = node(&a);
    let p = a.provision("twice-1");
    let mut rt = p.rt.expose().to_owned();
    for round in 0..20 {
        let start = Barrier::new(2);
        let (ra, rb) = std::thread::scope(|s| {
            let ta = s.spawn(|| {
                start.wait();
                a.engine.refresh(&rt, &Harness::device(), a.now())
            });
            let tb = s.spawn(|| {
                start.wait();
                b.engine.refresh(&rt, &Harness::device(), b.now())
            });
            (ta.join().unwrap(), tb.join().unwrap())
        });
        let (ra, rb) = (ra.unwrap(), rb.unwrap());
        // One successor: the same RT from both nodes, one of them the retry of the other.
        assert_eq!(ra.rt.expose(), rb.rt.expose(), "round {round}");
        assert!(ra.retried != rb.retried, "round {round}");
        rt = ra.rt.expose().to_owned();
    }
    let reg = a.engine.registration(p.registration_id).unwrap();
    assert_eq!(reg.generation, 21, "one generation per round");
    // An older generation presented on one node is reuse: the registration is revoked, and
    // the other node refuses the current RT too.
    assert_eq!(
        a.engine
            .refresh(p.rt.expose(), &Harness::device(), a.now())
            .unwrap_err(),
        Error::RotationReuse
    );
    eventually(
        "node 2 refuses the current RT after the reuse on node 1",
        || b.engine.validate_rt(rt.as_bytes(), b.now()) == Err(Error::Revoked),
    );
}

#[test]
#[ignore = "needs PostgreSQL (TESSERA_TEST_STORE=postgres://…): scripts/test-all.sh runs it"]
fn a_revocation_on_one_node_reaches_every_node_and_closes_its_connections() {
    let a = first_node(EngineConfig::default());
    let b = node(&a);
    let seen = Arc::new(Recorder::default());
    a.engine.set_observer(seen.clone());
    let p = a.provision("revoke-1");
    let rt = p.rt.expose().as_bytes().to_vec();
    eventually("node 2 knows the new registration", || {
        b.engine.validate_rt(&rt, b.now()).is_ok()
    });
    b.engine
        .revoke_registration(p.registration_id, "stolen", &Harness::tech(), b.now())
        .unwrap();
    // The store refuses a refresh on node 1 at once ...
    assert_eq!(
        a.engine
            .refresh(p.rt.expose(), &Harness::device(), a.now())
            .unwrap_err(),
        Error::Revoked
    );
    // ... and node 1's memory follows: validation refuses, its connections are told to close.
    eventually("node 1 refuses the revoked RT", || {
        a.engine.validate_rt(&rt, a.now()) == Err(Error::Revoked)
    });
    assert!(seen.revoked.lock().unwrap().contains(&p.registration_id));
}

#[test]
#[ignore = "needs PostgreSQL (TESSERA_TEST_STORE=postgres://…): scripts/test-all.sh runs it"]
fn an_approval_on_one_node_wakes_the_device_waiting_on_another() {
    let a = first_node(EngineConfig::default());
    let b = node(&a);
    let waiting = Arc::new(Recorder::default());
    a.engine.set_observer(waiting.clone());
    let pt = a.pt(spec(PtKind::SingleDevice, ApprovalPolicy::ManualWithCode));
    let op = a.begin(&pt, Some("wake-1"), b"wake").unwrap();
    let code = op.verification_code.clone().unwrap();
    b.approve_with_code(&op.operation_id, Some(code.expose()))
        .unwrap();
    eventually("node 1 hears of the approval", || {
        waiting
            .operations
            .lock()
            .unwrap()
            .contains(&(op.operation_id, OperationState::Approved))
    });
    let p = a.collect(&op);
    assert!(b.engine.registration(p.registration_id).is_ok());
}

#[test]
#[ignore = "needs PostgreSQL (TESSERA_TEST_STORE=postgres://…): scripts/test-all.sh runs it"]
fn caps_and_code_attempts_are_global() {
    let a = first_node(EngineConfig::default());
    let b = node(&a);
    // The fleet cap: two approvals at once on two nodes, one registration left.
    let pt = a.pt(spec(
        PtKind::Fleet {
            max_registrations: 1,
        },
        ApprovalPolicy::Manual,
    ));
    let op1 = a.begin(&pt, Some("cap-1"), b"cap-1").unwrap();
    let op2 = b.begin(&pt, Some("cap-2"), b"cap-2").unwrap();
    let start = Barrier::new(2);
    let (r1, r2) = std::thread::scope(|s| {
        let t1 = s.spawn(|| {
            start.wait();
            a.approve_with_code(&op1.operation_id, None)
        });
        let t2 = s.spawn(|| {
            start.wait();
            b.approve_with_code(&op2.operation_id, None)
        });
        (t1.join().unwrap(), t2.join().unwrap())
    });
    assert_eq!(
        [&r1, &r2].iter().filter(|r| r.is_ok()).count(),
        1,
        "{r1:?} {r2:?}"
    );
    assert!([r1, r2].contains(&Err(Error::RegistrationCapReached)));

    // The pending cap of a single-device PT (4), filled from both nodes.
    let single = a.pt(spec(PtKind::SingleDevice, ApprovalPolicy::Manual));
    for i in 0..4u8 {
        let n = if i % 2 == 0 { &a } else { &b };
        n.begin(&single, None, &[b'p', i]).unwrap();
    }
    assert_eq!(
        b.begin(&single, None, b"p-5").unwrap_err(),
        Error::TooManyPendingOperations
    );

    // Code attempts: wrong codes typed on both nodes count together.
    let coded = a.pt(spec(PtKind::SingleDevice, ApprovalPolicy::ManualWithCode));
    let op = a.begin(&coded, Some("code-1"), b"code").unwrap();
    let wrong = Harness::wrong_code(&op);
    let mut last = None;
    for i in 0..5 {
        let n = if i % 2 == 0 { &a } else { &b };
        last = Some(
            n.approve_with_code(&op.operation_id, Some(wrong))
                .unwrap_err(),
        );
    }
    assert!(matches!(
        last,
        Some(Error::VerificationAttemptsExhausted | Error::WrongVerificationCode { remaining: 0 })
    ));
    let right = op.verification_code.as_ref().unwrap().expose();
    assert!(matches!(
        b.approve_with_code(&op.operation_id, Some(right)),
        Err(Error::VerificationAttemptsExhausted | Error::OperationClosed(_))
    ));
}

/// Three nodes, eighteen approvals at once, a fleet cap of five: exactly five registrations.
#[test]
#[ignore = "needs PostgreSQL (TESSERA_TEST_STORE=postgres://…): scripts/test-all.sh runs it"]
fn three_nodes_racing_for_a_fleet_cap_create_exactly_that_many() {
    const CAP: u64 = 5;
    const PER_NODE: usize = 6;
    let a = first_node(EngineConfig::default());
    let nodes = [node(&a), node(&a)];
    let nodes = [&a, &nodes[0], &nodes[1]];
    let (record, pt) = a
        .engine
        .create_pt(
            &spec(
                PtKind::Fleet {
                    max_registrations: CAP,
                },
                ApprovalPolicy::Manual,
            ),
            &Harness::tech(),
            a.now(),
        )
        .unwrap();
    let mut ops = Vec::new();
    for (n, h) in nodes.iter().enumerate() {
        for i in 0..PER_NODE {
            let device = format!("race-{n}-{i}");
            let op = h.begin(&pt, Some(&device), device.as_bytes()).unwrap();
            ops.push((n, op.operation_id));
        }
    }
    let start = Barrier::new(ops.len());
    let results: Vec<_> = std::thread::scope(|s| {
        let threads: Vec<_> = ops
            .iter()
            .map(|(n, op)| {
                let (h, start) = (nodes[*n], &start);
                s.spawn(move || {
                    start.wait();
                    h.approve_with_code(op, None)
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let approved = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(approved as u64, CAP, "{results:?}");
    assert!(results
        .iter()
        .all(|r| r.is_ok() || r == &Err(Error::RegistrationCapReached)));
    // Every node's view of the store agrees: five registrations under the PT, none more.
    for h in nodes {
        let regs = h
            .engine
            .list_registrations(&RegistrationQuery {
                pt_id: Some(record.id),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(regs.len() as u64, CAP);
    }
}

#[test]
#[ignore = "needs PostgreSQL (TESSERA_TEST_STORE=postgres://…): scripts/test-all.sh runs it"]
fn key_epochs_made_on_one_node_reach_the_others() {
    let a = first_node(EngineConfig::default());
    let b = node(&a);
    let c = node(&a);
    let p = a.provision("keys-1");
    assert_eq!(a.engine.rotate_keys(&Harness::tech(), a.now()).unwrap(), 2);
    eventually("node 3 takes up epoch 2", || {
        c.engine.status().unwrap().current_key_epoch == 2
    });
    let r = c
        .engine
        .refresh(p.rt.expose(), &Harness::device(), c.now())
        .unwrap();
    assert_eq!(r.claims.key_id, 2, "node 3 mints with the new epoch");
    assert!(b
        .engine
        .validate_rt(r.rt.expose().as_bytes(), b.now())
        .is_ok());
    assert_eq!(b.provision("keys-2").claims.key_id, 2);
    // Retiring epoch 1 on node 1 refuses its RTs on node 2.
    a.engine
        .retire_key_epoch(1, &Harness::tech(), a.now())
        .unwrap();
    eventually("node 2 drops epoch 1's RT key", || {
        b.engine
            .key_epochs()
            .unwrap()
            .iter()
            .any(|e| e.record.epoch == 1 && !e.rt_key_loaded)
    });
    assert_eq!(
        b.engine
            .validate_rt(p.rt.expose().as_bytes(), b.now())
            .unwrap_err(),
        Error::Unauthenticated
    );
}

#[test]
#[ignore = "needs PostgreSQL (TESSERA_TEST_STORE=postgres://…): scripts/test-all.sh runs it"]
fn a_node_cut_off_from_the_database_fails_closed_and_recovers_by_itself() {
    let a = first_node(EngineConfig::default());
    let url = common::postgres_url(a.dir.path()).unwrap();
    let (_, target) = via(&url, "127.0.0.1:1".parse().unwrap());
    let proxy = Proxy::start(target);
    let (proxied, _) = via(&url, proxy.addr);
    let mut config = EngineConfig::default();
    config.feed_max_lag(Duration::from_millis(400));
    let b = node_at(&a, &proxied, config);
    let p = a.provision("cut-1");
    let rt = p.rt.expose().as_bytes().to_vec();
    eventually("node 2 validates", || {
        b.engine.validate_rt(&rt, b.now()).is_ok()
    });
    assert!(b.engine.status().unwrap().feed.unwrap().current);

    proxy.cut();
    let cut_at = Instant::now();
    eventually("node 2 fails closed", || {
        matches!(
            b.engine.validate_rt(&rt, b.now()),
            Err(Error::Unavailable(_))
        )
    });
    // Within the bound (plus the follower's poll interval and scheduling).
    assert!(
        cut_at.elapsed() < Duration::from_secs(3),
        "{:?}",
        cut_at.elapsed()
    );
    // Meanwhile node 1 revokes the registration.
    a.engine
        .revoke_registration(p.registration_id, "cut", &Harness::tech(), a.now())
        .unwrap();
    assert!(matches!(
        b.engine.validate_rt(&rt, b.now()),
        Err(Error::Unavailable(_))
    ));

    proxy.restore();
    eventually("node 2 catches up and refuses the revoked RT", || {
        b.engine.validate_rt(&rt, b.now()) == Err(Error::Revoked)
    });
    let other = a.provision("cut-2");
    eventually("node 2 validates again", || {
        b.engine
            .validate_rt(other.rt.expose().as_bytes(), b.now())
            .is_ok()
    });
    let active = b
        .engine
        .list_registrations(&RegistrationQuery {
            device_id: Some("cut-1".parse().unwrap()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(active[0].status, RegistrationStatus::Revoked);
}

/// The feed keeps its newest changes only: a node that falls further behind (here: cut off
/// while the rows it missed are trimmed) finds the gap and rebuilds its memory from the tables,
/// so a revocation whose change it never read is refused all the same.
#[test]
#[ignore = "needs PostgreSQL (TESSERA_TEST_STORE=postgres://…): scripts/test-all.sh runs it"]
fn a_node_behind_the_trimmed_feed_rebuilds_its_memory() {
    let a = first_node(EngineConfig::default());
    let url = common::postgres_url(a.dir.path()).unwrap();
    let (_, target) = via(&url, "127.0.0.1:1".parse().unwrap());
    let proxy = Proxy::start(target);
    let (proxied, _) = via(&url, proxy.addr);
    let b = node_at(&a, &proxied, EngineConfig::default());
    let gone = a.provision("trim-1");
    let stays = a.provision("trim-2");
    for p in [&gone, &stays] {
        let rt = p.rt.expose().as_bytes().to_vec();
        eventually("node 2 validates", || {
            b.engine.validate_rt(&rt, b.now()).is_ok()
        });
    }

    proxy.cut();
    a.engine
        .revoke_registration(gone.registration_id, "trimmed", &Harness::tech(), a.now())
        .unwrap();
    let later = a.provision("trim-3");
    // What the trim does to rows far behind the newest, done to every row: delete them and
    // record the newest transaction deleted.
    let mut db = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    assert!(
        db.execute(
            "WITH d AS (DELETE FROM changes RETURNING xid) \
             UPDATE feed_trimmed SET xid = (SELECT xid FROM d ORDER BY xid DESC LIMIT 1)",
            &[]
        )
        .unwrap()
            > 0
    );
    drop(db);
    proxy.restore();

    eventually("node 2 refuses the revocation it never read", || {
        b.engine.validate_rt(gone.rt.expose().as_bytes(), b.now()) == Err(Error::Revoked)
    });
    assert!(b
        .engine
        .validate_rt(stays.rt.expose().as_bytes(), b.now())
        .is_ok());
    eventually("node 2 knows the registration made meanwhile", || {
        b.engine
            .validate_rt(later.rt.expose().as_bytes(), b.now())
            .is_ok()
    });
}

/// What a node's writer commits for a revocation (the registration's row and its feed row),
/// written by hand in `tx` as node `node`.
fn revoke_by_hand(tx: &mut postgres::Transaction<'_>, id: RegistrationId, node: i64) {
    tx.execute(
        "UPDATE registrations SET active = false, revoked_at = 1, revoke_reason = 'by hand' \
         WHERE id = $1",
        &[&(id.get() as i64)],
    )
    .unwrap();
    let body = serde_json::to_string(&tessera_engine::store::Change::Revoked { id }).unwrap();
    tx.execute(
        "INSERT INTO changes (node, body) VALUES ($1, $2)",
        &[&node, &body],
    )
    .unwrap();
}

#[test]
#[ignore = "needs PostgreSQL (TESSERA_TEST_STORE=postgres://…): scripts/test-all.sh runs it"]
fn a_revocation_that_commits_after_a_later_change_still_reaches_every_node() {
    let a = first_node(EngineConfig::default());
    let b = node(&a);
    let p = a.provision("late-1");
    let rt = p.rt.expose().as_bytes().to_vec();
    eventually("node 2 knows the registration", || {
        b.engine.validate_rt(&rt, b.now()).is_ok()
    });
    // A transaction that starts first and commits last: its id is older than the change
    // committed meanwhile, which node 2 reads first.
    let url = common::postgres_url(a.dir.path()).unwrap();
    let mut db = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let mut tx = db.transaction().unwrap();
    revoke_by_hand(&mut tx, p.registration_id, 7);
    let later = a.provision("late-2");
    eventually("node 2 read the change committed meanwhile", || {
        b.engine
            .validate_rt(later.rt.expose().as_bytes(), b.now())
            .is_ok()
    });
    assert!(b.engine.validate_rt(&rt, b.now()).is_ok());
    tx.commit().unwrap();
    eventually("node 2 applies the revocation that committed late", || {
        b.engine.validate_rt(&rt, b.now()) == Err(Error::Revoked)
    });
    eventually("node 1 too", || {
        a.engine.validate_rt(&rt, a.now()) == Err(Error::Revoked)
    });
}

#[test]
#[ignore = "needs PostgreSQL (TESSERA_TEST_STORE=postgres://…): scripts/test-all.sh runs it"]
fn a_commit_whose_acknowledgement_was_lost_reaches_its_own_node() {
    let a = first_node(EngineConfig::default());
    let p = a.provision("lost-ack-1");
    let rt = p.rt.expose().as_bytes().to_vec();
    // Node 1's id in the feed: the node of the rows it just wrote (it is the only node).
    let url = common::postgres_url(a.dir.path()).unwrap();
    let mut db = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let node: i64 = db
        .query_one("SELECT node FROM changes ORDER BY id DESC LIMIT 1", &[])
        .unwrap()
        .get(0);
    // What node 1's writer commits when the connection breaks after COMMIT reached the
    // database and before its answer came back: committed, but node 1 never heard of it, so
    // its memory was not changed at commit.
    let mut tx = db.transaction().unwrap();
    revoke_by_hand(&mut tx, p.registration_id, node);
    tx.commit().unwrap();
    eventually(
        "node 1's follower applies its own unacknowledged change",
        || a.engine.validate_rt(&rt, a.now()) == Err(Error::Revoked),
    );
}

#[test]
#[ignore = "needs PostgreSQL (TESSERA_TEST_STORE=postgres://…): scripts/test-all.sh runs it"]
fn introspect_judges_the_generation_the_store_holds() {
    let mut config = EngineConfig::default();
    config.feed_max_lag(Duration::from_secs(60));
    let a = first_node(config.clone());
    let url = common::postgres_url(a.dir.path()).unwrap();
    let b = node_at(&a, &url, config);
    let p = a.provision("introspect-gen-1");
    let rt = p.rt.expose().as_bytes().to_vec();
    eventually("node 2 knows the registration", || {
        b.engine.introspect(&rt, b.now()).is_ok()
    });
    // Hold every follower back (each reads `feed_trimmed`; writers never touch it), so node 2's
    // memory still has generation 1 when node 1 refreshes.
    let mut db = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let mut hold = db.transaction().unwrap();
    hold.batch_execute("LOCK TABLE feed_trimmed IN ACCESS EXCLUSIVE MODE")
        .unwrap();
    a.engine
        .refresh(p.rt.expose(), &Harness::device(), a.now())
        .unwrap();
    assert!(
        b.engine.validate_rt(&rt, b.now()).is_ok(),
        "node 2's memory is behind, as intended"
    );
    assert_eq!(
        b.engine.introspect(&rt, b.now()).unwrap_err(),
        Error::Superseded
    );
    hold.rollback().unwrap();
}

#[test]
#[ignore = "needs PostgreSQL (TESSERA_TEST_STORE=postgres://…): scripts/test-all.sh runs it"]
fn the_local_validator_refuses_a_postgresql_nodes_directory_even_with_a_stale_sqlite_store() {
    assert!(common::on_postgres(), "{NEEDS}");
    let dir = tempfile::tempdir().unwrap();
    let now = tessera_engine::Timestamp::from_unix_millis(1_800_000_000_000);
    // The directory once held a SQLite node: its tessera.db stays behind.
    drop(tessera_engine::Engine::open_dir(dir.path(), EngineConfig::default(), now).unwrap());
    assert!(tessera_engine::LocalValidator::open(dir.path()).is_ok());
    let url = common::postgres_url(dir.path()).unwrap();
    let keeper = tessera_engine::keys::SoftwareKeeper::open_or_create(dir.path()).unwrap();
    let node = tessera_engine::Engine::open_postgres(
        &url,
        &common::pg_options(),
        dir.path(),
        keeper,
        EngineConfig::default(),
        now,
    )
    .unwrap();
    let err = tessera_engine::LocalValidator::open(dir.path()).unwrap_err();
    assert!(err.to_string().contains("store is PostgreSQL"), "{err}");
    assert!(!err.to_string().contains("postgres://"), "no URL: {err}");
    drop(node);
    // Back on SQLite, the directory is the local validator's again.
    drop(tessera_engine::Engine::open_dir(dir.path(), EngineConfig::default(), now).unwrap());
    assert!(tessera_engine::LocalValidator::open(dir.path()).is_ok());
}
