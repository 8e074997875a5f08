//! Load generator: drives a real `tessera serve` (release build, pre-seeded store) and a bare
//! quinn echo server (the framework floor) with the same client code in the same run, and
//! prints a JSON summary. The refresh and echo phases alternate (`--rounds`, default 2) so that
//! drift in a shared machine's speed falls on both alike. Each phase reports CPU per request of
//! the server (and of Tessera's store writer thread), of the generator, and UDP datagrams per
//! request; servers and generator all allocate with mimalloc, as the `tessera` binary does.
//!
//! ```sh
//! cargo build --release -p tessera-server -p tessera-benches
//! target/release/loadgen --devices 10000 --seconds 10
//! ```
//!
//! With `--nodes N --store postgres://…` it runs the several-node measurement instead
//! (`nodes.rs`: 1 to N nodes on PostgreSQL beside one on SQLite).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tessera_benches::{rss_of, sibling, spawn_until};
use tessera_proto::wire::{self, kind, messages};
use tessera_server::server::banner;

/// The servers' allocator, so the generator's share of the shared cores is as small as theirs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Opts {
    devices: usize,
    connections: usize,
    seconds: u64,
    seed: u64,
    handshake_concurrency: usize,
    idle: usize,
    endpoints: usize,
    inflight: usize,
    rounds: u64,
}

fn opts_from(args: &[String]) -> Opts {
    let mut o = Opts {
        devices: 10_000,
        connections: 64,
        seconds: 10,
        seed: 1_000_000,
        handshake_concurrency: 32,
        idle: 2000,
        endpoints: 4,
        inflight: 4,
        rounds: 2,
    };
    for w in args.chunks(2) {
        let v = |x: &str| x.parse::<u64>().unwrap_or_else(|_| panic!("bad value {x}"));
        match (w[0].as_str(), w.get(1).map(String::as_str)) {
            ("--devices", Some(x)) => o.devices = v(x) as usize,
            ("--connections", Some(x)) => o.connections = v(x) as usize,
            ("--seconds", Some(x)) => o.seconds = v(x),
            ("--seed", Some(x)) => o.seed = v(x),
            ("--handshake-concurrency", Some(x)) => o.handshake_concurrency = v(x) as usize,
            ("--idle", Some(x)) => o.idle = v(x) as usize,
            ("--endpoints", Some(x)) => o.endpoints = v(x) as usize,
            ("--inflight", Some(x)) => o.inflight = v(x) as usize,
            ("--rounds", Some(x)) => o.rounds = v(x),
            (flag, _) => panic!("unknown option {flag}"),
        }
    }
    o
}

/// CPU seconds process `pid` has used.
fn cpu_secs(pid: u32) -> f64 {
    tessera_benches::cpu_secs(&format!("/proc/{pid}"))
}

/// UDP datagrams this machine has sent (`OutDatagrams` in `/proc/net/snmp`; 0 if unknown).
fn udp_datagrams() -> u64 {
    let snmp = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(values)) = (udp.next(), udp.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "OutDatagrams")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

fn client_endpoints(n: usize, ca: &Path, alpn: &[u8], resumption: bool) -> Vec<quinn::Endpoint> {
    let trust = tessera_client::Trust::ca_file(ca).expect("ca");
    (0..n)
        .map(|_| {
            let mut tls = tessera_client::transport::client_tls(&trust, alpn).expect("tls");
            if !resumption {
                tls.resumption = rustls::client::Resumption::disabled();
            }
            let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).expect("quic");
            let mut cc = quinn::ClientConfig::new(Arc::new(quic));
            let mut t = quinn::TransportConfig::default();
            t.mtu_discovery_config(None)
                .max_idle_timeout(quinn::IdleTimeout::try_from(Duration::from_secs(120)).ok());
            cc.transport_config(Arc::new(t));
            let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)
                .expect("socket");
            let _ = sock.set_recv_buffer_size(4 << 20);
            let _ = sock.set_send_buffer_size(4 << 20);
            sock.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
                .expect("bind");
            let mut ep = quinn::Endpoint::new(
                quinn::EndpointConfig::default(),
                None,
                sock.into(),
                Arc::new(quinn::TokioRuntime),
            )
            .expect("endpoint");
            ep.set_default_client_config(cc);
            ep
        })
        .collect()
}

