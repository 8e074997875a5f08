//! docs/protocol.md against the server, byte for byte: these tests build frames by hand and
//! read the answers raw, without the Rust client, so the document and the server cannot drift
//! apart unnoticed.

use std::time::Duration;

use serde_json::{json, Value};
use tessera_client::transport::Transport;
use tessera_proto::wire::{self, code, kind, ADMIN_ALPN};

use crate::common::{begin, manual, TestServer};

/// Send one frame on a new stream and decode the one answer frame: (kind, body as JSON).
async fn exchange(conn: &quinn::Connection, kind_code: u8, body: &[u8]) -> (u8, Value) {
    let (mut s, mut r) = conn.open_bi().await.unwrap();
    let mut frame = vec![wire::frame::VERSION, kind_code, 0, 0];
    frame.extend_from_slice(&u32::try_from(body.len()).unwrap().to_be_bytes());
    frame.extend_from_slice(body);
    s.write_all(&frame).await.unwrap();
    s.finish().unwrap();
    let resp = r.read_to_end(1 << 20).await.unwrap();
    let f = wire::decode(&resp, 1 << 20).expect("one answer frame");
    (f.kind, serde_json::from_slice(f.body).unwrap())
}

async fn admin_conn(ts: &TestServer) -> quinn::Connection {
    Transport::new(
        ts.admin_addr,
        "localhost",
        &ts.trust,
        ADMIN_ALPN,
        Duration::from_secs(5),
    )
    .unwrap()
    .connection()
    .await
    .unwrap()
}

fn admin_body(ts: &TestServer, args: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({ "token": ts.admin_token.expose(), "args": args })).unwrap()
}

