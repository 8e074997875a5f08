//! Several `tessera serve` nodes on one PostgreSQL database, side by side in one run with one
//! node on SQLite (the reference): provisions/s, refreshes/s and new connections/s (full
//! handshakes, and handshakes that resume a TLS session from a ticket), the delay from a
//! revocation on node 1 to the device's connection closing on another node (p50/p99), and the
//! servers' CPU per request. Devices spread their connections over the nodes evenly.
//!
//! ```sh
//! cargo build --release -p tessera-server -p tessera-benches
//! target/release/nodes --store postgres://user@host/db --nodes 3 --seconds 5 [--writers 4] [--json]
//! ```
//!
//! With `--json` the last line is one JSON object, `{"configurations": [{"store", "nodes",
//! "writers", "provisions_per_s", "refreshes_per_s", "connections_per_s",
//! "server_cpu_us_per_refresh", "follower_cpu_us_per_remote_change",
//! "server_cpu_us_per_refresh_by_thread", "refresh_jobs_per_commit", …}, …]}`. The follower
//! figure is the CPU of every node's change-feed thread during the refresh phase over the
//! refreshes times the other nodes (two nodes or more); by thread: every node's threads' CPU
//! during the refresh phase, summed over the nodes by thread name, per refresh. For PostgreSQL configurations it adds the
//! database's own figures for the provisioning and refresh phases ([`pg_probe`]): the share of
//! backend time waiting on a serialising lock, statements and WAL bytes per request, the
//! database's CPU per request, and the share of HOT updates of `registrations`. Statements are
//! counted only when the server preloads `pg_stat_statements` (`shared_preload_libraries`).
//!
//! Each configuration gets a schema of its own in the database. On a machine smaller than
//! nodes × cores, the nodes (and PostgreSQL, and this generator) share cores: read the CPU per
//! request per node then, not the rates.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tessera_benches::{cpu_by_thread, cpu_secs, percentile, sibling, spawn_until};
use tessera_client::transport::Transport;
use tessera_client::{AdminClient, Trust};
use tessera_proto::admin::answers::StatusAnswer;
use tessera_proto::admin::requests::Status;
use tessera_proto::wire::{kind, messages, DEVICE_ALPN};
use tessera_server::server::banner;

mod pg_probe;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const LIMITS: &str = "max_connections_per_source = 1000000\nretry_above_handshakes = 1024\n\
    wait_burst = 1000000000\nwait_per_minute = 1000000000\n\
    introspect_burst = 1000000000\nintrospect_per_minute = 1000000000\n\
    admin_burst = 1000000000\nadmin_per_minute = 1000000000\n";
const ENGINE_LIMITS: &str = "[engine]\nsource_burst = 1000000000\nsource_per_minute = 1000000000\n\
    fleet_pt_burst = 1000000000\nfleet_pt_per_minute = 1000000000\n\
    refresh_burst = 1000000000\nrefresh_per_minute = 1000000000\n";