async fn rpc(conn: &quinn::Connection, bytes: &[u8]) -> Result<Vec<u8>, String> {
    let (mut s, mut r) = conn.open_bi().await.map_err(|e| e.to_string())?;
    s.write_all(bytes).await.map_err(|e| e.to_string())?;
    let _ = s.finish();
    r.read_to_end(1 << 20).await.map_err(|e| e.to_string())
}

async fn tessera_call<Req: serde::Serialize, Resp: serde::de::DeserializeOwned>(
    conn: &quinn::Connection,
    k: u8,
    req: &Req,
) -> Result<Resp, String> {
    let resp = rpc(
        conn,
        &wire::encode(k, &serde_json::to_vec(req).map_err(|e| e.to_string())?),
    )
    .await?;
    let f = wire::decode(&resp, wire::frame::RESPONSE_MAX).map_err(|e| e.to_string())?;
    if f.kind != kind::OK {
        return Err(String::from_utf8_lossy(f.body).into_owned());
    }
    serde_json::from_slice(f.body).map_err(|e| e.to_string())
}

#[derive(Default)]
struct Lat(Vec<u32>);

/// Let the phase's tasks run for `secs`, stop them, and gather their latencies.
async fn run_for(secs: u64, stop: &AtomicBool, tasks: &mut tokio::task::JoinSet<Vec<u32>>) -> Lat {
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Lat::default();
    while let Some(Ok(l)) = tasks.join_next().await {
        all.0.extend(l);
    }
    all
}

impl Lat {
    fn summary(mut self, n: u64, secs: f64) -> Value {
        self.0.sort_unstable();
        let p = |q: f64| {
            self.0
                .get(((self.0.len() as f64 * q) as usize).min(self.0.len().saturating_sub(1)))
                .copied()
                .unwrap_or(0)
        };
        json!({ "count": n, "per_second": (n as f64 / secs).round(), "p50_us": p(0.5), "p99_us": p(0.99) })
    }
}

/// One kind of request measured over one or more timed runs.
#[derive(Default)]
struct Phase {
    count: u64,
    lat: Lat,
    secs: f64,
    server_cpu: f64,
    /// CPU of the server's store writer thread; `None` for a server without one.
    writer_cpu: Option<f64>,
    generator_cpu: f64,
    /// UDP datagrams sent on the whole machine meanwhile (both ways: loopback).
    datagrams: u64,
}

impl Phase {
    /// Time `run`, with the CPU the server (`pid`), its store writer thread (if it has one) and
    /// this generator (`me`) spent meanwhile.
    async fn run(
        pid: u32,
        me: u32,
        run: impl std::future::Future<Output = (u64, Lat, f64)>,
    ) -> Phase {
        let server = format!("/proc/{pid}");
        let writer = tessera_benches::thread_named(&server, "tessera-store-w");
        let writer_cpu = || writer.as_deref().map(tessera_benches::cpu_secs);
        let (s0, w0, g0, d0) = (cpu_secs(pid), writer_cpu(), cpu_secs(me), udp_datagrams());
        let (count, lat, secs) = run.await;
        Phase {
            count,
            lat,
            secs,
            server_cpu: cpu_secs(pid) - s0,
            writer_cpu: writer_cpu().zip(w0).map(|(w1, w0)| w1 - w0),
            generator_cpu: cpu_secs(me) - g0,
            datagrams: udp_datagrams().saturating_sub(d0),
        }
    }

    fn rate(&self) -> f64 {
        self.count as f64 / self.secs.max(1e-9)
    }

    fn add(&mut self, other: Phase) {
        self.count += other.count;
        self.lat.0.extend(other.lat.0);
        self.secs += other.secs;
        self.server_cpu += other.server_cpu;
        self.writer_cpu = match (self.writer_cpu, other.writer_cpu) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        };
        self.generator_cpu += other.generator_cpu;
        self.datagrams += other.datagrams;
    }

    fn summary(self) -> Value {
        let per = |cpu: f64| (cpu * 1e6 / self.count.max(1) as f64 * 10.0).round() / 10.0;
        let (server, generator) = (per(self.server_cpu), per(self.generator_cpu));
        let mut v = self.lat.summary(self.count, self.secs);
        v["server_cpu_us_per_request"] = json!(server);
        v["generator_cpu_us_per_request"] = json!(generator);
        v["datagrams_per_request"] =
            json!((self.datagrams as f64 / self.count.max(1) as f64 * 100.0).round() / 100.0);
        if let Some(w) = self.writer_cpu {
            v["store_writer_cpu_us_per_request"] = json!(per(w));
        }
        v
    }
}

