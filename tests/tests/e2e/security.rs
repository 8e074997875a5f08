//! Security properties of the endpoints.

use std::time::Duration;

use serde_json::json;
use tessera_client::transport::Transport;
use tessera_client::AdminClient;
use tessera_proto::wire::{self, code, kind, ErrorBody, ADMIN_ALPN, DEVICE_ALPN};
use tessera_proto::AdminToken;

use crate::common::{begin, code_of, manual, refresh, wait, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_cannot_reach_the_admin_endpoint() {
    let ts = TestServer::start().await;
    // Device ALPN against the admin port: the handshake fails.
    let t = Transport::new(
        ts.admin_addr,
        "localhost",
        &ts.trust,
        DEVICE_ALPN,
        Duration::from_secs(5),
    )
    .unwrap();
    assert!(matches!(
        t.connection().await,
        Err(tessera_client::ClientError::Connection(_))
    ));
    // Admin requests on the device endpoint are unknown there, even with a valid admin token.
    let d = ts.device_transport();
    let req = wire::messages::AdminReq {
        token: ts.admin_token.expose().into(),
        args: json!({ "label": "x" }),
    };
    let e = d
        .call::<_, serde_json::Value>(kind::PT_CREATE, &req, Duration::ZERO)
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), code::UNKNOWN_REQUEST);
    // A PT is not an admin credential.
    let (_, pt) = ts.pt(manual()).await;
    let as_admin =
        AdminClient::new(ts.admin_addr, "localhost", &ts.trust, AdminToken::new(pt)).unwrap();
    assert_eq!(
        code_of(&as_admin.call(kind::STATUS, json!({})).await.unwrap_err()),
        code::TOKEN_FORMAT
    );
    ts.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn technicians_handle_operations_but_cannot_create_pts() {
    let ts = TestServer::start().await;
    let v = ts
        .admin
        .call(
            kind::TOKEN_CREATE,
            json!({ "name": "tom", "role": "technician" }),
        )
        .await
        .unwrap();
    let tech = AdminClient::new(
        ts.admin_addr,
        "localhost",
        &ts.trust,
        AdminToken::new(v["token"].as_str().unwrap().into()),
    )
    .unwrap();
    assert_eq!(
        code_of(
            &tech
                .call(kind::PT_CREATE, json!({ "label": "x" }))
                .await
                .unwrap_err()
        ),
        code::FORBIDDEN
    );
    assert_eq!(
        code_of(&tech.call(kind::KEYS_ROTATE, json!({})).await.unwrap_err()),
        code::FORBIDDEN
    );
    assert_eq!(
        code_of(
            &tech
                .call(kind::DEVICE_BLOCK, json!({ "device_id": "d" }))
                .await
                .unwrap_err()
        ),
        code::FORBIDDEN
    );
    let (_, pt) = ts.pt(manual()).await;
    let op = begin(&ts.device_transport(), &pt, None, "n").await.unwrap();
    tech.approve(&op.operation_id, None, None).await.unwrap();
    let audit = ts
        .admin
        .call(kind::AUDIT, json!({ "limit": 1000 }))
        .await
        .unwrap();
    assert!(audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["action"] == "operation.approve" && e["actor"] == "operator:tom"));
    // A revoked admin token stops working.
    let id = v["admin_token"]["id"].as_str().unwrap();
    ts.admin
        .call(kind::TOKEN_REVOKE, json!({ "id": id }))
        .await
        .unwrap();
    assert_eq!(
        code_of(&tech.call(kind::OP_LIST, json!({})).await.unwrap_err()),
        code::REVOKED
    );
    ts.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_alpn_is_refused() {
    let ts = TestServer::start().await;
    for alpn in [&b"h3"[..], ADMIN_ALPN] {
        let t = Transport::new(
            ts.device_addr,
            "localhost",
            &ts.trust,
            alpn,
            Duration::from_secs(5),
        )
        .unwrap();
        assert!(
            t.connection().await.is_err(),
            "ALPN {alpn:?} accepted on the device endpoint"
        );
    }
    ts.shutdown().await;
}