/// "body: one JSON object": an array is not read as positional fields, on either endpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_or_args_that_is_not_an_object_is_malformed() {
    let ts = TestServer::start().await;
    let device = ts.device_transport().connection().await.unwrap();
    for (k, body) in [
        (kind::INTROSPECT, &br#"["tsrt_x"]"#[..]),
        (kind::BEGIN, br#"["tspt_x", null, {}, "0123456789abcdef"]"#),
        (kind::REFRESH, br#"["tsrt_x"]"#),
        (kind::WAIT, br#""op_x""#),
    ] {
        let (got, v) = exchange(&device, k, body).await;
        assert_eq!(
            (got, v["code"].as_u64()),
            (kind::ERROR, Some(1)),
            "kind {k:#x}"
        );
    }
    let admin = admin_conn(&ts).await;
    let (got, v) = exchange(&admin, kind::PT_SHOW, &admin_body(&ts, json!(["pt_x"]))).await;
    assert_eq!((got, v["code"].as_u64()), (kind::ERROR, Some(1)));
    let (got, v) = exchange(
        &admin,
        kind::STATUS,
        format!(r#"["{}", {{}}]"#, ts.admin_token.expose()).as_bytes(),
    )
    .await;
    assert_eq!((got, v["code"].as_u64()), (kind::ERROR, Some(1)));
    ts.shutdown().await;
}

/// "must not contain unknown fields": every admin request takes exactly its own arguments.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_admin_request_refuses_arguments_it_does_not_take() {
    let ts = TestServer::start().await;
    let admin = admin_conn(&ts).await;
    for (k, args) in [
        (kind::STATUS, json!({ "verbose": true })),
        (kind::KEYS_LIST, json!({ "limit": 5 })),
        (kind::KEYS_ROTATE, json!({ "epoch": 2 })),
        (kind::TOKEN_LIST, json!({ "role": "admin" })),
        (kind::OP_LIST, json!({ "newest": true })),
        (kind::PT_LIST, json!({ "state": "pending" })),
        (kind::LEAKS, json!({ "newest": true })),
        (kind::PT_SHOW, json!({ "id": "pt_x", "reason": "r" })),
        (
            kind::DEVICE_SHOW,
            json!({ "device_id": "d", "reason": "r" }),
        ),
    ] {
        let (got, v) = exchange(&admin, k, &admin_body(&ts, args.clone())).await;
        assert_eq!(
            (got, v["code"].as_u64()),
            (kind::ERROR, Some(u64::from(code::MALFORMED))),
            "kind {k:#x} with {args}"
        );
    }
    // Nothing was rotated.
    let (_, v) = exchange(&admin, kind::KEYS_LIST, &admin_body(&ts, json!({}))).await;
    assert_eq!(v["epochs"].as_array().unwrap().len(), 1);
    // And the arguments they do take still work, absent or empty.
    let (got, _) = exchange(&admin, kind::STATUS, &admin_body(&ts, Value::Null)).await;
    assert_eq!(got, kind::OK);
    ts.shutdown().await;
}

/// WAIT and CANCEL: a secret that is not an operation secret's text form is a format error
/// (6); a well-formed secret that is not the operation's is refused as unauthenticated (10).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operation_secret_is_checked_as_documented() {
    let ts = TestServer::start().await;
    let t = ts.device_transport();
    let (_, pt) = ts.pt(manual()).await;
    let op = begin(&t, &pt, None, "conformance-nonce-1").await.unwrap();
    let other = begin(&t, &ts.pt(manual()).await.1, None, "conformance-nonce-2")
        .await
        .unwrap();
    let conn = t.connection().await.unwrap();
    for (secret, want) in [
        ("tsos_garbage", code::TOKEN_FORMAT),
        (other.secret.as_str(), code::UNAUTHENTICATED),
    ] {
        let body = json!({ "operation_id": op.operation_id, "secret": secret, "timeout_ms": 0 });
        let (got, v) = exchange(&conn, kind::WAIT, body.to_string().as_bytes()).await;
        assert_eq!(
            (got, v["code"].as_u64()),
            (kind::ERROR, Some(u64::from(want)))
        );
    }
    ts.shutdown().await;
}

/// Wrong or missing ALPN: the TLS handshake fails with the alert no_application_protocol (120),
/// which QUIC carries as the transport error 0x178, on both endpoints.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_or_missing_alpn_fails_the_handshake_with_alert_120() {
    use tessera_proto::wire::DEVICE_ALPN;
    let ts = TestServer::start().await;
    let cases: [(std::net::SocketAddr, Option<&[u8]>); 4] = [
        (ts.device_addr, Some(b"h3")),
        (ts.device_addr, Some(ADMIN_ALPN)),
        (ts.admin_addr, Some(DEVICE_ALPN)),
        (ts.device_addr, None),
    ];
    for (addr, alpn) in cases {
        let mut tls =
            tessera_client::transport::client_tls(&ts.trust, alpn.unwrap_or(b"x")).unwrap();
        if alpn.is_none() {
            tls.alpn_protocols.clear();
        }
        let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        ep.set_default_client_config(quinn::ClientConfig::new(std::sync::Arc::new(
            quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap(),
        )));
        let e = ep.connect(addr, "localhost").unwrap().await.unwrap_err();
        match e {
            quinn::ConnectionError::ConnectionClosed(c) => {
                assert_eq!(u64::from(c.error_code), 0x178, "{alpn:?} at {addr}: {c:?}");
            }
            other => panic!("{alpn:?} at {addr}: {other:?}"),
        }
    }
    ts.shutdown().await;
}

/// The example exchange in docs/protocol.md: its BEGIN frame, built from a real PT and the
/// document's nonce, has exactly the header the document shows, and the server accepts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_example_frame_is_what_the_server_takes() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/protocol.md"))
        .unwrap();
    let line = doc
        .lines()
        .find(|l| l.contains("1. BEGIN → `01 10 0000 "))
        .expect("the example BEGIN frame");
    let header = line.split('`').nth(1).unwrap();
    let shown_len = u32::from_str_radix(header.split(' ').nth(3).unwrap(), 16).unwrap();
    let nonce = line
        .split("\"instance_nonce\":\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap();
    let ts = TestServer::start().await;
    let (_, pt) = ts.pt(manual()).await;
    assert_eq!(pt.len(), 81);
    let body = serde_json::to_vec(&json!({ "pt": pt, "instance_nonce": nonce })).unwrap();
    assert_eq!(
        body.len(),
        shown_len as usize,
        "the document's length is wrong"
    );
    let frame = wire::encode(kind::BEGIN, &body);
    assert_eq!(
        data_encoding_hex(&frame[..8]),
        header.split(' ').take(4).collect::<String>()
    );
    let conn = ts.device_transport().connection().await.unwrap();
    let (got, v) = exchange(&conn, kind::BEGIN, &body).await;
    assert_eq!(got, kind::OK);
    assert_eq!(v["state"], "pending");
    assert!(
        v.get("verification_code").is_none(),
        "absent, not null: {v}"
    );
    ts.shutdown().await;
}

fn data_encoding_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// "The long poll returns the moment it is approved": a WAIT parked with a 20 s deadline
/// answers `provisioned` long before it, once a technician approves (a functional bound, not a
/// benchmark).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_wait_returns_when_the_operation_is_approved() {
    let ts = TestServer::start().await;
    let t = ts.device_transport();
    let (_, pt) = ts.pt(manual()).await;
    let op = begin(&t, &pt, Some("prompt-1"), "prompt-instance-nonce")
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    let waiting = {
        let op = op.clone();
        let t = ts.device_transport();
        tokio::spawn(async move { crate::common::wait(&t, &op, 20_000).await })
    };
    // Approve only once the server holds the long poll.
    loop {
        let st = ts.admin.call(kind::STATUS, json!({})).await.unwrap();
        if st["long_polls"].as_u64() == Some(1) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the WAIT never parked"
        );
        tokio::task::yield_now().await;
    }
    ts.admin
        .approve(&op.operation_id, None, None)
        .await
        .unwrap();
    let got = waiting.await.unwrap().unwrap();
    assert_eq!(got.state, "provisioned");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the WAIT answered after {:?}, near its deadline",
        started.elapsed()
    );
    ts.shutdown().await;
}

