//! TLS session resumption across a server restart: the server seals its session tickets with a
//! key derived from the root, so a device that reconnects to the restarted server (or to
//! another node, see nodes.rs) resumes its session instead of a full handshake.

use std::time::Duration;

use serde_json::json;
use tessera_client::AdminClient;
use tessera_proto::wire::kind;
use tessera_server::server::config::ServerConfig;
use tessera_server::server::Server;

use crate::common::{introspect, TestServer};

/// One round trip (the session tickets come right after the handshake, before any answer).
async fn round_trip(t: &tessera_client::transport::Transport) {
    assert!(introspect(t, "tsrt_not-a-token").await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_resumes_its_tls_session_after_a_server_restart() {
    let mut ts = TestServer::start().await;
    let t = ts.device_transport();
    round_trip(&t).await;
    let status = ts.admin.call(kind::STATUS, json!({})).await.unwrap();
    assert_eq!(
        status["tls_resumed"], 0,
        "the first connection is a full handshake"
    );

    // The server restarts on the same data directory (new ports, new process state).
    ts.server
        .take()
        .unwrap()
        .shutdown(Duration::from_secs(2))
        .await;
    let mut cfg = ServerConfig::ephemeral(ts.dir.path().to_owned());
    cfg.store.url = ts.store_url.clone();
    let again = Server::start_with_clock(cfg, ts.clock.clone())
        .await
        .unwrap();
    t.set_server(again.device_addr()).await;
    round_trip(&t).await;
    let admin = AdminClient::new(
        again.admin_addr(),
        "localhost",
        &ts.trust,
        ts.admin_token.clone(),
    )
    .unwrap();
    let status = admin.call(kind::STATUS, json!({})).await.unwrap();
    assert_eq!(status["tls_resumed"], 1, "{status}");
    admin.close().await;
    t.close().await;
    again.shutdown(Duration::from_secs(2)).await;
    ts.admin.close().await;
}
