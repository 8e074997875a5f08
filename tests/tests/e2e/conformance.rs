//! docs/protocol.md against the server, byte for byte: these tests build frames by hand and
//! read the answers raw, without the Rust client, so the document and the server cannot drift
//! apart unnoticed.

use std::time::Duration;

use serde_json::{json, Value};
use tessera_server::client::transport::Transport;
use tessera_server::wire::{self, code, kind, ADMIN_ALPN};

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