/// Run `work` on `conns` connections, `inflight` requests at a time on each, for `secs`
/// seconds; returns (count, latencies, elapsed). Task `i` uses connection `i / inflight`.
async fn timed<F, Fut>(
    conns: &[quinn::Connection],
    inflight: usize,
    secs: u64,
    work: F,
) -> (u64, Lat, f64)
where
    F: Fn(usize, quinn::Connection, u64) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send,
{
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..conns.len() * inflight {
        let c = &conns[i / inflight];
        let (stop, count, c, work) = (stop.clone(), count.clone(), c.clone(), work.clone());
        tasks.spawn(async move {
            let mut lat = Vec::new();
            let mut k = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                if let Err(e) = work(i, c.clone(), k).await {
                    eprintln!("request failed: {e}");
                    break;
                }
                lat.push(t.elapsed().as_micros() as u32);
                count.fetch_add(1, Ordering::Relaxed);
                k += 1;
            }
            lat
        });
    }
    let all = run_for(secs, &stop, &mut tasks).await;
    (
        count.load(Ordering::Relaxed),
        all,
        start.elapsed().as_secs_f64(),
    )
}

async fn connect_all(
    eps: &[quinn::Endpoint],
    addr: SocketAddr,
    n: usize,
) -> Vec<quinn::Connection> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        out.push(
            eps[i % eps.len()]
                .connect(addr, "localhost")
                .expect("connect")
                .await
                .expect("handshake"),
        );
    }
    out
}

/// New connections per second: `conc` tasks each connect, make one request, close. Returns
/// (connections, latencies, elapsed, failures).
async fn handshakes<F, Fut>(
    eps: Vec<quinn::Endpoint>,
    addr: SocketAddr,
    conc: usize,
    secs: u64,
    one: F,
) -> (u64, Lat, f64, u64)
where
    F: Fn(quinn::Connection, u64) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send,
{
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let fails = Arc::new(AtomicU64::new(0));
    let eps = Arc::new(eps);
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..conc {
        let (stop, count, fails, eps, one) = (
            stop.clone(),
            count.clone(),
            fails.clone(),
            eps.clone(),
            one.clone(),
        );
        tasks.spawn(async move {
            let mut lat = Vec::new();
            let mut k = i as u64;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let ep = &eps[(k as usize) % eps.len()];
                let ok = match ep.connect(addr, "localhost") {
                    Ok(c) => match c.await {
                        Ok(conn) => {
                            let r = one(conn.clone(), k).await;
                            conn.close(0u32.into(), b"");
                            r.is_ok()
                        }
                        Err(_) => false,
                    },
                    Err(_) => false,
                };
                if ok {
                    count.fetch_add(1, Ordering::Relaxed);
                    lat.push(t.elapsed().as_micros() as u32);
                } else {
                    fails.fetch_add(1, Ordering::Relaxed);
                }
                k += conc as u64;
            }
            lat
        });
    }
    let all = run_for(secs, &stop, &mut tasks).await;
    (
        count.load(Ordering::Relaxed),
        all,
        start.elapsed().as_secs_f64(),
        fails.load(Ordering::Relaxed),
    )
}

/// [`handshakes`] measured as a [`Phase`] of the server `pid`, failures included in the summary.
async fn handshake_phase(
    pid: u32,
    run: impl std::future::Future<Output = (u64, Lat, f64, u64)>,
) -> Value {
    let failed = AtomicU64::new(0);
    let phase = Phase::run(pid, std::process::id(), async {
        let (n, lat, secs, fails) = run.await;
        failed.store(fails, Ordering::Relaxed);
        (n, lat, secs)
    })
    .await;
    let mut v = phase.summary();
    v["failed"] = json!(failed.load(Ordering::Relaxed));
    v
}

async fn idle_rss(eps: &[quinn::Endpoint], addr: SocketAddr, pid: u32, n: usize) -> Value {
    let before = rss_of(pid);
    let conns = connect_all(eps, addr, n).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_of(pid);
    for c in &conns {
        c.close(0u32.into(), b"");
    }
    json!({ "connections": n, "server_rss_before": before, "server_rss_after": after,
            "bytes_per_idle_connection": after.saturating_sub(before) / n as u64 })
}