struct Node {
    child: std::process::Child,
    device: SocketAddr,
    admin: SocketAddr,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(dir: &Path, config: &Path) -> Node {
    let mut cmd = Command::new(sibling("tessera"));
    cmd.args(banner::EPHEMERAL_SERVE)
        .args(["--metrics-addr", "off", "--log", "warn"])
        .arg("--data-dir")
        .arg(dir)
        .arg("--config")
        .arg(config);
    let (child, device, lines, _) = spawn_until(cmd, banner::DEVICE);
    let admin = lines
        .iter()
        .find_map(|l| banner::address(l, banner::ADMIN))
        .expect("admin address");
    Node {
        child,
        device,
        admin,
    }
}

/// `n` nodes on `store` (`None`: one node on SQLite), the first one's root key and TLS
/// material copied to the others.
fn start(work: &Path, store: Option<&str>, n: usize, writers: usize) -> Vec<Node> {
    let config = work.join("tessera.toml");
    let store_toml = store.map_or(String::new(), |u| {
        format!("[store]\nurl = \"{u}\"\nwriters = {writers}\n")
    });
    std::fs::write(&config, format!("{LIMITS}{store_toml}{ENGINE_LIMITS}")).expect("config");
    let dirs: Vec<_> = (0..n)
        .map(|i| work.join(format!("node{}", i + 1)))
        .collect();
    let mut nodes = vec![spawn(&dirs[0], &config)];
    for d in &dirs[1..] {
        std::fs::create_dir_all(d.join("tls")).expect("dir");
        let root = tessera_engine::keys::ROOT_KEY_FILE;
        std::fs::copy(dirs[0].join(root), d.join(root)).expect("root key");
        for e in std::fs::read_dir(dirs[0].join("tls")).expect("tls") {
            let e = e.expect("entry");
            std::fs::copy(e.path(), d.join("tls").join(e.file_name())).expect("tls file");
        }
        nodes.push(spawn(d, &config));
    }
    nodes
}

fn cpu(nodes: &[Node]) -> Vec<f64> {
    nodes
        .iter()
        .map(|n| cpu_secs(&format!("/proc/{}", n.child.id())))
        .collect()
}

/// CPU seconds of every node's live threads, summed over the nodes by thread name.
fn threads_cpu(nodes: &[Node]) -> std::collections::BTreeMap<String, f64> {
    let mut all = std::collections::BTreeMap::new();
    for n in nodes {
        for (name, c) in cpu_by_thread(&format!("/proc/{}", n.child.id())) {
            *all.entry(name).or_insert(0.0) += c;
        }
    }
    all
}

/// Per request, in µs, the CPU each kind of thread spent between `before` and `after`; what
/// the process counted beyond its live threads (threads that ended) is `"ended threads"`.
fn by_thread(
    count: u64,
    before: &std::collections::BTreeMap<String, f64>,
    after: &std::collections::BTreeMap<String, f64>,
    process_total: f64,
) -> Value {
    let us = |c: f64| (c / count.max(1) as f64 * 1e7).round() / 10.0;
    let mut out = serde_json::Map::new();
    let mut sum = 0.0;
    for (name, a) in after {
        let spent = a - before.get(name).copied().unwrap_or(0.0);
        sum += spent;
        if spent > 0.0 {
            out.insert(name.clone(), json!(us(spent)));
        }
    }
    out.insert(
        "ended threads".into(),
        json!(us((process_total - sum).max(0.0))),
    );
    Value::Object(out)
}

/// Rate and server CPU of a phase that made `count` requests.
fn phase(count: u64, secs: f64, before: &[f64], after: &[f64]) -> Value {
    let per_node: Vec<f64> = before.iter().zip(after).map(|(b, a)| a - b).collect();
    let total: f64 = per_node.iter().sum();
    let us = |c: f64| (c / count.max(1) as f64 * 1e6).round();
    json!({
        "requests": count,
        "per_second": (count as f64 / secs).round(),
        "server_cpu_us_per_request": us(total),
        "server_cpu_us_per_request_by_node": per_node.iter().map(|c| us(*c)).collect::<Vec<_>>(),
    })
}

fn transport(addr: SocketAddr, trust: &Trust) -> Transport {
    Transport::new(
        addr,
        "localhost",
        trust,
        DEVICE_ALPN,
        Duration::from_secs(20),
    )
    .expect("transport")
}

/// Run `f(i)` on `conc` tasks for `secs`; how many calls succeeded and failed.
async fn for_secs<F, Fut>(conc: usize, secs: u64, f: F) -> (u64, u64, f64)
where
    F: Fn(usize, u64) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, bad) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..conc {
        let (stop, ok, bad, f) = (stop.clone(), ok.clone(), bad.clone(), f.clone());
        tasks.spawn(async move {
            let mut k = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if f(i, k).await {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    bad.fetch_add(1, Ordering::Relaxed);
                }
                k += 1;
            }
        });
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    while tasks.join_next().await.is_some() {}
    (
        ok.load(Ordering::Relaxed),
        bad.load(Ordering::Relaxed),
        start.elapsed().as_secs_f64(),
    )
}

