//! Three `tessera serve` nodes on one PostgreSQL database, over QUIC: a device begins on one
//! node and is approved on another, refreshes on a third; a revocation on one node closes the
//! device's connection on another; key epochs made on one node are used by the others.
//!
//! These need PostgreSQL: scripts/test-all.sh runs them with `TESSERA_TEST_STORE=postgres://…`
//! and `--ignored`.

use std::time::{Duration, Instant};

use serde_json::json;
use tessera_proto::wire::{code, kind};

use crate::common::{begin, code_of, introspect, refresh, wait, TestServer};

/// Wait until `f` holds, at most 10 s (a change travels from one node to the others through
/// the change feed).
async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f().await {
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::task::yield_now().await;
    }
}

async fn three_nodes() -> (TestServer, TestServer, TestServer) {
    assert!(
        std::env::var("TESSERA_TEST_STORE").is_ok_and(|u| u.starts_with("postgres")),
        "needs TESSERA_TEST_STORE=postgres://…"
    );
    let n1 = TestServer::start().await;
    let n2 = TestServer::join(&n1, |_| {}).await;
    let n3 = TestServer::join(&n1, |_| {}).await;
    (n1, n2, n3)
}

fn key_id(rt: &str) -> u32 {
    tessera_proto::token::UntrustedRt::parse(rt.as_bytes())
        .unwrap()
        .untrusted_claims()
        .key_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL (TESSERA_TEST_STORE=postgres://…): scripts/test-all.sh runs it"]
async fn a_device_moves_between_three_nodes() {
    let (n1, n2, n3) = three_nodes().await;
    let (_, pt) = n1
        .pt(json!({ "label": "nodes", "approval": "manual_with_code" }))
        .await;
    let d1 = n1.device_transport();
    let op = begin(&d1, &pt, Some("roamer-1"), "roamer-1").await.unwrap();
    // The device waits on node 1; a technician approves on node 2.
    let waiting = {
        let op = op.clone();
        tokio::spawn(async move {
            let r = wait(&d1, &op, 20_000).await;
            (r, Instant::now(), d1)
        })
    };
    let approved_at = Instant::now();
    let code = op.verification_code.clone().unwrap();
    n2.admin
        .approve(&op.operation_id, Some(&code), None)
        .await
        .unwrap();
    let (r, woke_at, d1) = waiting.await.unwrap();
    let reg = r.unwrap().registration.expect("provisioned");
    let woke = woke_at.duration_since(approved_at);
    assert!(woke < Duration::from_secs(2), "the long poll took {woke:?}");

    // The device refreshes on node 3 (the same RT on two nodes at once gives one successor).
    let d3 = n3.device_transport();
    let d2 = n2.device_transport();
    let (a, b) = tokio::join!(refresh(&d3, &reg.rt), refresh(&d2, &reg.rt));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.registration.rt, b.registration.rt);
    assert!(a.retried != b.retried);
    let successor = a.registration.clone();
    eventually("node 1 validates the successor", || {
        let (t, rt) = (&d1, successor.rt.clone());
        async move { introspect(t, &rt).await.is_ok() }
    })
    .await;

    // Node 1 holds the device's connection (it refreshes there next); node 2 revokes.
    let current = refresh(&d1, &successor.rt).await.unwrap().registration;
    assert_eq!(current.generation, 3);
    let conn = d1.connection().await.unwrap();
    n2.admin
        .revoke_registration(current.registration_id, "stolen")
        .await
        .unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(5), conn.closed())
        .await
        .expect("node 1 closes the device's connection");
    assert!(
        matches!(closed, quinn::ConnectionError::ApplicationClosed(ref c)
            if c.error_code == quinn::VarInt::from_u32(tessera_server::server::CLOSE_REVOKED)),
        "{closed:?}"
    );
    for (n, t) in [(1, &d2), (3, &d3)] {
        eventually(&format!("node {n} refuses the RT"), || async {
            introspect(t, &current.rt)
                .await
                .is_err_and(|e| code_of(&e) == code::REVOKED)
        })
        .await;
    }
    let d1 = n1.device_transport();
    assert_eq!(
        code_of(&refresh(&d1, &current.rt).await.unwrap_err()),
        code::REVOKED
    );

    // Keys: a rotation on node 1 is used by node 3.
    let (_, auto) = n1
        .pt(json!({ "label": "auto", "kind": "fleet", "max_registrations": 10, "approval": "automatic" }))
        .await;
    let op = begin(&d3, &auto, Some("roamer-2"), "roamer-2")
        .await
        .unwrap();
    let rt = wait(&d3, &op, 0).await.unwrap().registration.unwrap().rt;
    assert_eq!(key_id(&rt), 1);
    let v = n1.admin.call(kind::KEYS_ROTATE, json!({})).await.unwrap();
    assert_eq!(v["epoch"], 2);
    eventually("node 3 takes up epoch 2", || async {
        let s = n3.admin.call(kind::STATUS, json!({})).await.unwrap();
        s["engine"]["current_key_epoch"] == 2
    })
    .await;
    let next = refresh(&d3, &rt).await.unwrap();
    assert_eq!(
        key_id(&next.registration.rt),
        2,
        "node 3 mints with epoch 2"
    );
    // Every node reports where it is in the change feed.
    for n in [&n1, &n2, &n3] {
        let s = n.admin.call(kind::STATUS, json!({})).await.unwrap();
        let feed = &s["engine"]["feed"];
        assert_eq!(feed["current"], true, "{s}");
        assert!(feed["position"].as_u64().unwrap() > 0, "{s}");
    }
    n3.shutdown().await;
    n2.shutdown().await;
    n1.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL (TESSERA_TEST_STORE=postgres://…): scripts/test-all.sh runs it"]
async fn a_device_resumes_its_tls_session_on_another_node() {
    let (n1, n2, n3) = three_nodes().await;
    let t = n1.device_transport();
    assert!(introspect(&t, "tsrt_x").await.is_err());
    for n in [&n2, &n3] {
        t.set_server(n.device_addr).await;
        assert!(introspect(&t, "tsrt_x").await.is_err());
        let s = n.admin.call(kind::STATUS, json!({})).await.unwrap();
        assert_eq!(s["tls_resumed"], 1, "{s}");
    }
    t.close().await;
    n3.shutdown().await;
    n2.shutdown().await;
    n1.shutdown().await;
}

/// A node with another root cannot join: `tessera serve` on a database made with a different
/// root key (here: a data directory without one, where a first start would make one) stops at
/// once with a clear error, and leaves no key behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL (TESSERA_TEST_STORE=postgres://…): scripts/test-all.sh runs it"]
async fn serve_refuses_a_database_made_with_another_root() {
    let n1 = TestServer::start().await;
    let url = n1
        .store_url
        .clone()
        .expect("needs TESSERA_TEST_STORE=postgres://…");
    let dir = tempfile::tempdir().unwrap(); // a new root key is made here
    let mut child = std::process::Command::new(crate::crash::tessera_bin())
        .args(tessera_server::server::banner::EPHEMERAL_SERVE)
        .args(["--metrics-addr", "off", "--store", &url])
        .arg("--data-dir")
        .arg(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("tessera serve did not stop");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!status.success());
    assert!(
        err.contains("root key does not match this store's"),
        "{err}"
    );
    assert!(!err.contains(&url), "the store URL is not repeated: {err}");
    assert!(err.contains("copy that deployment's root.key"), "{err}");
    for left in ["root.key", "root.key.new"] {
        assert!(!dir.path().join(left).exists(), "{left} left behind");
    }
    n1.shutdown().await;
}

/// The PostgreSQL server the suite runs on, restarted (`fast` or `immediate`) by the script
/// that started it.
fn restart_postgres(mode: &str) {
    let dir = std::env::var("TESSERA_TEST_PG_DIR").expect("TESSERA_TEST_PG_DIR");
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/postgres-env.sh");
    let status = std::process::Command::new("bash")
        .arg(script)
        .args([dir.as_str(), "restart", mode])
        .status()
        .expect("run postgres-env.sh");
    assert!(status.success(), "PostgreSQL restart ({mode}) failed");
}

/// Crash safety across nodes: three `tessera serve` processes on one database; a mixed
/// workload runs on all of them (each device on one node, approved and revoked through
/// another), and at a random moment a random node is killed with SIGKILL (or, every fifth
/// cycle, PostgreSQL itself is restarted: fast and immediate shutdown in turn). After each
/// fault every acknowledged change is there and every node refuses every revoked RT.
/// `TESSERA_CRASH_CYCLES` cycles (20 by default). Restarts the suite's PostgreSQL server, so
/// it runs alone (`--test-threads=1`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL (TESSERA_TEST_STORE=postgres://…, TESSERA_TEST_PG_DIR) and restarts it: scripts/test-all.sh runs it alone"]
async fn kill_9_of_a_node_or_a_database_restart_loses_nothing_acknowledged() {
    use std::sync::{Arc, Mutex};

    use crate::crash::{
        connect_admin, cycles, spawn_server_with, verify, workload, Ack, OnError, Proc, CONFIG,
        SAMPLE,
    };
    use tessera_client::AdminClient;

    let dirs = [
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    ];
    let url = crate::common::postgres_url(dirs[0].path())
        .await
        .expect("needs TESSERA_TEST_STORE=postgres://…");
    let toml = format!("{CONFIG}[store]\nurl = \"{url}\"\n");
    let mut procs: Vec<Proc> = vec![spawn_server_with(dirs[0].path(), &toml)];
    for d in &dirs[1..] {
        let root = tessera_engine::keys::ROOT_KEY_FILE;
        std::fs::copy(dirs[0].path().join(root), d.path().join(root)).unwrap();
        std::fs::create_dir_all(d.path().join("tls")).unwrap();
        for e in std::fs::read_dir(dirs[0].path().join("tls")).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), d.path().join("tls").join(e.file_name())).unwrap();
        }
        procs.push(spawn_server_with(d.path(), &toml));
    }
    let (trust, first_admin) = connect_admin(dirs[0].path(), &procs[0]);
    let token = first_admin_token(dirs[0].path());
    let admin_of =
        |p: &Proc| Arc::new(AdminClient::new(p.admin, "localhost", &trust, token.clone()).unwrap());
    let pt = first_admin
        .create_pt(&crate::common::pt_args(json!({ "label": "nodes-crash", "kind": "fleet", "max_registrations": 1_000_000, "approval": "manual" })))
        .await
        .unwrap()
        .token
        .clone();
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut all_acks: Vec<Ack> = Vec::new();
    let mut previous = 0;
    let mut kills = [0usize; 3];
    let mut restarts = 0;
    for cycle in 0..cycles() {
        let admins: Vec<_> = procs.iter().map(admin_of).collect();
        // Every node: the previous cycle's acknowledgements and a sample of the rest.
        let mut check: Vec<&Ack> = all_acks[previous..].iter().collect();
        for _ in 0..SAMPLE.min(previous) {
            check.push(&all_acks[(next() % previous as u64) as usize]);
        }
        for (admin, p) in admins.iter().zip(&procs) {
            verify(admin, &trust, p.device, &check).await;
        }
        previous = all_acks.len();

        let kill_after = 5 + (next() % 60) as usize;
        let acks: Arc<Mutex<Vec<Ack>>> = Arc::default();
        let mut tasks = tokio::task::JoinSet::new();
        for w in 0..3 {
            let (acks, trust, pt) = (acks.clone(), trust.clone(), pt.clone());
            // Devices on node w; their approvals and revocations on the next node.
            let device_addr = procs[w].device;
            let admin = admins[(w + 1) % 3].clone();
            tasks.spawn(workload(
                device_addr,
                trust,
                admin,
                pt,
                format!("n{cycle}-w{w}"),
                acks,
                OnError::Continue,
            ));
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while acks.lock().unwrap().len() < kill_after {
            assert!(Instant::now() < deadline, "cycle {cycle}: no progress");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        if cycle % 5 == 4 {
            let mode = if restarts % 2 == 0 {
                "fast"
            } else {
                "immediate"
            };
            restart_postgres(mode);
            restarts += 1;
            tasks.abort_all();
        } else {
            let victim = (next() % 3) as usize;
            procs[victim].child.kill().expect("SIGKILL");
            let _ = procs[victim].child.wait();
            tasks.abort_all();
            kills[victim] += 1;
            procs[victim] = spawn_server_with(dirs[victim].path(), &toml);
        }
        while tasks.join_next().await.is_some() {}
        let acks = acks.lock().unwrap().clone();
        assert!(acks.len() >= kill_after);
        all_acks.extend(acks);
    }
    // Every acknowledgement of the run, on every node.
    let all: Vec<&Ack> = all_acks.iter().collect();
    for p in &procs {
        verify(&admin_of(p), &trust, p.device, &all).await;
    }
    assert!(all_acks.iter().any(|a| matches!(a, Ack::Revoked { .. })));
    assert!(cycles() < 5 || restarts > 0);
    eprintln!("nodes crash test: {} cycles, kills per node {kills:?}, PostgreSQL restarts {restarts}, {} acknowledgements", cycles(), all_acks.len());
}

fn first_admin_token(dir: &std::path::Path) -> tessera_proto::AdminToken {
    let t = std::fs::read_to_string(dir.join("admin.token")).unwrap();
    tessera_proto::AdminToken::new(t.trim().to_owned())
}