/// Send raw bytes on one stream and read everything back.
async fn raw(conn: &quinn::Connection, bytes: &[u8], finish: bool) -> Vec<u8> {
    let (mut s, mut r) = conn.open_bi().await.unwrap();
    s.write_all(bytes).await.unwrap();
    if finish {
        s.finish().unwrap();
    }
    r.read_to_end(1 << 20).await.unwrap_or_default()
}

fn error_code(resp: &[u8]) -> u16 {
    let f = wire::decode(resp, 1 << 20).expect("an error frame");
    assert_eq!(f.kind, kind::ERROR);
    serde_json::from_slice::<ErrorBody>(f.body).unwrap().code
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_truncated_and_oversized_frames_get_errors_not_crashes() {
    let ts = TestServer::start().await;
    let t = ts.device_transport();
    let conn = t.connection().await.unwrap();
    let good = wire::encode(
        kind::BEGIN,
        br#"{"pt":"tspt_x","instance_nonce":"0123456789abcdef"}"#,
    );
    let mut bad_version = good.clone();
    bad_version[0] = 9;
    let mut bad_flags = good.clone();
    bad_flags[2] = 1;
    let mut huge = wire::encode(kind::BEGIN, b"{}");
    huge[4..8].copy_from_slice(&(64u32 << 20).to_be_bytes());
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (b"garbage".to_vec(), code::MALFORMED),
        (good[..5].to_vec(), code::MALFORMED),
        (good[..good.len() - 3].to_vec(), code::MALFORMED),
        ([good.clone(), b"xx".to_vec()].concat(), code::MALFORMED),
        (bad_version, code::UNSUPPORTED_VERSION),
        (bad_flags, code::MALFORMED),
        (huge, code::TOO_LARGE),
        (
            wire::encode(kind::BEGIN, &vec![b' '; 20_000]),
            code::TOO_LARGE,
        ),
        (wire::encode(kind::BEGIN, b"{not json"), code::MALFORMED),
        (wire::encode(kind::BEGIN, b"{\"pt\": 5}"), code::MALFORMED),
        (
            wire::encode(kind::BEGIN, &[0xff, 0xfe, 0x80]),
            code::MALFORMED,
        ),
        (
            wire::encode(
                kind::BEGIN,
                br#"{"pt":"x","instance_nonce":"0123456789abcdef","extra":1}"#,
            ),
            code::MALFORMED,
        ),
        (wire::encode(0x7f, b"{}"), code::UNKNOWN_REQUEST),
        (good.clone(), code::TOKEN_FORMAT),
        (
            wire::encode(
                kind::BEGIN,
                br#"{"pt":"x","instance_nonce":"0123456789abcdef","device_id":"bad id"}"#,
            ),
            code::INVALID_INPUT,
        ),
    ];
    for (bytes, want) in cases {
        let resp = raw(&conn, &bytes, true).await;
        assert_eq!(
            error_code(&resp),
            want,
            "for input {:?}",
            String::from_utf8_lossy(&bytes)
        );
    }
    // Still serving.
    let (_, pt) = ts.pt(manual()).await;
    begin(&t, &pt, None, "after").await.unwrap();
    ts.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_trickling_bytes_is_cut_off_by_the_deadline() {
    let ts = TestServer::start_with(|c| c.request_deadline_ms = 300).await;
    let conn = ts.device_transport().connection().await.unwrap();
    let (mut s, mut r) = conn.open_bi().await.unwrap();
    s.write_all(&wire::encode(kind::BEGIN, b"{}")[..3])
        .await
        .unwrap();
    // Never finish: the server answers with a timeout error once its deadline passes.
    let resp = tokio::time::timeout(Duration::from_secs(10), r.read_to_end(1 << 16))
        .await
        .expect("answered")
        .unwrap();
    assert_eq!(error_code(&resp), code::TIMEOUT);
    ts.shutdown().await;
}

fn rss_of(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
        * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stays_bounded_under_many_idle_connections() {
    const N: usize = 500;
    // The real binary in its own process, so the measurement sees only the server.
    let dir = tempfile::tempdir().unwrap();
    let mut proc =
        crate::crash::spawn_server_with(dir.path(), "max_connections_per_source = 1000\n");
    let trust = tessera_client::Trust::ca_file(&dir.path().join("tls/ca.pem")).unwrap();
    let tls = tessera_client::transport::client_tls(&trust, DEVICE_ALPN).unwrap();
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    ep.set_default_client_config(quinn::ClientConfig::new(std::sync::Arc::new(quic)));
    // Warm up the allocator and TLS state first.
    let mut conns = Vec::new();
    for _ in 0..20 {
        conns.push(ep.connect(proc.device, "localhost").unwrap().await.unwrap());
    }
    let before = rss_of(proc.child.id());
    for _ in 0..N - 20 {
        conns.push(ep.connect(proc.device, "localhost").unwrap().await.unwrap());
    }
    let after = rss_of(proc.child.id());
    let per_conn = after.saturating_sub(before) / (N - 20) as u64;
    eprintln!("idle connections: {N}; server RSS {before} -> {after} bytes; {per_conn} bytes per connection");
    assert!(before > 0 && after > 0);
    assert!(per_conn < 64 * 1024, "{per_conn} bytes per idle connection");
    for c in &conns {
        c.close(0u32.into(), b"done");
    }
    proc.child.kill().unwrap();
    let _ = proc.child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_per_source_are_capped() {
    let ts = TestServer::start_with(|c| c.max_connections_per_source = 10).await;
    let tls = tessera_client::transport::client_tls(&ts.trust, DEVICE_ALPN).unwrap();
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    ep.set_default_client_config(quinn::ClientConfig::new(std::sync::Arc::new(quic)));
    let mut ok = Vec::new();
    let mut refused = 0;
    for _ in 0..20 {
        match ep.connect(ts.device_addr, "localhost").unwrap().await {
            Ok(c) => ok.push(c),
            Err(_) => refused += 1,
        }
    }
    assert_eq!(ok.len(), 10);
    assert_eq!(refused, 10);
    for c in &ok {
        c.close(0u32.into(), b"done");
    }
    ts.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unvalidated_clients_get_a_retry_under_load() {
    // A threshold of 0 handshakes means "under load" all the time: every new client must prove
    // its address with a Retry round trip first, and then gets served as usual.
    let ts = TestServer::start_with(|c| c.retry_above_handshakes = 0).await;
    let (_, pt) = ts.pt(manual()).await;
    let t = ts.device_transport();
    begin(&t, &pt, None, "n").await.unwrap();
    assert!(ts.server.as_ref().unwrap().retries_sent() >= 1);
    ts.shutdown().await;
}

/// The registry that lets a revocation close a device's connection forgets each connection when
/// it ends (it once kept every closed connection's state alive: a leak under reconnect churn).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_connections_are_forgotten_by_the_revocation_registry() {
    let s = TestServer::start().await;
    let (_, pt) = s
        .pt(
            json!({ "label": "churn", "kind": "fleet", "max_registrations": 10,
                    "approval": "automatic" }),
        )
        .await;
    let mut transports = Vec::new();
    for i in 0..5 {
        let t = s.device_transport();
        let op = begin(&t, &pt, Some(&format!("churn-{i}")), &format!("n{i}"))
            .await
            .unwrap();
        let reg = wait(&t, &op, 1000).await.unwrap().registration.unwrap();
        refresh(&t, &reg.rt).await.unwrap();
        transports.push(t);
    }
    let server = s.server.as_ref().unwrap();
    assert_eq!(server.tracked_registrations(), 5);
    for t in &transports {
        t.close().await;
    }
    // The server notices each close asynchronously; wait for the condition, bounded.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while server.tracked_registrations() != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} registrations still tracked after their connections closed",
            server.tracked_registrations()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    s.shutdown().await;
}