/// Where a PostgreSQL configuration's data is: its URL and schema.
struct PgTarget {
    url: String,
    schema: String,
}

async fn measure(
    label: &str,
    nodes: &[Node],
    data: &Path,
    o: &Opts,
    pg: Option<&PgTarget>,
) -> Value {
    let mut probe =
        pg.and_then(|t| pg_probe::off_runtime(|| pg_probe::Probe::connect(&t.url, &t.schema)));
    let sampler = || pg.and_then(|t| pg_probe::Sampler::start(&t.url));
    let trust = Trust::ca_file(&data.join("tls/ca.pem")).expect("ca");
    let token = std::fs::read_to_string(data.join("admin.token")).expect("token");
    let admin = AdminClient::new(
        nodes[0].admin,
        "localhost",
        &trust,
        tessera_proto::AdminToken::new(token.trim().to_owned()),
    )
    .expect("admin");
    let created = admin
        .create_pt(&tessera_benches::auto_fleet_args("nodes"))
        .await
        .expect("pt");
    let pt = created.token.clone();
    let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.device).collect();

    // Provisioning: `conns` connections spread over the nodes, each provisioning its share.
    let conns: Vec<Arc<Transport>> = (0..o.connections)
        .map(|i| Arc::new(transport(addrs[i % addrs.len()], &trust)))
        .collect();
    let per = o.devices.div_ceil(o.connections);
    let mark = probe.as_mut().map(|p| pg_probe::off_runtime(|| p.mark()));
    let sampling = sampler();
    let before = cpu(nodes);
    let t = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (w, c) in conns.iter().enumerate() {
        let (c, pt) = (c.clone(), pt.clone());
        tasks.spawn(async move {
            let mut rts = Vec::new();
            for i in 0..per {
                let d = w * per + i;
                let b: messages::BeginResp = c
                    .call(
                        kind::BEGIN,
                        &messages::BeginReq {
                            pt: pt.clone(),
                            device_id: Some(format!("nd-{d}")),
                            attributes: Default::default(),
                            instance_nonce: format!("nodes-bench-instance-{d:08}"),
                        },
                        Duration::ZERO,
                    )
                    .await
                    .expect("begin");
                let r: messages::WaitResp = c
                    .call(
                        kind::WAIT,
                        &messages::WaitReq {
                            operation_id: b.operation_id.clone(),
                            secret: b.secret.clone(),
                            timeout_ms: 0,
                        },
                        Duration::ZERO,
                    )
                    .await
                    .expect("wait");
                rts.push(r.registration.expect("provisioned").rt);
            }
            (w, rts)
        });
    }
    let mut rts = vec![Vec::new(); o.connections];
    while let Some(Ok((w, r))) = tasks.join_next().await {
        rts[w] = r;
    }
    let mut provision = phase(
        (per * o.connections) as u64,
        t.elapsed().as_secs_f64(),
        &before,
        &cpu(nodes),
    );
    if let (Some(p), Some(m), Some(s)) = (probe.as_mut(), mark.as_ref(), sampling) {
        provision["postgres"] = pg_probe::off_runtime(|| p.since(m, (per * o.connections) as u64));
        provision["postgres"]["locks"] = s.finish();
    }

    // Refreshes over the connections, each rotating its own devices' RTs.
    let rts: Arc<Vec<tokio::sync::Mutex<Vec<String>>>> =
        Arc::new(rts.into_iter().map(tokio::sync::Mutex::new).collect());
    let mark = probe.as_mut().map(|p| pg_probe::off_runtime(|| p.mark()));
    let batches = |s: &StatusAnswer| s.engine.commits.batches;
    let jobs = |s: &StatusAnswer| s.engine.commits.jobs;
    let batches_before = status_total(nodes, &trust, token.trim(), batches).await;
    let jobs_before = status_total(nodes, &trust, token.trim(), jobs).await;
    let sampling = sampler();
    let before = cpu(nodes);
    let threads_before = threads_cpu(nodes);
    let (c2, r2) = (conns.clone(), rts.clone());
    let (n, _, secs) = for_secs(o.connections, o.seconds, move |w, k| {
        let (c, r) = (c2[w].clone(), r2.clone());
        async move {
            let mut mine = r[w].lock().await;
            let i = k as usize % mine.len();
            match c
                .call::<_, messages::RefreshResp>(
                    kind::REFRESH,
                    &messages::RtReq {
                        rt: mine[i].clone(),
                    },
                    Duration::ZERO,
                )
                .await
            {
                Ok(x) => {
                    mine[i] = x.registration.rt;
                    true
                }
                Err(_) => false,
            }
        }
    })
    .await;
    let after = cpu(nodes);
    let threads_after = threads_cpu(nodes);
    let mut refresh = phase(n, secs, &before, &after);
    let process_total: f64 = after.iter().zip(&before).map(|(a, b)| a - b).sum();
    refresh["server_cpu_us_per_request_by_thread"] =
        by_thread(n, &threads_before, &threads_after, process_total);
    // The store writers' batches: how many refreshes share each commit's fixed cost.
    let batches = status_total(nodes, &trust, token.trim(), batches).await - batches_before;
    let jobs = status_total(nodes, &trust, token.trim(), jobs).await - jobs_before;
    refresh["jobs_per_commit"] = json!((jobs as f64 / batches.max(1) as f64 * 10.0).round() / 10.0);
    // Every refresh is a change each other node's follower reads and applies (each follower
    // also reads, and skips, its own node's rows).
    if nodes.len() > 1 {
        let feed = |m: &std::collections::BTreeMap<String, f64>| {
            m.get("tessera-feed").copied().unwrap_or(0.0)
        };
        let spent = feed(&threads_after) - feed(&threads_before);
        let remote = (n * (nodes.len() as u64 - 1)).max(1);
        refresh["follower_cpu_us_per_remote_change"] =
            json!((spent / remote as f64 * 1e6 * 10.0).round() / 10.0);
    }
    if let (Some(p), Some(m), Some(s)) = (probe.as_mut(), mark.as_ref(), sampling) {
        refresh["postgres"] = pg_probe::off_runtime(|| p.since(m, n));
        refresh["postgres"]["locks"] = s.finish();
    }

    // New connections, one INTROSPECT each: full handshakes (a new client, no ticket) and
    // resumed ones (a client that holds a ticket from an earlier connection to any node).
    let sample: Vec<String> = {
        let mut v = Vec::new();
        for r in rts.iter() {
            v.push(r.lock().await[0].clone());
        }
        v
    };
    let sample = Arc::new(sample);
    let mut storm = serde_json::Map::new();
    for resumed in [false, true] {
        let warm: Arc<Vec<Transport>> = Arc::new(
            (0..o.storm_concurrency)
                .map(|i| transport(addrs[i % addrs.len()], &trust))
                .collect(),
        );
        if resumed {
            for t in warm.iter() {
                let _ = t
                    .call::<_, Value>(
                        kind::INTROSPECT,
                        &messages::RtReq {
                            rt: sample[0].clone(),
                        },
                        Duration::ZERO,
                    )
                    .await;
            }
        }
        let tickets = |s: &StatusAnswer| s.tls_resumed;
        let status_before = status_total(nodes, &trust, token.trim(), tickets).await;
        let before = cpu(nodes);
        let (addrs2, trust2, s2, w2) = (addrs.clone(), trust.clone(), sample.clone(), warm.clone());
        let (n, failed, secs) = for_secs(o.storm_concurrency, o.seconds, move |i, k| {
            let (addrs, trust, s, w) = (addrs2.clone(), trust2.clone(), s2.clone(), w2.clone());
            async move {
                let addr = addrs[(i + k as usize) % addrs.len()];
                let rt = s[(i + k as usize) % s.len()].clone();
                if resumed {
                    let t = &w[i];
                    t.set_server(addr).await;
                    t.call::<_, Value>(kind::INTROSPECT, &messages::RtReq { rt }, Duration::ZERO)
                        .await
                        .is_ok()
                } else {
                    let t = transport(addr, &trust);
                    let ok = t
                        .call::<_, Value>(kind::INTROSPECT, &messages::RtReq { rt }, Duration::ZERO)
                        .await
                        .is_ok();
                    t.close_now().await;
                    ok
                }
            }
        })
        .await;
        let mut v = phase(n, secs, &before, &cpu(nodes));
        v["failed"] = json!(failed);
        let status_after = status_total(nodes, &trust, token.trim(), tickets).await;
        v["resumed_handshakes"] = json!(status_after - status_before);
        storm.insert(
            if resumed {
                "resumed".into()
            } else {
                "full".into()
            },
            v,
        );
        for t in warm.iter() {
            t.close_now().await;
        }
    }

    // The refreshes' updates of `registrations` (the statistics are flushed by then).
    if let (Some(p), Some(m)) = (probe.as_mut(), mark.as_ref()) {
        refresh["postgres"]["registrations"] = pg_probe::off_runtime(|| p.hot_share(m));
    }

    // Revocation propagation: a device holds a connection on the last node (it refreshed
    // there); node 1 revokes; the time until that connection is closed.
    let last = addrs[addrs.len() - 1];
    let mut delays = Vec::new();
    for i in 0..o.revocations {
        let t = transport(last, &trust);
        let mut mine = rts[i % rts.len()].lock().await;
        let Some(rt) = mine.pop() else { break };
        let r: messages::RefreshResp = t
            .call(kind::REFRESH, &messages::RtReq { rt }, Duration::ZERO)
            .await
            .expect("refresh");
        drop(mine);
        let conn = t.connection().await.expect("connection");
        let start = Instant::now();
        admin
            .revoke_registration(r.registration.registration_id, "bench")
            .await
            .expect("revoke");
        let _ = tokio::time::timeout(Duration::from_secs(10), conn.closed()).await;
        delays.push(start.elapsed());
        t.close_now().await;
    }
    delays.sort();
    let ms = |d: Duration| (d.as_secs_f64() * 1e5).round() / 100.0;
    for c in &conns {
        c.close_now().await;
    }
    admin.close().await;
    pg_probe::off_runtime(move || drop(probe));
    json!({
        "configuration": label,
        "nodes": nodes.len(),
        "provision": provision,
        "refresh": refresh,
        "new_connections": storm,
        "revocation_to_close_ms": {
            "samples": delays.len(),
            "p50": delays.first().map(|_| ms(percentile(&delays, 0.5))),
            "p99": delays.first().map(|_| ms(percentile(&delays, 0.99))),
        },
    })
}

