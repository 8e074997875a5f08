//! MQTT CONNECTs per second through the Tessera Mosquitto plugin, in local mode and in remote mode
//! with a warm cache, against the same broker letting everyone in (the floor), side by side in one
//! run; then remote mode with a cold cache (devices the broker has never seen); then the delay
//! from a revocation being acknowledged to the broker closing that device's session, in both
//! modes.
//!
//! `make -C ffi/mosquitto` first (the plugin), then:
//! `cargo run --release -p tessera-benches --bin mqtt_connect -- --devices 200 --workers 16
//!  --secs 5 --rounds 3 --cold 1000 --revocations 100`
//!
//! A Tessera server runs in this process (the remote mode's plugin talks to its admin endpoint
//! over QUIC; the local mode's reads its data directory). The load client is rumqttc: each
//! worker opens a connection, waits for its CONNACK, and disconnects, over and over, with one of
//! the provisioned devices' id and RT.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, ConnectReturnCode, Event, MqttOptions, Packet};
use tessera_benches::{numeric_flags, percentile, provision};
use tessera_engine::{Actor, Engine, Provisioned, Timestamp};

struct Broker {
    child: Child,
    port: u16,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[allow(clippy::zombie_processes)] // a broker that does not start panics the benchmark
fn start_broker(dir: &Path, name: &str, extra: &str) -> Broker {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let conf = dir.join(format!("{name}.conf"));
    std::fs::write(
        &conf,
        format!("listener {port} 127.0.0.1\npersistence false\nlog_type error\n{extra}"),
    )
    .unwrap();
    let bin = if Path::new("/usr/sbin/mosquitto").exists() {
        "/usr/sbin/mosquitto"
    } else {
        "mosquitto"
    };
    let child = Command::new(bin)
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto");
    for _ in 0..500 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Broker { child, port };
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("mosquitto ({name}) did not start");
}

/// One CONNECT: `Ok(true)` when accepted.
async fn connect_once(port: u16, client_id: String, user: &str, password: &str) -> bool {
    let mut o = MqttOptions::new(client_id, "127.0.0.1", port);
    o.set_credentials(user, password);
    o.set_keep_alive(Duration::from_secs(30));
    let (client, mut events) = AsyncClient::new(o, 4);
    let accepted = loop {
        match events.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                break ack.code == ConnectReturnCode::Success
            }
            Ok(_) => continue,
            Err(_) => break false,
        }
    };
    if accepted {
        let _ = client.disconnect().await;
        // Drive the DISCONNECT out; the broker closes the connection.
        while events.poll().await.is_ok() {}
    }
    accepted
}

/// CONNECT until accepted (remote mode refuses an RT it has not seen while it asks the server);
/// returns the number of attempts.
async fn connect_until_accepted(port: u16, client_id: String, user: &str, password: &str) -> u32 {
    for attempt in 1..=1000 {
        if connect_once(port, client_id.clone(), user, password).await {
            return attempt;
        }
    }
    panic!("{user} never got in");
}

