//! Provisioning, approval, refresh and revocation flows over QUIC.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tessera_client::device::{DeviceConfig, DeviceHooks};
use tessera_client::DeviceClient;
use tessera_proto::wire::{code, kind};

use crate::common::{begin, code_of, introspect, manual, refresh, wait, TestServer};

struct Hooks {
    codes: tokio::sync::mpsc::UnboundedSender<String>,
    saved: Arc<Mutex<Vec<String>>>,
}

impl DeviceHooks for Hooks {
    fn show_code(&self, code: &str) {
        let _ = self.codes.send(code.to_owned());
    }
    fn save(&self, stored: &str) {
        self.saved.lock().unwrap().push(stored.to_owned());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_approval_with_verification_code_through_the_device_client() {
    let ts = TestServer::start().await;
    let (_, pt) = ts
        .pt(json!({ "label": "with code", "approval": "manual_with_code" }))
        .await;
    let (tx, mut codes) = tokio::sync::mpsc::unbounded_channel();
    let saved = Arc::new(Mutex::new(Vec::new()));
    let mut cfg = DeviceConfig::new(ts.device_addr, "localhost", ts.trust.clone(), pt.into());
    cfg.device_id = Some("valve-7".into());
    let device = Arc::new(
        DeviceClient::new(
            cfg,
            Box::new(Hooks {
                codes: tx,
                saved: saved.clone(),
            }),
        )
        .unwrap(),
    );
    let d = device.clone();
    let task = tokio::spawn(async move { d.ensure_registered(Duration::from_secs(60)).await });

    // The technician reads the code off the device's display and approves.
    let shown = codes.recv().await.expect("device showed a code");
    let pending = ts.admin.pending_operations().await.unwrap();
    assert_eq!(pending.len(), 1);
    let op = &pending[0].id.to_string();
    let wrong = if shown == "0000-0000" {
        "1111-1111"
    } else {
        "0000-0000"
    };
    let e = ts.admin.approve(op, Some(wrong), None).await.unwrap_err();
    assert_eq!(code_of(&e), code::WRONG_CODE);
    assert_eq!(e.clone(), e);
    ts.admin
        .approve(op, Some(&shown.to_lowercase()), None)
        .await
        .unwrap();

    let reg = task.await.unwrap().expect("registered");
    assert_eq!(reg.device_id, "valve-7");
    assert_eq!(reg.generation, 1);
    {
        let saved = saved.lock().unwrap();
        let docs: Vec<serde_json::Value> = saved
            .iter()
            .map(|s| serde_json::from_str(s).unwrap())
            .collect();
        assert_eq!(docs.len(), 2, "the pending operation, then the RT");
        assert_eq!(docs[0]["pending"]["operation_id"], op.as_str());
        assert_eq!(
            docs[1]["rt"], reg.rt,
            "the RT was persisted through the hook"
        );
        assert!(docs[1].get("pending").is_none());
    }
    let t = ts.device_transport();
    let i = introspect(&t, &reg.rt).await.unwrap();
    assert_eq!(i["device_id"], "valve-7");
    assert_eq!(i["registration_id"], reg.registration_id);

    // A second call reuses the stored RT; an explicit refresh rotates it.
    assert_eq!(
        device
            .ensure_registered(Duration::from_secs(5))
            .await
            .unwrap()
            .rt,
        reg.rt
    );
    let next = device.refresh().await.unwrap();
    assert_eq!(next.generation, 2);
    assert!(device.next_refresh_at().is_some());
    assert_eq!(
        code_of(&introspect(&t, &reg.rt).await.unwrap_err()),
        code::SUPERSEDED
    );
    device.close().await;
    ts.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_without_code_delivers_only_to_the_secret_holder() {
    let ts = TestServer::start().await;
    let (_, pt) = ts.pt(manual()).await;
    let t = ts.device_transport();
    let op = begin(&t, &pt, Some("pump-1"), "n1").await.unwrap();
    assert_eq!(op.state, "pending");
    assert!(op.verification_code.is_none());
    assert_eq!(wait(&t, &op, 0).await.unwrap().state, "pending");
    let mut forged = op.clone();
    forged.secret = begin(&t, &ts.pt(manual()).await.1, None, "x")
        .await
        .unwrap()
        .secret;
    assert_eq!(
        code_of(&wait(&t, &forged, 0).await.unwrap_err()),
        code::UNAUTHENTICATED
    );

    // A long poll returns as soon as the technician approves.
    let t2 = ts.device_transport();
    let op2 = op.clone();
    let poll = tokio::spawn(async move { wait(&t2, &op2, 20_000).await });
    ts.admin
        .approve(&op.operation_id, None, None)
        .await
        .unwrap();
    let got = poll.await.unwrap().unwrap();
    assert_eq!(got.state, "provisioned");
    let reg = got.registration.unwrap();
    assert_eq!(reg.device_id, "pump-1");
    assert_eq!(
        code_of(&wait(&t, &forged, 0).await.unwrap_err()),
        code::UNAUTHENTICATED
    );
    ts.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automatic_policy_and_attribute_rule() {
    let ts = TestServer::start().await;
    let t = ts.device_transport();
    let (_, auto) = ts.pt(json!({ "label": "dev", "kind": "fleet", "max_registrations": 10, "approval": "automatic" })).await;
    let op = begin(&t, &auto, None, "a").await.unwrap();
    assert_eq!(op.state, "approved");
    assert_eq!(wait(&t, &op, 0).await.unwrap().state, "provisioned");

    let (_, ruled) = ts
        .pt(json!({ "label": "rule", "kind": "fleet", "max_registrations": 10, "approval": "rule", "rule": "model=TX-7;serial^=SN26" }))
        .await;
    let mut attrs = std::collections::BTreeMap::new();
    attrs.insert("model".to_string(), "TX-7".to_string());
    attrs.insert("serial".to_string(), "SN26-1".to_string());
    let req = |attrs: std::collections::BTreeMap<String, String>, nonce: &str| {
        tessera_proto::wire::messages::BeginReq {
            pt: ruled.clone(),
            device_id: Some(format!("tx-{nonce}")),
            attributes: attrs,
            instance_nonce: crate::common::instance_nonce(nonce),
        }
    };
    let r: tessera_proto::wire::messages::BeginResp = t
        .call(kind::BEGIN, &req(attrs.clone(), "1"), Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(r.state, "approved");
    attrs.insert("serial".to_string(), "SN25-1".to_string());
    let r: tessera_proto::wire::messages::BeginResp = t
        .call(kind::BEGIN, &req(attrs, "2"), Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(r.state, "pending");
    ts.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_operations_are_flagged_and_settled_by_one_approval() {
    let ts = TestServer::start().await;
    let (_, pt) = ts.pt(manual()).await;
    let t = ts.device_transport();
    let a = begin(&t, &pt, Some("gw"), "instance-a").await.unwrap();
    let again = begin(&t, &pt, Some("gw"), "instance-a").await.unwrap();
    assert!(again.resumed);
    assert_eq!(again.operation_id, a.operation_id);
    let b = begin(&t, &pt, Some("gw"), "instance-b").await.unwrap();
    let pending = ts.admin.pending_operations().await.unwrap();
    assert_eq!(pending.len(), 2);
    assert!(pending.iter().all(|o| o.conflict));
    let leaks = ts.admin.call(kind::LEAKS, json!({})).await.unwrap();
    assert!(leaks["signals"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["kind"] == "parallel_operations"));
    ts.admin.approve(&b.operation_id, None, None).await.unwrap();
    assert_eq!(wait(&t, &a, 0).await.unwrap().state, "cancelled");
    assert_eq!(wait(&t, &b, 0).await.unwrap().state, "provisioned");
    ts.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_expire_and_code_guessing_is_limited() {
    let ts = TestServer::start().await;
    let t = ts.device_transport();
    let (_, pt) = ts.pt(manual()).await;
    let op = begin(&t, &pt, None, "n").await.unwrap();
    ts.clock.advance(Duration::from_secs(15 * 60));
    assert_eq!(wait(&t, &op, 0).await.unwrap().state, "expired");
    assert_eq!(
        code_of(
            &ts.admin
                .approve(&op.operation_id, None, None)
                .await
                .unwrap_err()
        ),
        code::OPERATION_CLOSED
    );

    let (_, coded) = ts
        .pt(json!({ "label": "c", "approval": "manual_with_code" }))
        .await;
    let op = begin(&t, &coded, None, "m").await.unwrap();
    let right = op.verification_code.clone().unwrap();
    let wrong = if right == "0000-0000" {
        "1111-1111"
    } else {
        "0000-0000"
    };
    for remaining in (1..5).rev() {
        let e = ts
            .admin
            .approve(&op.operation_id, Some(wrong), None)
            .await
            .unwrap_err();
        match e {
            tessera_client::ClientError::Server(b) => {
                assert_eq!(b.code, code::WRONG_CODE);
                assert_eq!(b.remaining_attempts, Some(remaining));
            }
            other => panic!("{other:?}"),
        }
    }
    let e = ts
        .admin
        .approve(&op.operation_id, Some(wrong), None)
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), code::CODE_ATTEMPTS_EXHAUSTED);
    assert_eq!(wait(&t, &op, 0).await.unwrap().state, "rejected");
    assert_eq!(
        code_of(
            &ts.admin
                .approve(&op.operation_id, Some(&right), None)
                .await
                .unwrap_err()
        ),
        code::OPERATION_CLOSED
    );
    ts.shutdown().await;
}

async fn provisioned_rt(
    ts: &TestServer,
    t: &tessera_client::Transport,
    device: &str,
) -> tessera_proto::wire::messages::RtBody {
    let (_, pt) = ts.pt(json!({ "label": "auto", "kind": "fleet", "max_registrations": 100, "approval": "automatic" })).await;
    let op = begin(t, &pt, Some(device), device).await.unwrap();
    wait(t, &op, 0).await.unwrap().registration.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_retry_gets_the_same_successor_and_reuse_revokes() {
    let ts = TestServer::start().await;
    let t = ts.device_transport();
    let g1 = provisioned_rt(&ts, &t, "meter-1").await;
    let g2 = refresh(&t, &g1.rt).await.unwrap();
    assert!(!g2.retried);
    assert_eq!(g2.registration.generation, 2);
    // The response was "lost": the device retries with generation 1.
    let again = refresh(&t, &g1.rt).await.unwrap();
    assert!(again.retried);
    assert_eq!(again.registration.rt, g2.registration.rt);
    let g3 = refresh(&t, &g2.registration.rt).await.unwrap();
    assert_eq!(g3.registration.generation, 3);
    // Generation 1 now is reuse: the family dies.
    assert_eq!(
        code_of(&refresh(&t, &g1.rt).await.unwrap_err()),
        code::ROTATION_REUSE
    );
    assert_eq!(
        code_of(&introspect(&t, &g3.registration.rt).await.unwrap_err()),
        code::REVOKED
    );
    let leaks = ts.admin.call(kind::LEAKS, json!({})).await.unwrap();
    assert!(leaks["signals"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["kind"] == "rotation_reuse"));
    ts.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pt_revocation_cascades() {
    let ts = TestServer::start().await;
    let t = ts.device_transport();
    let (pt_id, pt) = ts.pt(json!({ "label": "fleet", "kind": "fleet", "max_registrations": 10, "approval": "automatic" })).await;
    let mut rts = Vec::new();
    for d in ["a", "b"] {
        let op = begin(&t, &pt, Some(d), d).await.unwrap();
        rts.push(wait(&t, &op, 0).await.unwrap().registration.unwrap().rt);
    }
    let v = ts
        .admin
        .revoke_pt(&pt_id, "firmware image leaked")
        .await
        .unwrap();
    assert_eq!(v.registrations_revoked, 2);
    for rt in &rts {
        assert_eq!(
            code_of(&introspect(&t, rt).await.unwrap_err()),
            code::REVOKED
        );
    }
    assert_eq!(
        code_of(&begin(&t, &pt, Some("c"), "c").await.unwrap_err()),
        code::REVOKED
    );
    ts.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_devices_connection_is_closed_and_its_next_request_refused() {
    let ts = TestServer::start().await;
    let t = ts.device_transport();
    let reg = provisioned_rt(&ts, &t, "stolen").await;
    let r = refresh(&t, &reg.rt).await.unwrap();
    let conn = t.connection().await.unwrap();
    ts.admin
        .revoke_registration(r.registration.registration_id, "device stolen")
        .await
        .unwrap();
    let reason = tokio::time::timeout(Duration::from_secs(5), conn.closed())
        .await
        .expect("connection closed");
    match reason {
        quinn::ConnectionError::ApplicationClosed(c) => {
            assert_eq!(
                c.error_code,
                quinn::VarInt::from_u32(tessera_server::server::CLOSE_REVOKED)
            );
        }
        other => panic!("closed for another reason: {other:?}"),
    }
    assert_eq!(
        code_of(&refresh(&t, &r.registration.rt).await.unwrap_err()),
        code::REVOKED
    );
    ts.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_rotation_and_emergency_retirement_over_the_admin_endpoint() {
    let ts = TestServer::start().await;
    let t = ts.device_transport();
    let old = provisioned_rt(&ts, &t, "rot-1").await;
    let v = ts.admin.call(kind::KEYS_ROTATE, json!({})).await.unwrap();
    assert_eq!(v["epoch"], 2);
    // RTs minted before keep validating; new ones use the new key id.
    introspect(&t, &old.rt).await.unwrap();
    let new = provisioned_rt(&ts, &t, "rot-2").await;
    let parsed = tessera_proto::token::UntrustedRt::parse(new.rt.as_bytes()).unwrap();
    assert_eq!(parsed.untrusted_claims().key_id, 2);
    let epochs = ts.admin.call(kind::KEYS_LIST, json!({})).await.unwrap();
    let epochs = epochs["epochs"].as_array().unwrap();
    assert!(epochs[0]["rt_keep_until"].is_u64() && epochs[1]["current"] == true);
    // Emergency retirement of epoch 1: its RTs stop at once; the current epoch cannot go.
    ts.admin
        .call(kind::KEYS_RETIRE, json!({ "epoch": 1 }))
        .await
        .unwrap();
    assert_eq!(
        code_of(&introspect(&t, &old.rt).await.unwrap_err()),
        code::UNAUTHENTICATED
    );
    introspect(&t, &new.rt).await.unwrap();
    let e = ts
        .admin
        .call(kind::KEYS_RETIRE, json!({ "epoch": 2 }))
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), code::INVALID_INPUT);
    let audit = ts
        .admin
        .call(kind::AUDIT, json!({ "limit": 1000 }))
        .await
        .unwrap();
    let actions: Vec<&str> = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert!(actions.contains(&"keys.rotate") && actions.contains(&"keys.retire"));
    ts.shutdown().await;
}
