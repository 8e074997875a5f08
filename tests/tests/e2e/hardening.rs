//! The security review's rules as seen through the server (docs/reliability.md, "Hardening
//! rules").

use serde_json::json;
use tessera_proto::wire::kind;

use crate::common::{begin, manual, wait, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_actions_and_collections_record_their_source_address() {
    let ts = TestServer::start().await;
    let t = ts.device_transport();
    let (pt_id, pt) = ts.pt(manual()).await;
    let op = begin(&t, &pt, Some("src-1"), "src-one-instance-nonce")
        .await
        .unwrap();
    ts.admin
        .approve(&op.operation_id, None, None)
        .await
        .unwrap();
    wait(&t, &op, 0).await.unwrap();
    let events = ts
        .admin
        .call(kind::AUDIT, json!({ "limit": 1000 }))
        .await
        .unwrap();
    let events = events["events"].as_array().unwrap();
    let source_of = |action: &str, subject: &str| {
        events
            .iter()
            .find(|e| e["action"] == action && e["subject"] == subject)
            .unwrap_or_else(|| panic!("no {action} event"))["source"]
            .clone()
    };
    assert_eq!(source_of("pt.create", &pt_id), "127.0.0.1");
    assert_eq!(
        source_of("operation.approve", &op.operation_id),
        "127.0.0.1"
    );
    assert_eq!(
        source_of("operation.collect", &op.operation_id),
        "127.0.0.1"
    );
    ts.shutdown().await;
}

/// A connected pair of quinn connections on loopback (the server side first), with the
/// server's own TLS material.
async fn connection_pair(dir: &std::path::Path) -> (quinn::Connection, quinn::Connection) {
    use tessera_server::server::tls;
    let files = tls::ensure_certificates(dir, &["localhost".into()], true).unwrap();
    let alpn = b"registry-test";
    let server_tls =
        tls::server_config(tls::ServerCert::load(&files).unwrap(), alpn, None).unwrap();
    let server_cfg = quinn::ServerConfig::with_crypto(std::sync::Arc::new(
        quinn::crypto::rustls::QuicServerConfig::try_from(server_tls).unwrap(),
    ));
    let server = quinn::Endpoint::server(server_cfg, "127.0.0.1:0".parse().unwrap()).unwrap();
    let trust = tessera_client::Trust::ca_file(&files.ca_cert).unwrap();
    let client_tls = tessera_client::transport::client_tls(&trust, alpn).unwrap();
    let mut client = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    client.set_default_client_config(quinn::ClientConfig::new(std::sync::Arc::new(
        quinn::crypto::rustls::QuicClientConfig::try_from(client_tls).unwrap(),
    )));
    let addr = server.local_addr().unwrap();
    let (accepted, connected) = tokio::join!(
        async { server.accept().await.unwrap().await.unwrap() },
        async { client.connect(addr, "localhost").unwrap().await.unwrap() }
    );
    (accepted, connected)
}

/// Rule: a connection attached to a registration after its revocation committed is closed
/// (the window between a request's commit and the attach of its connection).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attach_after_the_revocation_closes_the_connection() {
    use tessera_engine::RegistrationId;
    use tessera_server::server::registry::{ConnState, Connections};
    let dir = tempfile::tempdir().unwrap();
    let (server_side, client_side) = connection_pair(dir.path()).await;
    let connections = Connections::default();
    let state = ConnState::new(server_side);
    // The revocation already ran (and found nothing to close); the attach comes afterwards.
    connections.attach(RegistrationId::new(7), &state, |_| false);
    let closed = tokio::time::timeout(std::time::Duration::from_secs(10), client_side.closed())
        .await
        .expect("the connection was left open");
    assert!(
        matches!(closed, quinn::ConnectionError::ApplicationClosed(ref c) if c.error_code == quinn::VarInt::from_u32(tessera_server::server::CLOSE_REVOKED)),
        "{closed:?}"
    );
    assert_eq!(connections.tracked_registrations(), 0);

    // A live registration stays attached.
    let (server_side, _client_side) = connection_pair(dir.path()).await;
    let state = ConnState::new(server_side);
    connections.attach(RegistrationId::new(8), &state, |_| true);
    assert_eq!(connections.tracked_registrations(), 1);
    assert!(state.conn.close_reason().is_none());
}