async fn admin_clients(nodes: &[Node], trust: &Trust, token: &str) -> Vec<AdminClient> {
    nodes
        .iter()
        .map(|n| {
            AdminClient::new(
                n.admin,
                "localhost",
                trust,
                tessera_proto::AdminToken::new(token.to_owned()),
            )
            .expect("admin")
        })
        .collect()
}

/// Every node's status, one figure of it summed over the nodes.
async fn status_total(
    nodes: &[Node],
    trust: &Trust,
    token: &str,
    figure: impl Fn(&StatusAnswer) -> u64,
) -> u64 {
    let mut total = 0;
    for a in admin_clients(nodes, trust, token).await {
        total += figure(&a.send(&Status {}).await.expect("status"));
        a.close().await;
    }
    total
}

struct Opts {
    store: Option<String>,
    nodes: usize,
    devices: usize,
    connections: usize,
    seconds: u64,
    storm_concurrency: usize,
    revocations: usize,
    writers: usize,
    json: bool,
}

fn opts() -> Opts {
    let mut o = Opts {
        store: None,
        nodes: 3,
        devices: 2000,
        connections: 24,
        seconds: 5,
        storm_concurrency: 32,
        revocations: 50,
        writers: 1,
        json: false,
    };
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(i) = args.iter().position(|a| a == "--json") {
        o.json = true;
        args.remove(i);
    }
    for w in args.chunks(2) {
        let v = w
            .get(1)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("{} needs a value", w[0]));
        let n = || {
            v.parse::<usize>()
                .unwrap_or_else(|_| panic!("bad value {v}"))
        };
        match w[0].as_str() {
            "--store" => o.store = Some(v.to_owned()),
            "--nodes" => o.nodes = n(),
            "--devices" => o.devices = n(),
            "--connections" => o.connections = n(),
            "--seconds" => o.seconds = n() as u64,
            "--storm-concurrency" => o.storm_concurrency = n(),
            "--revocations" => o.revocations = n(),
            "--writers" => o.writers = n(),
            f => panic!("unknown option {f}"),
        }
    }
    o
}

