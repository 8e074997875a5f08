//! The HTTPS admin API under a large store: list latency with 10,000 pending operations and
//! 1,000,000 registrations, the approve round trip side by side with the same request on the
//! QUIC admin endpoint, and the delay from an approval to the `change` event on 100 open
//! consoles (Server-Sent Events).
//!
//! `cargo run --release -p tessera-benches --bin console_api -- --registrations 1000000
//!  --pending 10000 --requests 300 --consoles 100 --approvals 20`
//!
//! The server runs in this process on its own runtime (2 worker threads); the clients run on
//! another. Everything shares the machine's cores.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tessera_benches::{bench_now, numeric_flags, open, seed_registrations};
use tessera_client::{AdminClient, Trust};
use tessera_engine::{Actor, BeginRequest};
use tessera_proto::admin::requests::OpList;

fn percentiles(mut v: Vec<Duration>) -> String {
    v.sort();
    let p = |q: f64| tessera_benches::percentile(&v, q);
    format!(
        "p50 {:.2} ms, p99 {:.2} ms (n = {})",
        p(0.5).as_secs_f64() * 1e3,
        p(0.99).as_secs_f64() * 1e3,
        v.len()
    )
}

fn main() {
    let flags = numeric_flags();
    let flag = |name: &str, default: u64| tessera_benches::flag(&flags, name, default);
    let registrations = flag("registrations", 1_000_000);
    let pending = flag("pending", 10_000) as usize;
    let requests = flag("requests", 300) as usize;
    let consoles = flag("consoles", 100) as usize;
    let approvals = flag("approvals", 20) as usize;

    // A data directory with the registrations written straight into its store.
    let dir = tessera_benches::scale_dir();
    drop(open(dir.path()));
    let t = Instant::now();
    seed_registrations(dir.path(), registrations, bench_now()).expect("seed");
    println!(
        "seeded {registrations} registrations in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut cfg = tessera_server::ServerConfig::ephemeral(dir.path().to_owned());
    cfg.engine.max_pending_fleet = 1_000;
    cfg.engine.fleet_pt_burst = u32::MAX;
    cfg.engine.fleet_pt_per_minute = u32::MAX;
    cfg.engine.source_burst = u32::MAX;
    cfg.engine.source_per_minute = u32::MAX;
    cfg.admin_burst = u32::MAX;
    cfg.admin_per_minute = u32::MAX;
    let server = server_rt
        .block_on(tessera_server::Server::start(cfg))
        .expect("server");
    let engine = server.engine();
    let operator = Actor::operator("bench");
    let now = tessera_engine::Timestamp::now_from_system_clock();

    // Pending operations, 1,000 per fleet PT (the per-PT cap).
    let t = Instant::now();
    let spec = tessera_benches::manual_fleet();
    let mut ops = Vec::with_capacity(pending);
    let mut pt = None;
    for i in 0..pending {
        if i % 1_000 == 0 {
            pt = Some(engine.create_pt(&spec, &operator, now).expect("pt").1);
        }
        let op = engine
            .begin_operation(
                BeginRequest {
                    pt: pt.clone().expect("pt"),
                    requested_device_id: Some(format!("pending-{i}").parse().unwrap()),
                    attributes: Default::default(),
                    instance_nonce: format!("console-bench-{i:016}").into_bytes(),
                },
                &Actor::device(None),
                now,
            )
            .expect("begin");
        ops.push(op.operation_id.to_string());
    }
    println!(
        "began {pending} pending operations in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let pem = std::fs::read(server.ca_cert_path()).unwrap();
    let token = server.first_admin_token().expect("admin token").clone();
    let base = format!(
        "https://localhost:{}",
        server.console_addr().expect("console").port()
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .pool_max_idle_per_host(200)
        .build()
        .unwrap();
    let auth = format!("Bearer {}", token.expose());
    let quic = {
        let _g = rt.enter();
        AdminClient::new(
            server.admin_addr(),
            "localhost",
            &Trust::CaPem(pem.clone()),
            token.clone(),
        )
        .unwrap()
    };

    println!(
        "console_api: {registrations} registrations, {pending} pending operations; server and \
         clients on one machine ({} cores)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    rt.block_on(async {
        let get = |path: String| {
            let (http, auth, base) = (http.clone(), auth.clone(), base.clone());
            async move {
                let t = Instant::now();
                let r = http
                    .get(format!("{base}{path}"))
                    .header("authorization", auth)
                    .send()
                    .await
                    .unwrap();
                assert!(r.status().is_success(), "{path}: {}", r.status());
                let v: Value = r.json().await.unwrap();
                (t.elapsed(), v)
            }
        };
        // Warm the connection.
        get("/api/v1/status".into()).await;

        // Lists.
        for (name, path) in [
            (
                "pending operations, first page of 100",
                "/api/v1/operations?state=pending&limit=100".to_owned(),
            ),
            (
                "registrations, first page of 100",
                "/api/v1/devices?limit=100".to_owned(),
            ),
            (
                "one device id among 1,000,000",
                "/api/v1/devices?device_id=seed-00500000".to_owned(),
            ),
        ] {
            let mut lat = Vec::new();
            for _ in 0..requests {
                lat.push(get(path.clone()).await.0);
            }
            println!("HTTPS GET {name}: {}", percentiles(lat));
        }
        // A page deep in the pending list (cursor from 50 pages in).
        let mut path = "/api/v1/operations?state=pending&limit=100".to_owned();
        for _ in 0..50 {
            let (_, v) = get(path.clone()).await;
            path = format!(
                "/api/v1/operations?state=pending&limit=100&before={}",
                v["next"].as_str().expect("next")
            );
        }
        let mut lat = Vec::new();
        for _ in 0..requests {
            lat.push(get(path.clone()).await.0);
        }
        println!(
            "HTTPS GET pending operations, page 51 (cursor): {}",
            percentiles(lat)
        );
        let mut lat = Vec::new();
        for _ in 0..requests {
            let t = Instant::now();
            quic.send(&OpList {
                state: Some("pending".into()),
                limit: 100,
                ..OpList::default()
            })
            .await
            .unwrap();
            lat.push(t.elapsed());
        }
        println!(
            "QUIC OP_LIST pending, first page of 100 (same request): {}",
            percentiles(lat)
        );

        // Approve round trips, HTTPS and QUIC side by side (alternating).
        let half = requests.min(ops.len() / 4);
        let (mut https_lat, mut quic_lat) = (Vec::new(), Vec::new());
        for i in 0..half {
            let t = Instant::now();
            let r = http
                .post(format!("{base}/api/v1/operations/approve"))
                .header("authorization", &auth)
                .json(&json!({ "id": ops[2 * i] }))
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success());
            https_lat.push(t.elapsed());
            let t = Instant::now();
            quic.approve(&ops[2 * i + 1], None, None).await.unwrap();
            quic_lat.push(t.elapsed());
        }
        println!("HTTPS approve round trip: {}", percentiles(https_lat));
        println!(
            "QUIC OP_APPROVE round trip (same request): {}",
            percentiles(quic_lat)
        );

        // SSE fan-out: `consoles` event streams; each approval's change event timed on each.
        let arrivals = Arc::new(std::sync::Mutex::new(Vec::<(usize, Instant)>::new()));
        let mut streams = Vec::new();
        let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(consoles);
        for idx in 0..consoles {
            let mut r = http
                .get(format!("{base}/api/v1/events"))
                .header("authorization", &auth)
                .send()
                .await
                .unwrap();
            let (arrivals, ready) = (arrivals.clone(), ready_tx.clone());
            streams.push(tokio::spawn(async move {
                let mut first = true;
                while let Ok(Some(chunk)) = r.chunk().await {
                    let n = String::from_utf8_lossy(&chunk)
                        .matches("event: change")
                        .count();
                    if n == 0 {
                        continue;
                    }
                    if first {
                        first = false;
                        let _ = ready.send(()).await;
                        continue;
                    }
                    arrivals.lock().unwrap().push((idx, Instant::now()));
                }
            }));
        }
        for _ in 0..consoles {
            ready_rx.recv().await;
        }
        let mut delays = Vec::new();
        for i in 0..approvals {
            arrivals.lock().unwrap().clear();
            let op = &ops[2 * half + i];
            let t = Instant::now();
            quic.approve(op, None, None).await.unwrap();
            // The first event on each console after the approval.
            let first = || {
                let mut seen = std::collections::BTreeMap::new();
                for (idx, at) in arrivals.lock().unwrap().iter() {
                    seen.entry(*idx).or_insert(*at);
                }
                seen
            };
            let deadline = Instant::now() + Duration::from_secs(10);
            while first().len() < consoles && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let got = first();
            assert_eq!(got.len(), consoles, "every console got the event");
            delays.extend(got.values().map(|a| a.duration_since(t)));
            // Let the streams go quiet before the next one.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        println!(
            "approval → change event on {consoles} consoles, over {approvals} approvals: {}",
            percentiles(delays)
        );
        for s in streams {
            s.abort();
        }
    });
    server_rt.block_on(server.shutdown(Duration::from_secs(1)));
}