/// Rule: the leak policy and the code-attempt limit are set in the server's configuration, and
/// the automatic revocation works through the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_configured_leak_policy_revokes_a_guessed_pt() {
    use crate::common::code_of;
    use tessera_proto::wire::code;
    let ts = TestServer::start_with(|c| {
        c.engine.max_code_attempts = 2;
        c.engine.leak_policy.code_guessing = tessera_engine::LeakResponse::RevokePt;
    })
    .await;
    let t = ts.device_transport();
    let (_, pt) = ts
        .pt(json!({ "label": "guessed", "approval": "manual_with_code" }))
        .await;
    let op = begin(&t, &pt, Some("g-1"), "guess-instance-nonce-1")
        .await
        .unwrap();
    let shown = op.verification_code.clone().unwrap();
    let wrong = if shown == "0000-0000" {
        "1111-1111"
    } else {
        "0000-0000"
    };
    let first = ts
        .admin
        .approve(&op.operation_id, Some(wrong), None)
        .await
        .unwrap_err();
    assert_eq!(code_of(&first), code::WRONG_CODE);
    let second = ts
        .admin
        .approve(&op.operation_id, Some(wrong), None)
        .await
        .unwrap_err();
    assert_eq!(code_of(&second), code::CODE_ATTEMPTS_EXHAUSTED);
    let again = begin(&t, &pt, Some("g-1"), "guess-instance-nonce-2")
        .await
        .unwrap_err();
    assert_eq!(code_of(&again), code::REVOKED);
    ts.shutdown().await;
}

/// Hooks that keep what the device saves in one slot, as flash would.
#[derive(Clone, Default)]
struct Flash(std::sync::Arc<std::sync::Mutex<Option<String>>>);

impl tessera_client::device::DeviceHooks for Flash {
    fn load(&self) -> Option<String> {
        self.0.lock().unwrap().clone()
    }
    fn save(&self, stored: &str) {
        *self.0.lock().unwrap() = Some(stored.to_owned());
    }
}

/// Rule: the device SDK keeps its random instance nonce and its pending operation through the
/// persistence hook, so a device that reboots mid-provisioning resumes its operation instead
/// of opening a parallel one; and a revoked RT is cleared from storage, so a reboot does not
/// bring it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebooted_device_resumes_its_operation_and_forgets_a_revoked_rt() {
    use std::time::Duration;
    use tessera_client::device::DeviceConfig;
    use tessera_client::DeviceClient;
    let ts = TestServer::start().await;
    let (_, pt) = ts.pt(manual()).await;
    let flash = Flash::default();
    let boot = |flash: &Flash| {
        let mut cfg = DeviceConfig::new(
            ts.device_addr,
            "localhost",
            ts.trust.clone(),
            pt.clone().into(),
        );
        cfg.device_id = Some("reboot-1".into());
        DeviceClient::new(cfg, Box::new(flash.clone())).unwrap()
    };
    let first = boot(&flash);
    assert!(first
        .ensure_registered(Duration::from_millis(300))
        .await
        .is_err());
    let op = first.pending_operation().expect("waiting on an operation");
    first.close().await;
    drop(first);
    let stored: serde_json::Value =
        serde_json::from_str(flash.0.lock().unwrap().as_deref().unwrap()).unwrap();
    assert_eq!(stored["pending"]["operation_id"], op);
    assert_eq!(stored["instance_nonce"].as_str().unwrap().len(), 32);

    // After the reboot the device waits on the same operation; no second one is opened.
    let second = boot(&flash);
    assert_eq!(second.pending_operation().as_deref(), Some(op.as_str()));
    let waiting = tokio::spawn(async move {
        let r = second.ensure_registered(Duration::from_secs(30)).await;
        (second, r)
    });
    let pending = loop {
        let p = ts.admin.pending_operations().await.unwrap();
        if !p.is_empty() {
            break p;
        }
    };
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].id.to_string(), op);
    assert!(!pending[0].conflict);
    ts.admin.approve(&op, None, None).await.unwrap();
    let (second, reg) = waiting.await.unwrap();
    let reg = reg.unwrap();

    // Revoked: the next refresh clears the stored registration.
    ts.admin
        .call(
            kind::DEVICE_REVOKE,
            json!({ "registration_id": reg.registration_id, "reason": "stolen" }),
        )
        .await
        .unwrap();
    assert!(second.refresh().await.is_err());
    second.close().await;
    let stored: serde_json::Value =
        serde_json::from_str(flash.0.lock().unwrap().as_deref().unwrap()).unwrap();
    assert!(stored.get("rt").is_none(), "{stored}");
    let third = boot(&flash);
    assert!(third.current().is_none());
    third.close().await;
    ts.shutdown().await;
}