/// Server settings without rate limits in the load's way.
const UNLIMITED: &str = "max_connections_per_source = 1000000\nretry_above_handshakes = 1024\n\
     wait_burst = 1000000000\nwait_per_minute = 1000000000\n\
     introspect_burst = 1000000000\nintrospect_per_minute = 1000000000\n\
     [engine]\nsource_burst = 1000000000\nsource_per_minute = 1000000000\n\
     fleet_pt_burst = 1000000000\nfleet_pt_per_minute = 1000000000\n\
     refresh_burst = 1000000000\nrefresh_per_minute = 1000000000\n";

/// Provision `devices` devices over `conns` through the real flow (automatic PT `pt`): each
/// connection's RTs, and each provisioning's latency (µs).
async fn provision_all(
    conns: &[quinn::Connection],
    pt: &str,
    devices: usize,
) -> (Vec<Vec<String>>, Lat) {
    let per = devices.div_ceil(conns.len());
    let mut tasks = tokio::task::JoinSet::new();
    for (w, c) in conns.iter().enumerate() {
        let (c, pt) = (c.clone(), pt.to_owned());
        tasks.spawn(async move {
            let mut rts = Vec::new();
            let mut lat = Vec::new();
            for i in 0..per {
                let d = w * per + i;
                let s = Instant::now();
                let b: messages::BeginResp = tessera_call(
                    &c,
                    kind::BEGIN,
                    &messages::BeginReq {
                        pt: pt.clone(),
                        device_id: Some(format!("lg-{d}")),
                        attributes: Default::default(),
                        instance_nonce: format!("loadgen-instance-{d:08}"),
                    },
                )
                .await
                .expect("begin");
                let wr: messages::WaitResp = tessera_call(
                    &c,
                    kind::WAIT,
                    &messages::WaitReq {
                        operation_id: b.operation_id,
                        secret: b.secret,
                        timeout_ms: 0,
                    },
                )
                .await
                .expect("wait");
                lat.push(s.elapsed().as_micros() as u32);
                rts.push(wr.registration.expect("provisioned").rt);
            }
            (w, rts, lat)
        });
    }
    let mut rts: Vec<Vec<String>> = vec![Vec::new(); conns.len()];
    let mut lat = Lat::default();
    while let Some(Ok((w, r, l))) = tasks.join_next().await {
        rts[w] = r;
        lat.0.extend(l);
    }
    (rts, lat)
}

/// One server of the observability measurement, ready for refreshes.
struct Observed {
    server: std::process::Child,
    conns: Vec<quinn::Connection>,
    store: Arc<Vec<tokio::sync::Mutex<Vec<String>>>>,
    metrics: Option<SocketAddr>,
}

/// Start a server on `dir` (seeded alike), `observed` with metrics and an `info` log (to a
/// file, as a journal would take it) or with neither, provision its devices.
async fn observed_server(o: &Opts, dir: &Path, observed: bool) -> Observed {
    let data = dir.join("data");
    drop(tessera_benches::open(&data));
    tessera_benches::seed_registrations(&data, o.seed, tessera_benches::bench_now()).expect("seed");
    let config = dir.join("tessera.toml");
    std::fs::write(&config, UNLIMITED).expect("config");
    let mut cmd = Command::new(sibling("tessera"));
    cmd.args(banner::EPHEMERAL_SERVE)
        .arg("--data-dir")
        .arg(&data)
        .arg("--config")
        .arg(&config);
    if observed {
        cmd.args([
            "--metrics-addr",
            "127.0.0.1:0",
            "--log",
            "info",
            "--log-format",
            "json",
        ]);
    } else {
        cmd.args(["--metrics-addr", "off", "--log", "warn"]);
    }
    let (server, device_addr, lines, _) = spawn_until(cmd, banner::DEVICE);
    let metrics = lines.iter().find_map(|l| {
        l.strip_prefix("metrics: http://")
            .and_then(|r| r.split('/').next())
            .and_then(|a| a.parse().ok())
    });
    let admin_addr: SocketAddr = lines
        .iter()
        .find_map(|l| banner::address(l, banner::ADMIN))
        .expect("admin address");
    let ca = data.join("tls/ca.pem");
    let token = std::fs::read_to_string(data.join("admin.token"))
        .expect("token")
        .trim()
        .to_owned();
    let admin = tessera_client::AdminClient::new(
        admin_addr,
        "localhost",
        &tessera_client::Trust::ca_file(&ca).expect("ca"),
        tessera_proto::AdminToken::new(token),
    )
    .expect("admin");
    let pt = admin
        .create_pt(&tessera_benches::auto_fleet_args("loadgen"))
        .await
        .expect("pt")
        .token
        .clone();
    admin.close().await;
    let eps = client_endpoints(o.endpoints, &ca, wire::DEVICE_ALPN, true);
    let conns = connect_all(&eps, device_addr, o.connections).await;
    let (rts, _) = provision_all(&conns, &pt, o.devices).await;
    let inflight = o.inflight.max(1);
    let mut slots: Vec<Vec<String>> = vec![Vec::new(); o.connections * inflight];
    for (w, list) in rts.into_iter().enumerate() {
        for (i, rt) in list.into_iter().enumerate() {
            slots[w * inflight + i % inflight].push(rt);
        }
    }
    let store = Arc::new(slots.into_iter().map(tokio::sync::Mutex::new).collect());
    Observed {
        server,
        conns,
        store,
        metrics,
    }
}

