//! The probes on the metrics listener: `/healthz` (the process serves) and `/readyz` (the
//! store answers, the change feed is current, keys are loaded, the endpoints listen), without a
//! token, 200 or 503 with a JSON body naming each check.

use std::time::{Duration, Instant};

use serde_json::Value;
use tessera_tests::proxy::{via, Proxy};

use crate::common::TestServer;

async fn get(url: String) -> (u16, String) {
    // (reqwest is built with rustls and no provider of its own, even for plain HTTP.)
    let _ = rustls::crypto::ring::default_provider().install_default();
    let r = reqwest::Client::new()
        .get(url)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("GET");
    (r.status().as_u16(), r.text().await.unwrap())
}

fn metrics_url(ts: &TestServer, path: &str) -> String {
    let addr = ts.server.as_ref().unwrap().metrics_addr().expect("metrics");
    format!("http://{addr}{path}")
}

async fn readyz(ts: &TestServer) -> (u16, Value) {
    let (code, body) = get(metrics_url(ts, "/readyz")).await;
    (code, serde_json::from_str(&body).expect("JSON"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_answer_without_a_token() {
    let ts =
        TestServer::start_with(|c| c.metrics_addr = Some("127.0.0.1:0".parse().unwrap())).await;
    let (code, body) = get(metrics_url(&ts, "/healthz")).await;
    assert_eq!((code, body.as_str()), (200, r#"{"status":"serving"}"#));
    let (code, r) = readyz(&ts).await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["status"], "ready");
    for check in ["store", "feed", "keys", "endpoints"] {
        assert_eq!(r["checks"][check]["ok"], true, "{check}: {r}");
        assert!(r["checks"][check]["detail"]
            .as_str()
            .is_some_and(|d| !d.is_empty()));
    }
    let (code, text) = get(metrics_url(&ts, "/metrics")).await;
    assert_eq!(code, 200);
    assert!(
        text.contains(&format!(
            "tessera_build_info{{version=\"{}\",commit=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION"),
            tessera_server::COMMIT
        )),
        "{text}"
    );
    assert_eq!(get(metrics_url(&ts, "/admin")).await.0, 404);
    ts.shutdown().await;
}

/// Poll `/readyz` until `want(code, body)` holds (at most 20 s): the store's outage and return
/// are seen by the next probe, and this waits for that probe, not for time to pass.
async fn until(ts: &TestServer, what: &str, want: impl Fn(u16, &Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let (code, r) = readyz(ts).await;
        if want(code, &r) {
            return r;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{what}: {code} {r}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// With the database cut off, `/readyz` answers 503 naming the store (within the store check's
/// 2 s), `/healthz` still 200; with it back, ready again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL (TESSERA_TEST_STORE=postgres://…): scripts/test-all.sh runs it"]
async fn readiness_follows_the_store_down_and_up() {
    let dir = tempfile::tempdir().unwrap();
    let url = crate::common::postgres_url(dir.path())
        .await
        .expect("TESSERA_TEST_STORE");
    let (_, target) = via(&url, "127.0.0.1:1".parse().unwrap());
    let proxy = Proxy::start(target);
    let (proxied, _) = via(&url, proxy.addr);
    let ts = TestServer::start_with(|c| {
        c.store.url = Some(proxied);
        c.metrics_addr = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    until(&ts, "ready", |code, _| code == 200).await;

    proxy.cut();
    let asked = Instant::now();
    let r = until(&ts, "not ready", |code, r| {
        code == 503 && r["checks"]["store"]["ok"] == false
    })
    .await;
    assert_eq!(r["status"], "not ready");
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "{:?}",
        asked.elapsed()
    );
    assert_eq!(
        get(metrics_url(&ts, "/healthz")).await.0,
        200,
        "the process still serves"
    );

    proxy.restore();
    until(&ts, "ready again", |code, _| code == 200).await;
    ts.shutdown().await;
}