/// Rule: WAIT and INTROSPECT are limited per source address and admin requests per token; each
/// limit answers error 30 with a retry hint and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_introspect_and_admin_requests_are_rate_limited() {
    use crate::common::{code_of, introspect};
    use tessera_proto::wire::code;
    let ts = TestServer::start_with(|c| {
        c.wait_burst = 2;
        c.wait_per_minute = 1;
        c.introspect_burst = 2;
        c.introspect_per_minute = 1;
        c.admin_burst = 4;
        c.admin_per_minute = 1;
    })
    .await;
    let t = ts.device_transport();
    let (_, pt) = ts
        .pt(json!({ "label": "limits", "approval": "automatic" }))
        .await;
    let op = begin(&t, &pt, Some("lim-1"), "limits-instance-nonce")
        .await
        .unwrap();
    let rt = wait(&t, &op, 0).await.unwrap().registration.unwrap().rt;
    wait(&t, &op, 0).await.unwrap();
    let limited = wait(&t, &op, 0).await.unwrap_err();
    assert_eq!(code_of(&limited), code::RATE_LIMITED);
    match &limited {
        tessera_client::ClientError::Server(b) => assert!(b.retry_after_ms.unwrap() > 0),
        other => panic!("{other:?}"),
    }

    introspect(&t, &rt).await.unwrap();
    introspect(&t, &rt).await.unwrap();
    assert_eq!(
        code_of(&introspect(&t, &rt).await.unwrap_err()),
        code::RATE_LIMITED
    );

    // The PT creation above was the token's first admin request.
    for _ in 0..3 {
        ts.admin.call(kind::STATUS, json!({})).await.unwrap();
    }
    let e = ts
        .admin
        .create_pt(&crate::common::pt_args(json!({ "label": "one too many" })))
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), code::RATE_LIMITED);
    // Nothing was created: one minute later the list holds only the first PT.
    ts.clock.advance(std::time::Duration::from_secs(60));
    let pts = ts.admin.call(kind::PT_LIST, json!({})).await.unwrap();
    assert_eq!(pts["pts"].as_array().unwrap().len(), 1);
    ts.shutdown().await;
}

/// The buffers that carry RTs and secrets over the wire are wiped when dropped: the client's
/// answer body is `Zeroizing` (checked at compile time, as `engine/tests/secret_hygiene.rs`
/// does for the secret types), and an answer that carried an RT leaves it only there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_carrying_secrets_arrive_in_wiping_buffers() {
    fn wipes<T: zeroize::ZeroizeOnDrop>(_: &T) {}
    let ts = TestServer::start().await;
    let t = ts.device_transport();
    let (_, pt) = ts
        .pt(json!({ "label": "wipe", "approval": "automatic" }))
        .await;
    let op = begin(&t, &pt, Some("wipe-1"), "wipe-instance-nonce")
        .await
        .unwrap();
    let body = serde_json::to_vec(&json!({
        "operation_id": op.operation_id, "secret": op.secret, "timeout_ms": 0
    }))
    .unwrap();
    let answer = t
        .request_streaming(kind::WAIT, &body, std::time::Duration::ZERO, |_| {})
        .await
        .unwrap();
    wipes(&answer.body);
    let text = String::from_utf8_lossy(&answer.body).into_owned();
    assert!(text.contains("tsrt_"), "the answer carried the RT");
    ts.shutdown().await;
}