/// The admin endpoint's order of checks: token, role, kind, arguments.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_endpoint_checks_in_the_documented_order() {
    let ts = TestServer::start().await;
    let admin = admin_conn(&ts).await;
    let tech = ts
        .admin
        .call(
            kind::TOKEN_CREATE,
            json!({ "name": "tech", "role": "technician" }),
        )
        .await
        .unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let body = |token: &str, args: Value| {
        serde_json::to_vec(&json!({ "token": token, "args": args })).unwrap()
    };
    let admin_token = ts.admin_token.expose().to_owned();
    // The last character carries two bits of the checksum (A, Q, g or w): change them.
    let last = if admin_token.ends_with('A') { 'Q' } else { 'A' };
    let mistyped = format!("{}{last}", &admin_token[..admin_token.len() - 1]);
    // Well formed, but another server's.
    let other = TestServer::start().await;
    let foreign = other.admin_token.expose().to_owned();
    for (token, k, args, want) in [
        (
            mistyped.as_str(),
            0x7f,
            json!({ "x": 1 }),
            code::TOKEN_FORMAT,
        ),
        (
            foreign.as_str(),
            0x7f,
            json!({ "x": 1 }),
            code::UNAUTHENTICATED,
        ),
        (
            foreign.as_str(),
            kind::PT_CREATE,
            json!({ "x": 1 }),
            code::UNAUTHENTICATED,
        ),
        (tech.as_str(), 0x7f, json!({}), code::FORBIDDEN),
        (
            tech.as_str(),
            kind::PT_CREATE,
            json!({ "x": 1 }),
            code::FORBIDDEN,
        ),
        (
            admin_token.as_str(),
            0x7f,
            json!({ "x": 1 }),
            code::UNKNOWN_REQUEST,
        ),
        (
            admin_token.as_str(),
            kind::PT_CREATE,
            json!({ "x": 1 }),
            code::MALFORMED,
        ),
        (
            admin_token.as_str(),
            kind::PT_CREATE,
            json!({ "label": "x".repeat(129) }),
            code::INVALID_INPUT,
        ),
        (
            admin_token.as_str(),
            kind::OP_SHOW,
            json!({ "id": "op_AAAAAAAAAAAAAAAAAAAAAA" }),
            code::NOT_FOUND,
        ),
    ] {
        let (got, v) = exchange(&admin, k, &body(token, args.clone())).await;
        assert_eq!(
            (got, v["code"].as_u64()),
            (kind::ERROR, Some(u64::from(want))),
            "kind {k:#x} {args}"
        );
    }
    other.shutdown().await;
    ts.shutdown().await;
}

/// The documented request size caps: 16 KiB of body on the device endpoint, 1 MiB on the admin
/// endpoint; a larger request is error 4 and is not read further.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_size_caps_are_as_documented() {
    let ts = TestServer::start().await;
    let device = ts.device_transport().connection().await.unwrap();
    let admin = admin_conn(&ts).await;
    let padded = |n: usize| {
        let mut b = br#"{"token":"x","args":{},"pad":""#.to_vec();
        b.resize(n - 2, b'a');
        b.extend_from_slice(br#""}"#);
        b
    };
    for (conn, k, len, want) in [
        (&device, kind::BEGIN, 16 * 1024 + 1, code::TOO_LARGE),
        (&admin, kind::STATUS, 1024 * 1024 + 1, code::TOO_LARGE),
        // Within the cap the body is read and judged on its content.
        (&admin, kind::STATUS, 64 * 1024, code::MALFORMED),
    ] {
        let (got, v) = exchange(conn, k, &padded(len)).await;
        assert_eq!(
            (got, v["code"].as_u64()),
            (kind::ERROR, Some(u64::from(want))),
            "{len} bytes"
        );
    }
    ts.shutdown().await;
}