/// What metrics and logs cost on the refresh path: two servers on stores seeded alike, one
/// with metrics (scraped every second, as Prometheus would) and an `info` JSON log, one with
/// neither; refresh phases alternate between them, `rounds` of each.
async fn observability_cost(o: &Opts, work: &Path) -> Value {
    let (a, b) = (work.join("quiet"), work.join("observed"));
    let mut quiet = observed_server(o, &a, false).await;
    let mut loud = observed_server(o, &b, true).await;
    let scrape_addr = loud.metrics.expect("the observed server's metrics address");
    let stop = Arc::new(AtomicBool::new(false));
    let scraper = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut scrapes = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if let Ok(mut c) = tokio::net::TcpStream::connect(scrape_addr).await {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let _ = c
                        .write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
                        .await;
                    let mut sink = Vec::new();
                    let _ = c.read_to_end(&mut sink).await;
                    scrapes += 1;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            scrapes
        })
    };
    let me = std::process::id();
    let inflight = o.inflight.max(1);
    let rounds = o.rounds.max(1);
    let secs_each = (o.seconds / rounds).max(1);
    let (mut quiet_acc, mut loud_acc) = (Phase::default(), Phase::default());
    let mut ratios = Vec::new();
    for _ in 0..rounds {
        let phase = |s: &Observed| {
            let st = s.store.clone();
            let pid = s.server.id();
            let conns = s.conns.clone();
            async move {
                Phase::run(
                    pid,
                    me,
                    timed(&conns, inflight, secs_each, move |w, c, k| {
                        let st = st.clone();
                        async move {
                            let mut mine = st[w].lock().await;
                            let i = (k as usize) % mine.len();
                            let r: messages::RefreshResp = tessera_call(
                                &c,
                                kind::REFRESH,
                                &messages::RtReq {
                                    rt: mine[i].clone(),
                                },
                            )
                            .await?;
                            mine[i] = r.registration.rt;
                            Ok(())
                        }
                    }),
                )
                .await
            }
        };
        let q = phase(&quiet).await;
        let l = phase(&loud).await;
        ratios.push((l.rate() / q.rate().max(1.0) * 1000.0).round() / 1000.0);
        quiet_acc.add(q);
        loud_acc.add(l);
    }
    stop.store(true, Ordering::Relaxed);
    let scrapes = scraper.await.unwrap_or(0);
    let (q, l) = (quiet_acc.summary(), loud_acc.summary());
    let ratio =
        l["per_second"].as_f64().unwrap_or(0.0) / q["per_second"].as_f64().unwrap_or(1.0).max(1.0);
    for s in [&mut quiet, &mut loud] {
        for c in &s.conns {
            c.close(0u32.into(), b"");
        }
        let _ = s.server.kill();
        let _ = s.server.wait();
    }
    json!({
        "machine": { "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0) },
        "seeded_registrations": o.seed,
        "devices": o.devices,
        "connections": o.connections,
        "inflight_per_connection": inflight,
        "refresh_without_metrics_or_logs": q,
        "refresh_with_metrics_and_info_log": l,
        "metrics_scrapes": scrapes,
        "with_vs_without": (ratio * 1000.0).round() / 1000.0,
        "with_vs_without_by_round": ratios,
    })
}