/// Devices the broker has never seen, each connecting until accepted, `workers` at a time:
/// accepted first CONNECTs per second, and the mean number of attempts each took.
fn cold_rate(
    rt: &tokio::runtime::Runtime,
    port: u16,
    devices: &Arc<Vec<(String, String)>>,
    workers: usize,
) -> (f64, f64) {
    let next = Arc::new(AtomicU64::new(0));
    let attempts = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    rt.block_on(async {
        let mut tasks = Vec::new();
        for w in 0..workers {
            let (devices, next, attempts) = (devices.clone(), next.clone(), attempts.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                    let Some((user, password)) = devices.get(i) else {
                        break;
                    };
                    let n = connect_until_accepted(port, format!("cold-{w}"), user, password).await;
                    attempts.fetch_add(n.into(), Ordering::Relaxed);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    let n = devices.len() as f64;
    (
        n / start.elapsed().as_secs_f64(),
        attempts.load(Ordering::Relaxed) as f64 / n,
    )
}

/// Let every device in once, so that remote mode's cache knows its RT.
fn warm(rt: &tokio::runtime::Runtime, port: u16, devices: &Arc<Vec<(String, String)>>) {
    let _ = cold_rate(rt, port, devices, 16);
}

/// CONNECTs per second over `secs` with `workers` connections at a time.
fn connect_rate(
    rt: &tokio::runtime::Runtime,
    port: u16,
    devices: &Arc<Vec<(String, String)>>,
    workers: usize,
    secs: u64,
) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    rt.block_on(async {
        let mut tasks = Vec::new();
        for w in 0..workers {
            let (devices, done, refused) = (devices.clone(), done.clone(), refused.clone());
            tasks.push(tokio::spawn(async move {
                let mut i = w;
                while Instant::now() < end {
                    let (user, password) = &devices[i % devices.len()];
                    let ok = connect_once(port, format!("bench-{w}"), user, password).await;
                    if ok { &done } else { &refused }.fetch_add(1, Ordering::Relaxed);
                    i += workers;
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    let n = refused.load(Ordering::Relaxed);
    assert_eq!(n, 0, "{n} CONNECTs were refused");
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

/// For each device: connect, revoke its registration, and time until the broker closes it.
/// Meanwhile the event loop keeps the connection (and its keep-alive) going.
fn revocation_delays(
    rt: &tokio::runtime::Runtime,
    engine: &Engine,
    port: u16,
    devices: &[Provisioned],
) -> Vec<Duration> {
    let operator = Actor::operator("bench");
    devices
        .iter()
        .map(|d| {
            rt.block_on(async {
                let mut o =
                    MqttOptions::new(format!("rev-{}", d.registration_id), "127.0.0.1", port);
                o.set_credentials(d.device_id.as_str(), d.rt.expose());
                o.set_keep_alive(Duration::from_secs(30));
                // In remote mode the broker learns the RT first.
                connect_until_accepted(port, "warm".into(), d.device_id.as_str(), d.rt.expose())
                    .await;
                let (_client, mut events) = AsyncClient::new(o, 4);
                loop {
                    match events.poll().await {
                        Ok(Event::Incoming(Packet::ConnAck(a))) => {
                            assert_eq!(a.code, ConnectReturnCode::Success);
                            break;
                        }
                        Ok(_) => {}
                        Err(e) => panic!("connect: {e}"),
                    }
                }
                // Revoke at a spread of moments after the CONNECT (0–499 ms), not in step with
                // the plugin's periodic check.
                let spread = (d.registration_id.get() * 7_919) % 500;
                tokio::time::sleep(Duration::from_millis(spread)).await;
                engine
                    .revoke_registration(
                        d.registration_id,
                        "bench",
                        &operator,
                        Timestamp::now_from_system_clock(),
                    )
                    .expect("revoke");
                let acknowledged = Instant::now();
                while events.poll().await.is_ok() {}
                acknowledged.elapsed()
            })
        })
        .collect()
}

fn main() {
    let flags = numeric_flags();
    let flag = |name: &str, default: u64| tessera_benches::flag(&flags, name, default);
    let (n_devices, workers) = (flag("devices", 200) as usize, flag("workers", 16) as usize);
    let (secs, rounds, n_revocations) =
        (flag("secs", 5), flag("rounds", 3), flag("revocations", 100));
    let n_cold = flag("cold", 1000) as usize;
    let plugin =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../ffi/mosquitto/mosquitto_tessera.so");
    assert!(
        plugin.exists(),
        "build the plugin first: make -C ffi/mosquitto"
    );

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let server = server_rt.block_on(async {
        tessera_server::Server::start(tessera_server::ServerConfig::ephemeral(data.clone()))
            .await
            .expect("server")
    });
    let engine = server.engine();
    let now = Timestamp::now_from_system_clock();
    let provisioned = provision(engine, n_devices + n_cold + 2 * n_revocations as usize, now);
    let (load, rest) = provisioned.split_at(n_devices);
    let (cold, to_revoke) = rest.split_at(n_cold);
    let (revoke_local, revoke_remote) = to_revoke.split_at(n_revocations as usize);
    let pairs = |ps: &[Provisioned]| -> Arc<Vec<(String, String)>> {
        Arc::new(
            ps.iter()
                .map(|p| (p.device_id.as_str().to_owned(), p.rt.expose().to_owned()))
                .collect(),
        )
    };
    let (devices, cold) = (pairs(load), pairs(cold));

    let token_file = dir.path().join("service.token");
    let token = server_rt.block_on(async {
        let trust = tessera_client::Trust::ca_file(&server.ca_cert_path()).unwrap();
        let admin = tessera_client::AdminClient::new(
            server.admin_addr(),
            "localhost",
            &trust,
            server
                .first_admin_token()
                .expect("first admin token")
                .clone(),
        )
        .unwrap();
        let v = admin
            .call(
                tessera_proto::wire::kind::TOKEN_CREATE,
                serde_json::json!({ "name": "bench-broker", "role": "service" }),
            )
            .await
            .expect("service token");
        admin.close().await;
        v["token"].as_str().unwrap().to_owned()
    });
    std::fs::write(&token_file, token).unwrap();

    let floor = start_broker(dir.path(), "floor", "allow_anonymous true\n");
    let local = start_broker(
        dir.path(),
        "local",
        &format!(
            "user root\nplugin {}\nplugin_opt_data_dir {}\n",
            plugin.display(),
            data.display()
        ),
    );
    let remote_config = format!(
        "user root\nplugin {}\nplugin_opt_server {}\nplugin_opt_server_name localhost\n\
         plugin_opt_ca_file {}\nplugin_opt_token_file {}\n",
        plugin.display(),
        server.admin_addr(),
        server.ca_cert_path().display(),
        token_file.display()
    );
    let remote = start_broker(dir.path(), "remote", &remote_config);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "mqtt_connect: {n_devices} devices, {workers} connections at a time, {rounds} rounds of \
         {secs} s each; broker, Tessera server and load client on one machine ({} cores)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let (mut f, mut l, mut r) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=rounds {
        // The order of the three turns each round, so that none is always first.
        for k in 0..3 {
            match (k + round as usize) % 3 {
                0 => f.push(connect_rate(&rt, floor.port, &devices, workers, secs)),
                1 => l.push(connect_rate(&rt, local.port, &devices, workers, secs)),
                _ => {
                    // Let every device in first: remote mode must have seen each RT once.
                    warm(&rt, remote.port, &devices);
                    r.push(connect_rate(&rt, remote.port, &devices, workers, secs));
                }
            }
        }
        let (fl, ll, rl) = (f[f.len() - 1], l[l.len() - 1], r[r.len() - 1]);
        println!(
            "round {round}: allow_anonymous {fl:.0}/s, plugin local {ll:.0}/s ({:.2}), \
             plugin remote warm {rl:.0}/s ({:.2})",
            ll / fl,
            rl / fl
        );
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (fm, lm, rm) = (mean(&f), mean(&l), mean(&r));
    println!(
        "mean: allow_anonymous {fm:.0}/s, plugin local {lm:.0}/s, ratio {:.2}; plugin remote \
         warm {rm:.0}/s, ratio {:.2}",
        lm / fm,
        rm / fm
    );

    if !cold.is_empty() {
        let cold_broker = start_broker(dir.path(), "remote-cold", &remote_config);
        let (rate, attempts) = cold_rate(&rt, cold_broker.port, &cold, workers);
        println!(
            "remote cold cache: {} devices never seen, {rate:.0} accepted first CONNECTs/s, \
             {attempts:.2} attempts each (the first is refused while the server is asked)",
            cold.len()
        );
    }

    for (name, broker, devices) in [
        ("local", &local, revoke_local),
        ("remote", &remote, revoke_remote),
    ] {
        let mut delays = revocation_delays(&rt, engine, broker.port, devices);
        delays.sort();
        println!(
            "{name}: revocation to disconnect over {} revocations: p50 {:?}, p99 {:?}, max {:?}",
            delays.len(),
            percentile(&delays, 0.5),
            percentile(&delays, 0.99),
            delays[delays.len() - 1]
        );
    }
    drop((floor, local, remote));
    server_rt.block_on(server.shutdown(Duration::from_secs(1)));
}
