//! The metrics listener (plain HTTP, `metrics_addr`): `GET /metrics` (Prometheus text),
//! `GET /healthz` (the process serves) and `GET /readyz` (it can do its work), none behind a
//! token, so a load balancer, Kubernetes or systemd can probe it. Anything else is 404.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde::Serialize;
use tokio::net::TcpListener;

use super::error::ServerError;
use super::shared::Shared;

/// How long `/readyz` waits for the store to answer before calling it down (well inside the
/// 2 s `tessera status` gives the probe).
pub const STORE_CHECK_TIMEOUT: Duration = Duration::from_millis(1500);

/// The process's Prometheus recorder, installed by the first server that serves metrics
/// (`None` if something else installed a recorder first).
fn recorder() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .set_buckets(&LATENCY_BUCKETS)
                .ok()?
                .set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Full("tessera_store_batch_jobs".into()),
                    &BATCH_BUCKETS,
                )
                .ok()?
                .install_recorder()
                .ok()
        })
        .as_ref()
}

/// The buckets of `tessera_store_batch_jobs`: jobs per committed batch.
pub const BATCH_BUCKETS: [f64; 12] = [
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0,
];

/// The buckets of every latency histogram, seconds: from a refresh answered from memory
/// (under a millisecond) to a long poll held for its whole wait (30 s).
pub const LATENCY_BUCKETS: [f64; 16] = [
    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    15.0, 35.0,
];

/// Install the process's recorder (if no other is) and bind the listener, so that a port in
/// use fails the start.
pub(crate) async fn bind(addr: SocketAddr) -> Result<TcpListener, ServerError> {
    recorder();
    metrics::gauge!(
        "tessera_build_info",
        "version" => env!("CARGO_PKG_VERSION"),
        "commit" => crate::COMMIT
    )
    .set(1.0);
    TcpListener::bind(addr)
        .await
        .map_err(|e| ServerError::Io(format!("metrics {addr}: {e}")))
}

/// What the probes look at beside the shared state.
#[derive(Clone)]
pub(crate) struct Probed {
    pub shared: Arc<Shared>,
    pub device: quinn::Endpoint,
    pub admin: quinn::Endpoint,
}

/// One check of `/readyz`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Check {
    /// Whether it passed.
    pub ok: bool,
    /// What was found, in words.
    pub detail: String,
}

/// The `/readyz` answer.
#[derive(Debug, Clone, Serialize)]
pub struct Readiness {
    /// `ready` or `not ready`.
    pub status: &'static str,
    /// Each check by name: `store`, `feed`, `keys`, `endpoints`.
    pub checks: std::collections::BTreeMap<&'static str, Check>,
}

fn check(ok: bool, detail: impl Into<String>) -> Check {
    Check {
        ok,
        detail: detail.into(),
    }
}

/// Run every readiness check.
pub(crate) async fn readiness(p: &Probed) -> Readiness {
    let shared = &p.shared;
    let mut checks = std::collections::BTreeMap::new();
    let engine = shared.engine.clone();
    let store = tokio::time::timeout(
        STORE_CHECK_TIMEOUT,
        tokio::task::spawn_blocking(move || engine.check_store()),
    )
    .await;
    checks.insert(
        "store",
        match store {
            Ok(Ok(Ok(()))) => check(true, shared.engine.store_description()),
            Ok(Ok(Err(e))) => check(false, format!("the store refused a read: {e}")),
            Ok(Err(e)) => check(false, format!("the store check failed: {e}")),
            Err(_) => check(
                false,
                format!(
                    "the store did not answer within {} ms",
                    STORE_CHECK_TIMEOUT.as_millis()
                ),
            ),
        },
    );
    checks.insert(
        "feed",
        match shared.engine.feed_status() {
            None => check(true, "one node: no change feed to follow"),
            Some(f) if f.current => {
                check(true, format!("current: {} changes behind the head", f.lag))
            }
            Some(f) => check(
                false,
                format!(
                    "behind the other nodes: {} changes, last caught up {}",
                    f.lag,
                    f.since_caught_up_ms
                        .map_or("never".to_owned(), |ms| format!("{ms} ms ago"))
                ),
            ),
        },
    );
    let epoch = shared.engine.current_key_epoch();
    checks.insert(
        "keys",
        check(epoch > 0, format!("key epoch {epoch} loaded")),
    );
    let stopping = shared.shutting_down.load(Ordering::SeqCst);
    let listening = p.device.local_addr().is_ok() && p.admin.local_addr().is_ok();
    checks.insert(
        "endpoints",
        if stopping {
            check(false, "shutting down")
        } else {
            check(listening, "device and admin endpoints listening")
        },
    );
    let ready = checks.values().all(|c| c.ok);
    Readiness {
        status: if ready { "ready" } else { "not ready" },
        checks,
    }
}

async fn readyz(State(p): State<Probed>) -> Response {
    let r = readiness(&p).await;
    let code = if r.status == "ready" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(r)).into_response()
}

async fn healthz(State(p): State<Probed>) -> Response {
    if p.shared.shutting_down.load(Ordering::SeqCst) {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "status": "shutting down" })),
        )
            .into_response()
    } else {
        Json(serde_json::json!({ "status": "serving" })).into_response()
    }
}

/// The process's own figures (`process_*`: CPU, memory, open files), read at each scrape.
fn process_collector() -> &'static metrics_process::Collector {
    static COLLECTOR: OnceLock<metrics_process::Collector> = OnceLock::new();
    COLLECTOR.get_or_init(|| {
        let c = metrics_process::Collector::default();
        c.describe();
        c
    })
}

async fn metrics() -> Response {
    match recorder() {
        Some(h) => {
            process_collector().collect();
            h.run_upkeep();
            (
                [(
                    axum::http::header::CONTENT_TYPE,
                    "text/plain; version=0.0.4; charset=utf-8",
                )],
                h.render(),
            )
                .into_response()
        }
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "another metrics recorder is installed in this process\n",
        )
            .into_response(),
    }
}

/// Every 15 s, what `/readyz` would answer, as `tessera_ready` and `tessera_store_up` (1 or
/// 0), for alerting rules.
pub(crate) async fn readiness_gauges(probed: Probed) {
    let mut tick = tokio::time::interval(Duration::from_secs(15));
    loop {
        tick.tick().await;
        let r = readiness(&probed).await;
        let up = |ok: bool| if ok { 1.0 } else { 0.0 };
        metrics::gauge!("tessera_ready").set(up(r.status == "ready"));
        metrics::gauge!("tessera_store_up").set(up(r.checks.get("store").is_some_and(|c| c.ok)));
    }
}

/// Serve the metrics listener until the task is aborted.
pub(crate) async fn serve(listener: TcpListener, probed: Probed) {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(probed);
    if let Err(e) = axum::serve(listener, app).await {
        tracing::warn!(error = %e, "the metrics listener stopped");
    }
}