fn main() {
    // Several nodes on PostgreSQL (`--nodes N --store URL`) are measured by the `nodes` load
    // generator, with these arguments.
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--nodes" || a == "--store") {
        let status = Command::new(sibling("nodes"))
            .args(&args)
            .status()
            .expect("run nodes");
        std::process::exit(status.code().unwrap_or(1));
    }
    let observability = args.iter().any(|a| a == "--observability");
    let rest: Vec<String> = args
        .into_iter()
        .filter(|a| a != "--observability")
        .collect();
    let o = opts_from(&rest);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let base = std::env::var_os("TESSERA_LOADGEN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/loadgen"));
    std::fs::create_dir_all(&base).expect("base dir");
    let work = tempfile::tempdir_in(&base).expect("tempdir");
    if observability {
        let summary = rt.block_on(observability_cost(&o, work.path()));
        println!("{}", serde_json::to_string_pretty(&summary).expect("json"));
        return;
    }
    let data = work.path().join("data");

    // Seed the store with registrations, then time the server's start-up.
    drop(tessera_benches::open(&data));
    let t = Instant::now();
    tessera_benches::seed_registrations(&data, o.seed, tessera_benches::bench_now()).expect("seed");
    let seed_secs = t.elapsed().as_secs_f64();
    let config = work.path().join("tessera.toml");
    std::fs::write(&config, UNLIMITED).expect("config");
    let mut cmd = Command::new(sibling("tessera"));
    cmd.args(banner::EPHEMERAL_SERVE)
        .args(["--metrics-addr", "off", "--log", "warn"])
        .arg("--data-dir")
        .arg(&data)
        .arg("--config")
        .arg(&config);
    let (mut server, device_addr, lines, startup) = spawn_until(cmd, banner::DEVICE);
    let admin_addr: SocketAddr = lines
        .iter()
        .find_map(|l| banner::address(l, banner::ADMIN))
        .expect("admin address");
    let server_pid = server.id();
    let rss_seeded = rss_of(server_pid);
    let ca = data.join("tls/ca.pem");

    let mut echo_cmd = Command::new(sibling("echo_server"));
    echo_cmd.arg(work.path().join("echo"));
    let (mut echo, echo_addr, echo_lines, _) = spawn_until(echo_cmd, "echo listening on");
    let echo_ca = PathBuf::from(
        echo_lines
            .iter()
            .find_map(|l| l.strip_prefix("ca "))
            .expect("echo ca"),
    );

    let summary = rt.block_on(async {
        let token = std::fs::read_to_string(data.join("admin.token")).expect("token").trim().to_owned();
        let admin = tessera_client::AdminClient::new(admin_addr, "localhost", &tessera_client::Trust::ca_file(&ca).expect("ca"), tessera_proto::AdminToken::new(token)).expect("admin");
        let created = admin
            .create_pt(&tessera_benches::auto_fleet_args("loadgen"))
            .await
            .expect("pt");
        let pt = created.token.clone();
        let eps = client_endpoints(o.endpoints, &ca, wire::DEVICE_ALPN, true);
        let conns = connect_all(&eps, device_addr, o.connections).await;

        // Provisioning: every device begins and collects its RT.
        let per = o.devices.div_ceil(o.connections);
        let t = Instant::now();
        let (rts, plat) = provision_all(&conns, &pt, o.devices).await;
        let provision = plat.summary((per * o.connections) as u64, t.elapsed().as_secs_f64());

        // Refreshes over the established connections; each worker rotates its devices' RTs.
        // Split each connection's devices among its in-flight slots, so no two requests in
        // flight share a device.
        let inflight = o.inflight.max(1);
        let mut slots: Vec<Vec<String>> = vec![Vec::new(); o.connections * inflight];
        for (w, list) in rts.into_iter().enumerate() {
            for (i, rt) in list.into_iter().enumerate() {
                slots[w * inflight + i % inflight].push(rt);
            }
        }
        let store: Arc<Vec<tokio::sync::Mutex<Vec<String>>>> = Arc::new(slots.into_iter().map(tokio::sync::Mutex::new).collect());
        // The floor: the same connections' worth of echo requests of about the same size.
        let eeps = client_endpoints(o.endpoints, &echo_ca, b"echo", true);
        let econns = connect_all(&eeps, echo_addr, o.connections).await;
        let msg = Arc::new(vec![b'x'; 120]);

        // Refresh and echo phases alternate, `rounds` of each, so drift in the shared
        // machine's speed falls on both alike; the ratio is taken over the sums.
        let me = std::process::id();
        let (echo_pid, rounds) = (echo.id(), o.rounds.max(1));
        let secs_each = (o.seconds / rounds).max(1);
        let (mut refresh_acc, mut echo_acc) = (Phase::default(), Phase::default());
        let mut round_ratios = Vec::new();
        for _ in 0..rounds {
            let st = store.clone();
            let r = Phase::run(server_pid, me, timed(&conns, inflight, secs_each, move |w, c, k| {
                let st = st.clone();
                async move {
                    let mut mine = st[w].lock().await;
                    let i = (k as usize) % mine.len();
                    let r: messages::RefreshResp = tessera_call(&c, kind::REFRESH, &messages::RtReq { rt: mine[i].clone() }).await?;
                    mine[i] = r.registration.rt;
                    Ok(())
                }
            }))
            .await;
            let m = msg.clone();
            let e = Phase::run(echo_pid, me, timed(&econns, inflight, secs_each, move |_, c, _| {
                let m = m.clone();
                async move { rpc(&c, &m).await.map(|_| ()) }
            }))
            .await;
            round_ratios.push((r.rate() / e.rate().max(1.0) * 1000.0).round() / 1000.0);
            refresh_acc.add(r);
            echo_acc.add(e);
        }
        // Group commits so far (provisioning included): jobs per commit under load.
        let commits = admin
            .send(&tessera_proto::admin::requests::Status {})
            .await
            .ok()
            .map(|s| s.engine.commits);
        let refresh = refresh_acc.summary();
        let echo_rr = echo_acc.summary();
        for c in econns.iter().chain(conns.iter()) {
            c.close(0u32.into(), b"");
        }

        // Reconnect storm: full handshakes (no resumption), one refresh each.
        let hs_eps = client_endpoints(o.endpoints, &ca, wire::DEVICE_ALPN, false);
        let st = store.clone();
        let conns_n = o.connections * inflight;
        let tessera_hs = handshake_phase(server_pid, handshakes(hs_eps, device_addr, o.handshake_concurrency, o.seconds, move |c, k| {
            let st = st.clone();
            async move {
                let mut mine = st[(k as usize) % conns_n].lock().await;
                let i = (k as usize / conns_n) % mine.len();
                let r: messages::RefreshResp = tessera_call(&c, kind::REFRESH, &messages::RtReq { rt: mine[i].clone() }).await?;
                mine[i] = r.registration.rt;
                Ok(())
            }
        }))
        .await;
        let ehs_eps = client_endpoints(o.endpoints, &echo_ca, b"echo", false);
        let m = msg.clone();
        let echo_hs = handshake_phase(echo_pid, handshakes(ehs_eps, echo_addr, o.handshake_concurrency, o.seconds, move |c, _| {
            let m = m.clone();
            async move { rpc(&c, &m).await.map(|_| ()) }
        }))
        .await;

        // Idle connections and what they cost the server.
        let idle_eps = client_endpoints(o.endpoints, &ca, wire::DEVICE_ALPN, true);
        let tessera_idle = idle_rss(&idle_eps, device_addr, server_pid, o.idle).await;
        let eidle_eps = client_endpoints(o.endpoints, &echo_ca, b"echo", true);
        let echo_idle = idle_rss(&eidle_eps, echo_addr, echo.id(), o.idle).await;

        let ratio = refresh["per_second"].as_f64().unwrap_or(0.0) / echo_rr["per_second"].as_f64().unwrap_or(1.0).max(1.0);
        json!({
            "machine": { "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0) },
            "seeded_registrations": o.seed,
            "seed_secs": seed_secs,
            "server_startup_secs": startup.as_secs_f64(),
            "server_rss_after_start": rss_seeded,
            "devices": per * o.connections,
            "connections": o.connections,
            "inflight_per_connection": inflight,
            "provision": provision,
            "refresh": refresh,
            "echo_floor": echo_rr,
            "refresh_vs_echo": (ratio * 1000.0).round() / 1000.0,
            "refresh_vs_echo_by_round": round_ratios,
            "store_commits_after_refresh": commits,
            "new_connections_tessera": tessera_hs,
            "new_connections_echo": echo_hs,
            "idle_tessera": tessera_idle,
            "idle_echo": echo_idle,
            "server_rss_end": rss_of(server_pid),
        })
    });
    let _ = server.kill();
    let _ = echo.kill();
    let _ = server.wait();
    let _ = echo.wait();
    println!("{}", serde_json::to_string_pretty(&summary).expect("json"));
}