fn main() {
    let o = opts();
    let store = o.store.clone().expect("--store postgres://… is required");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let base = std::env::var_os("TESSERA_LOADGEN_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "target/loadgen".into());
    std::fs::create_dir_all(&base).expect("base dir");
    let mut results = Vec::new();
    // SQLite, then 1 to `nodes` nodes on PostgreSQL (one writer each), then with `--writers W`
    // also one node with W writers.
    let mut configs: Vec<(String, Option<PgTarget>, usize, usize)> =
        vec![("sqlite".into(), None, 1, 1)];
    let schema_url = |tag: &str| {
        let schema = format!("bench_{}_{tag}", std::process::id());
        let url =
            tessera_engine::store::PostgresStore::schema_url(&store, &schema).expect("schema");
        PgTarget { url, schema }
    };
    for n in 1..=o.nodes {
        configs.push((
            format!("postgresql x{n}"),
            Some(schema_url(&n.to_string())),
            n,
            1,
        ));
    }
    if o.writers > 1 {
        let label = format!("postgresql x1, {} writers", o.writers);
        configs.push((label, Some(schema_url("w")), 1, o.writers));
    }
    for (label, url, n, writers) in configs {
        let work = tempfile::tempdir_in(&base).expect("tempdir");
        let nodes = start(
            work.path(),
            url.as_ref().map(|t| t.url.as_str()),
            n,
            writers,
        );
        let mut r = rt.block_on(measure(
            &label,
            &nodes,
            &work.path().join("node1"),
            &o,
            url.as_ref(),
        ));
        r["store"] = json!(if url.is_some() { "postgres" } else { "sqlite" });
        r["writers"] = json!(writers);
        eprintln!("{label}: done");
        results.push(r);
        drop(nodes);
    }
    let summary = json!({
        "machine": { "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0) },
        "devices": o.devices,
        "connections": o.connections,
        "seconds_per_phase": o.seconds,
        "storm_concurrency": o.storm_concurrency,
        "results": results,
    });
    println!("{}", serde_json::to_string_pretty(&summary).expect("json"));
    if o.json {
        println!("{}", configurations(&summary));
    }
}

/// The one-line summary `--json` prints last: a row per configuration.
fn configurations(summary: &Value) -> Value {
    let rows: Vec<Value> = summary["results"]
        .as_array()
        .map(|rs| {
            rs.iter()
                .map(|r| {
                    json!({
                        "store": r["store"],
                        "nodes": r["nodes"],
                        "writers": r["writers"],
                        "provisions_per_s": r["provision"]["per_second"],
                        "refreshes_per_s": r["refresh"]["per_second"],
                        "connections_per_s": r["new_connections"]["full"]["per_second"],
                        "resumed_connections_per_s": r["new_connections"]["resumed"]["per_second"],
                        "server_cpu_us_per_refresh": r["refresh"]["server_cpu_us_per_request"],
                        "server_cpu_us_per_provision": r["provision"]["server_cpu_us_per_request"],
                        "follower_cpu_us_per_remote_change":
                            r["refresh"]["follower_cpu_us_per_remote_change"],
                        "server_cpu_us_per_refresh_by_thread":
                            r["refresh"]["server_cpu_us_per_request_by_thread"],
                        "refresh_jobs_per_commit": r["refresh"]["jobs_per_commit"],
                        "revocation_to_close_ms": r["revocation_to_close_ms"],
                        "postgres_refresh": r["refresh"]["postgres"],
                        "postgres_provision": r["provision"]["postgres"],
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    json!({ "machine": summary["machine"], "configurations": rows })
}
