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
