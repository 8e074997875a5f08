//! The security review's rules as seen through the server (docs/reliability.md, "Hardening
//! rules").

use serde_json::json;
use tessera_server::wire::kind;

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
