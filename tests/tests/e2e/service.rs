//! Service tokens (a broker's validator): introspect RTs and follow revocations over the admin
//! endpoint, and nothing else.

use std::time::Duration;

use serde_json::json;
use tessera_client::AdminClient;
use tessera_proto::wire::{code, kind};

use crate::common::{begin, code_of, wait, TestServer};

async fn service(ts: &TestServer) -> AdminClient {
    ts.client_with_role("broker-1", "service").await
}

/// Wait (10 s at most) until one REVOCATIONS long poll is waiting: the server counts it in
/// STATUS.
async fn one_poll_waits(ts: &TestServer) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while ts.admin.call(kind::STATUS, json!({})).await.unwrap()["revocation_polls"] != 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the long poll never started waiting"
        );
        tokio::task::yield_now().await;
    }
}

/// A provisioned device's RT and registration id.
async fn device(ts: &TestServer, pt: &str, id: &str) -> (String, u64) {
    let t = ts.device_transport();
    let op = begin(&t, pt, Some(id), id).await.unwrap();
    let r = wait(&t, &op, 0).await.unwrap().registration.unwrap();
    (r.rt, r.registration_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_token_introspects_follows_revocations_and_does_nothing_else() {
    let ts = TestServer::start().await;
    let svc = service(&ts).await;
    let (pt_id, pt) = ts
        .pt(json!({ "label": "svc", "kind": "fleet", "max_registrations": 10, "approval": "automatic" }))
        .await;
    let (rt_a, a) = device(&ts, &pt, "pump-a").await;
    let (_, b) = device(&ts, &pt, "pump-b").await;

    // Introspection over the admin endpoint, as a service.
    let i = svc
        .call(kind::INTROSPECT, json!({ "rt": rt_a }))
        .await
        .unwrap();
    assert_eq!(
        (i["device_id"].as_str(), i["registration_id"].as_u64()),
        (Some("pump-a"), Some(a))
    );

    // Following revocations: nothing yet, then exactly what was revoked, in order.
    let (none, start) = svc.revocations(None, Duration::ZERO).await.unwrap();
    assert!(none.is_empty());
    ts.admin.revoke_registration(a, "stolen").await.unwrap();
    ts.admin.revoke_pt(&pt_id, "line closed").await.unwrap();
    let (ids, next) = svc.revocations(Some(start), Duration::ZERO).await.unwrap();
    assert_eq!(ids, vec![a, b]);
    assert_eq!(
        svc.revocations(Some(next), Duration::ZERO).await.unwrap(),
        (vec![], next)
    );
    let refused = svc
        .call(kind::INTROSPECT, json!({ "rt": rt_a }))
        .await
        .unwrap_err();
    assert_eq!(code_of(&refused), code::REVOKED);

    // Anything else is forbidden to a service token, and changes nothing.
    for k in [
        kind::STATUS,
        kind::PT_LIST,
        kind::OP_LIST,
        kind::DEVICE_LIST,
        kind::AUDIT,
    ] {
        let e = svc.call(k, json!({})).await.unwrap_err();
        assert_eq!(code_of(&e), code::FORBIDDEN, "kind {k:#x}");
    }
    let e = svc
        .call(kind::PT_CREATE, json!({ "label": "x" }))
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), code::FORBIDDEN);
    let pts = ts.admin.call(kind::PT_LIST, json!({})).await.unwrap();
    assert_eq!(
        pts["pts"].as_array().unwrap().len(),
        0,
        "revoked PTs are not listed"
    );

    // A technician may not follow revocations; bad arguments are refused.
    let tech = ts.client_with_role("t", "technician").await;
    let e = tech.revocations(None, Duration::ZERO).await.unwrap_err();
    assert_eq!(code_of(&e), code::FORBIDDEN);
    for args in [
        json!({ "limit": 0 }),
        json!({ "limit": 4097 }),
        json!({ "wait_ms": 30_001 }),
        json!({ "x": 1 }),
    ] {
        let e = svc.call(kind::REVOCATIONS, args.clone()).await.unwrap_err();
        assert!(
            matches!(code_of(&e), code::INVALID_INPUT | code::MALFORMED),
            "{args}"
        );
    }
    svc.close_now().await;
    tech.close_now().await;
    ts.shutdown().await;
}

/// A long poll on REVOCATIONS answers when a revocation is committed, not at its timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocations_long_poll_wakes_on_the_revocation() {
    let ts = TestServer::start().await;
    let svc = service(&ts).await;
    let (_, pt) = ts
        .pt(json!({ "label": "svc", "kind": "fleet", "max_registrations": 10, "approval": "automatic" }))
        .await;
    let (_, a) = device(&ts, &pt, "pump-a").await;
    let (_, start) = svc.revocations(None, Duration::ZERO).await.unwrap();
    let poll = tokio::spawn(async move {
        let r = svc.revocations(Some(start), Duration::from_secs(30)).await;
        svc.close_now().await;
        r
    });
    // Once the poll is waiting, the revocation wakes it.
    one_poll_waits(&ts).await;
    ts.admin
        .call(
            kind::DEVICE_BLOCK,
            json!({ "device_id": "pump-a", "reason": "lost" }),
        )
        .await
        .unwrap();
    let (ids, next) = tokio::time::timeout(Duration::from_secs(20), poll)
        .await
        .expect("the long poll answered well before its 30 s")
        .unwrap()
        .unwrap();
    assert_eq!(ids, vec![a]);
    assert!(next > start);
    ts.shutdown().await;
}

/// Shutting down answers the long polls waiting on REVOCATIONS (empty, cursor unchanged) instead
/// of leaving them to their timeout: no request outlives the server, and the server's ports are
/// free again at once (a restart on the same addresses binds them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutting_down_answers_the_waiting_revocation_polls() {
    let ts = TestServer::start().await;
    let svc = service(&ts).await;
    let (_, start) = svc.revocations(None, Duration::ZERO).await.unwrap();
    let poll = tokio::spawn(async move {
        let r = svc.revocations(Some(start), Duration::from_secs(30)).await;
        svc.close_now().await;
        r
    });
    one_poll_waits(&ts).await;
    let (device_addr, admin_addr) = (ts.device_addr, ts.admin_addr);
    ts.shutdown().await;
    let (ids, cursor) = tokio::time::timeout(Duration::from_secs(5), poll)
        .await
        .expect("the long poll answered at shutdown, well before its 30 s")
        .unwrap()
        .unwrap();
    assert!(ids.is_empty());
    assert_eq!(cursor, start);
    let dir = tempfile::tempdir().unwrap();
    let mut config = tessera_server::ServerConfig::ephemeral(dir.path().to_owned());
    config.device_addr = device_addr;
    config.admin_addr = admin_addr;
    let again = tessera_server::Server::start(config)
        .await
        .expect("the same addresses bind again");
    again.shutdown(Duration::from_secs(1)).await;
}
