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

/// `tessera status` against `admin` (its readiness probe on `metrics`), and how long it took.
fn tessera_status(
    admin: std::net::SocketAddr,
    metrics: std::net::SocketAddr,
    data: &std::path::Path,
) -> (std::process::Output, Duration) {
    let started = Instant::now();
    let out = std::process::Command::new(crate::crash::tessera_bin())
        .args([
            "status",
            "--admin-addr",
            &admin.to_string(),
            "--metrics-addr",
        ])
        .arg(metrics.to_string())
        .arg("--data-dir")
        .arg(data)
        .env_remove("TESSERA_ADMIN_TOKEN")
        .output()
        .unwrap();
    (out, started.elapsed())
}

/// The `tessera` binary on a PostgreSQL store reached through a proxy: with the database cut
/// off, `/readyz` answers 503 naming the store (within the store check's 2 s), `/healthz` still
/// 200, and `tessera status` says within 3 s that the store is down; with the database back,
/// ready again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL (TESSERA_TEST_STORE=postgres://…): scripts/test-all.sh runs it"]
async fn readiness_follows_the_store_down_and_up() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let url = crate::common::postgres_url(dir.path())
        .await
        .expect("TESSERA_TEST_STORE");
    let (_, target) = via(&url, "127.0.0.1:1".parse().unwrap());
    let proxy = Proxy::start(target);
    let (proxied, _) = via(&url, proxy.addr);
    let data = dir.path().join("data");
    let mut serve = std::process::Command::new(crate::crash::tessera_bin())
        .args(tessera_server::server::banner::EPHEMERAL_SERVE)
        .args([
            "--metrics-addr",
            "127.0.0.1:0",
            "--log",
            "warn",
            "--store",
            &proxied,
        ])
        .arg("--data-dir")
        .arg(&data)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("tessera serve");
    let mut lines = std::io::BufReader::new(serve.stdout.take().unwrap()).lines();
    let (mut admin, mut metrics) = (None, None);
    while admin.is_none() || metrics.is_none() {
        let line = lines.next().expect("banner").unwrap();
        if let Some(a) =
            tessera_server::server::banner::address(&line, tessera_server::server::banner::ADMIN)
        {
            admin = Some(a);
        }
        if let Some(rest) = line.strip_prefix("metrics: http://") {
            metrics = rest
                .split('/')
                .next()
                .and_then(|a| a.parse::<std::net::SocketAddr>().ok());
        }
    }
    std::thread::spawn(move || for _ in lines {});
    let (admin, metrics) = (admin.unwrap(), metrics.unwrap());
    let url = |path: &str| format!("http://{metrics}{path}");
    let readyz = || async {
        let (code, body) = get(url("/readyz")).await;
        (code, serde_json::from_str::<Value>(&body).expect("JSON"))
    };
    let until = |what: &'static str, want: fn(u16, &Value) -> bool| async move {
        let start = Instant::now();
        loop {
            let (code, r) = readyz().await;
            if want(code, &r) {
                return r;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "{what}: {code} {r}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let status = || {
        let d = data.clone();
        tokio::task::spawn_blocking(move || tessera_status(admin, metrics, &d))
    };
    until("ready", |code, _| code == 200).await;
    let (out, _) = status().await.unwrap();
    assert!(out.status.success(), "{out:?}");

    proxy.cut();
    let asked = Instant::now();
    let r = until("not ready", |code, r| {
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
        get(url("/healthz")).await.0,
        200,
        "the process still serves"
    );
    let (out, took) = status().await.unwrap();
    assert!(!out.status.success());
    assert!(took < Duration::from_secs(3), "{took:?}");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("not ready") && said.contains("store:"),
        "{said}"
    );

    proxy.restore();
    until("ready again", |code, _| code == 200).await;
    let _ = serve.kill();
    let _ = serve.wait();
}