/// The admin records carry exactly the fields docs/protocol.md ("Records") lists; PT_CREATE's
/// defaults, the generated device id and approving a closed operation are as documented.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_records_and_defaults_are_as_documented() {
    use std::collections::BTreeSet;
    let ts = TestServer::start().await;
    let admin = admin_conn(&ts).await;
    let call = |k: u8, args: Value| {
        let body = admin_body(&ts, args);
        let admin = admin.clone();
        async move { exchange(&admin, k, &body).await }
    };
    let keys = |v: &Value| {
        v.as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect::<BTreeSet<_>>()
    };
    let set = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();

    // PT_CREATE with only a label: the documented defaults.
    let (_, v) = call(kind::PT_CREATE, json!({ "label": "defaults" })).await;
    let pt = &v["pt"];
    assert_eq!(pt["kind"], json!({ "kind": "single_device" }));
    assert_eq!(pt["approval"], json!({ "policy": "manual" }));
    assert_eq!(pt["rt_lifetime_secs"], 2_592_000);
    assert_eq!(pt["device_id_policy"], "either");
    assert_eq!(pt["expires_at"], Value::Null);
    assert_eq!(
        keys(pt),
        set(&[
            "id",
            "label",
            "kind",
            "approval",
            "rt_lifetime_secs",
            "device_id_policy",
            "expires_at",
            "created_at",
            "revoked_at",
            "registrations_created",
            "batch"
        ])
    );

    // An operation without a device id gets `dev-` + its id without `op_`.
    let t = ts.device_transport();
    let op = begin(&t, v["token"].as_str().unwrap(), None, "records-nonce-0001")
        .await
        .unwrap();
    let (_, shown) = call(kind::OP_SHOW, json!({ "id": op.operation_id })).await;
    assert_eq!(
        keys(&shown["operation"]),
        set(&[
            "id",
            "pt_id",
            "state",
            "requested_device_id",
            "attributes",
            "uses_code",
            "code_failures",
            "conflict",
            "key_epoch",
            "source",
            "created_at",
            "expires_at",
            "decided_by",
            "decided_at",
            "reason",
            "device_id",
            "registration_id"
        ])
    );
    let (_, approved) = call(kind::OP_APPROVE, json!({ "id": op.operation_id })).await;
    let reg = &approved["registration"];
    assert_eq!(
        reg["device_id"].as_str().unwrap(),
        format!("dev-{}", op.operation_id.trim_start_matches("op_"))
    );
    assert_eq!(
        keys(reg),
        set(&[
            "id",
            "device_id",
            "pt_id",
            "operation_id",
            "status",
            "generation",
            "key_epoch",
            "issued_at",
            "expires_at",
            "lifetime_secs",
            "created_at",
            "revoked_at",
            "revoke_reason"
        ])
    );

    // Approving an operation that is no longer pending: error 21, its state in the message.
    let (_, v2) = call(kind::PT_CREATE, json!({ "label": "closed" })).await;
    let op2 = begin(
        &t,
        v2["token"].as_str().unwrap(),
        None,
        "records-nonce-0002",
    )
    .await
    .unwrap();
    call(
        kind::OP_REJECT,
        json!({ "id": op2.operation_id, "reason": "no" }),
    )
    .await;
    let (got, e) = call(kind::OP_APPROVE, json!({ "id": op2.operation_id })).await;
    assert_eq!((got, e["code"].as_u64()), (kind::ERROR, Some(21)));
    assert!(e["message"].as_str().unwrap().contains("rejected"), "{e}");

    let (_, events) = call(kind::AUDIT, json!({ "limit": 1 })).await;
    assert_eq!(
        keys(&events["events"][0]),
        set(&["seq", "at", "actor", "source", "action", "subject", "detail"])
    );
    let (_, epochs) = call(kind::KEYS_LIST, json!({})).await;
    assert_eq!(
        keys(&epochs["epochs"][0]),
        set(&[
            "epoch",
            "created_at",
            "rt_keep_until",
            "retired_at",
            "current",
            "rt_key_loaded"
        ])
    );
    let (_, tokens) = call(kind::TOKEN_LIST, json!({})).await;
    assert_eq!(
        keys(&tokens["admin_tokens"][0]),
        set(&["id", "name", "role", "created_at", "revoked_at"])
    );
    ts.shutdown().await;
}
