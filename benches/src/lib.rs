//! Shared fixtures for Tessera's benchmarks and scale measurements.
//!
//! The criterion benches live in `benches/benches/`; `engine_scale` (in `src/bin/`) measures
//! engine open time and memory with a million registrations.

use std::path::Path;
use std::time::Duration;

use tessera_engine::{
    Actor, ApprovalPolicy, BeginRequest, DeviceIdPolicy, Engine, EngineConfig, OperationStatus,
    Provisioned, PtKind, PtSpec, Rate, Timestamp,
};

/// The fixed instant benchmarks run at.
pub fn bench_now() -> Timestamp {
    Timestamp::from_unix_secs(1_800_000_000)
}

/// An engine config without rate limits in the way.
pub fn lenient_config() -> EngineConfig {
    let mut c = EngineConfig::default();
    c.source_rate(Rate::new(u32::MAX, u32::MAX))
        .pt_rates(Rate::new(u32::MAX, u32::MAX), Rate::new(u32::MAX, u32::MAX))
        .max_pending(1000, 1_000_000)
        .refresh_rate(Rate::new(u32::MAX, u32::MAX));
    c
}

/// A fleet PT spec with automatic approval.
/// The arguments of an automatic fleet PT with room for every device a benchmark makes, for
/// benchmarks that go through the admin endpoint.
pub fn auto_fleet_args(label: &str) -> tessera_proto::admin::requests::PtArgs {
    tessera_proto::admin::requests::PtArgs {
        kind: Some("fleet".into()),
        max_registrations: Some(100_000_000),
        approval: Some("automatic".into()),
        ..tessera_proto::admin::requests::PtArgs::new(label)
    }
}

pub fn auto_fleet() -> PtSpec {
    PtSpec {
        label: "bench".into(),
        kind: PtKind::Fleet {
            max_registrations: u64::MAX,
        },
        approval: ApprovalPolicy::Automatic,
        rt_lifetime: Duration::from_secs(30 * 86_400),
        device_id_policy: DeviceIdPolicy::Either,
        expires_at: None,
    }
}

/// A fleet PT whose operations wait for a technician (a factory line), RTs of one day.
pub fn manual_fleet() -> PtSpec {
    PtSpec {
        approval: ApprovalPolicy::Manual,
        rt_lifetime: Duration::from_secs(86_400),
        ..auto_fleet()
    }
}

/// Provision `n` devices through the real flow (automatic policy) and return them.
pub fn provision(engine: &Engine, n: usize, now: Timestamp) -> Vec<Provisioned> {
    let (_, pt) = engine
        .create_pt(&auto_fleet(), &Actor::operator("bench"), now)
        .expect("create pt");
    (0..n)
        .map(|i| {
            let op = engine
                .begin_operation(
                    BeginRequest {
                        pt: pt.clone(),
                        requested_device_id: Some(format!("bench-{i}").parse().expect("device id")),
                        attributes: Default::default(),
                        instance_nonce: format!("bench-instance-{i:016}").into_bytes(),
                    },
                    &Actor::device(None),
                    now,
                )
                .expect("begin");
            match engine
                .poll_operation(
                    &op.operation_id,
                    op.secret.expose(),
                    &Actor::device(None),
                    now,
                )
                .expect("poll")
            {
                OperationStatus::Provisioned(p) => p,
                other => panic!("not provisioned: {other:?}"),
            }
        })
        .collect()
}

/// Write `n` active registrations straight into a fresh data directory's SQLite file, as
/// a fixture for scale measurements (creating them one by one through approvals would measure
/// the approval path instead). The engine must have been opened on `dir` once to create the
/// schema; rows follow the schema in `engine/src/store/schema.rs`.
pub fn seed_registrations(dir: &Path, n: u64, now: Timestamp) -> rusqlite::Result<()> {
    let mut conn = rusqlite::Connection::open(dir.join(tessera_engine::store::DATABASE_FILE))?;
    let tx = conn.transaction()?;
    {
        let mut st = tx.prepare(
            "INSERT INTO registrations (device_id, pt_id, operation_id, active, generation, key_epoch, \
             issued_at, expires_at, lifetime, created_at) VALUES (?1, ?2, ?3, 1, 1, 1, ?4, ?5, ?6, ?7)",
        )?;
        let secs = now.unix_secs() as i64;
        let life = 30 * 86_400i64;
        for i in 0..n {
            let mut op = [0u8; 16];
            op[..8].copy_from_slice(&i.to_be_bytes());
            st.execute(rusqlite::params![
                format!("seed-{i:08}"),
                &[0u8; 20][..],
                &op[..],
                secs,
                secs + life,
                life,
                now.unix_millis() as i64
            ])?;
        }
    }
    tx.commit()
}

/// The `p` quantile (0 to 1) of `sorted` latencies, nearest rank. `sorted` is not empty.
pub fn percentile(sorted: &[std::time::Duration], p: f64) -> std::time::Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// The number given as `--name NUMBER` on the command line, or `default`.
pub fn flag(flags: &[(String, u64)], name: &str, default: u64) -> u64 {
    flags
        .iter()
        .find(|(k, _)| k.strip_prefix("--") == Some(name))
        .map_or(default, |(_, v)| *v)
}

/// The command line's `--name NUMBER` pairs, in order (panics on a flag without a number).
pub fn numeric_flags() -> Vec<(String, u64)> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    args.chunks(2)
        .map(|w| {
            let v = w
                .get(1)
                .and_then(|x| x.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("{} needs a number", w[0]));
            (w[0].clone(), v)
        })
        .collect()
}

/// A temporary directory for a scale measurement, under `TESSERA_SCALE_DIR` (default
/// `target`, which is on the same disk as the build).
pub fn scale_dir() -> tempfile::TempDir {
    let base = std::env::var_os("TESSERA_SCALE_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from("target"));
    tempfile::tempdir_in(base).expect("tempdir")
}

/// Resident set size of this process, in bytes (Linux).
pub fn rss_bytes() -> u64 {
    rss_of(std::process::id())
}

/// Resident set size of process `pid`, in bytes (Linux; 0 if unknown).
pub fn rss_of(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// CPU time (user + system) in seconds of the process or thread whose `/proc` directory is
/// `proc_dir` (`/proc/PID`, `/proc/self/task/TID`; Linux, 100 ticks per second; 0 if unknown).
pub fn cpu_secs(proc_dir: &str) -> f64 {
    std::fs::read_to_string(format!("{proc_dir}/stat"))
        .ok()
        .and_then(|s| {
            // Fields after the command name (which is in parentheses and may hold spaces).
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some((f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) / 100.0)
        })
        .unwrap_or(0.0)
}

/// The `/proc` directory of the thread of process `proc_dir` (`/proc/PID`, `/proc/self`) whose
/// name starts with `name` (Linux truncates thread names to 15 bytes).
pub fn thread_named(proc_dir: &str, name: &str) -> Option<String> {
    std::fs::read_dir(format!("{proc_dir}/task"))
        .ok()?
        .filter_map(Result::ok)
        .find(|e| {
            std::fs::read_to_string(e.path().join("comm"))
                .is_ok_and(|c| c.trim_end().starts_with(name))
        })
        .map(|e| format!("{proc_dir}/task/{}", e.file_name().to_string_lossy()))
}

/// CPU seconds of process `proc_dir`'s live threads, summed by thread name (digits at the end
/// of a name dropped, so a pool's threads count together).
pub fn cpu_by_thread(proc_dir: &str) -> std::collections::BTreeMap<String, f64> {
    let mut by = std::collections::BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("{proc_dir}/task")) else {
        return by;
    };
    for e in tasks.filter_map(Result::ok) {
        let Ok(name) = std::fs::read_to_string(e.path().join("comm")) else {
            continue;
        };
        let name = name
            .trim_end()
            .trim_end_matches(|c: char| c.is_ascii_digit() || c == '-')
            .to_owned();
        *by.entry(name).or_insert(0.0) += cpu_secs(&e.path().to_string_lossy());
    }
    by
}

/// Open an engine on `dir` with the lenient benchmark config.
pub fn open(dir: &Path) -> Engine {
    Engine::open_dir(dir, lenient_config(), bench_now()).expect("open engine")
}

/// [`open`] with store options of its own (the software keeper, as `open` uses).
pub fn open_with(dir: &Path, options: &tessera_engine::store::SqliteOptions) -> Engine {
    let store = tessera_engine::store::SqliteStore::open(dir, options).expect("open store");
    let keeper = tessera_engine::SoftwareKeeper::open_or_create(dir).expect("root key");
    Engine::open(store, keeper, lenient_config(), bench_now()).expect("open engine")
}

/// A PKCS#11 keeper from the test-token environment (scripts/softhsm-env.sh), creating the key
/// `tessera-bench-root` on first use; `None` when that environment is not set.
pub fn pkcs11_from_env() -> Option<tessera_engine::keys::Pkcs11Keeper> {
    use tessera_engine::keys::{Pkcs11Config, Pkcs11Keeper};
    let cfg = Pkcs11Config {
        module: std::env::var("TESSERA_TEST_PKCS11_MODULE").ok()?.into(),
        token_label: Some(std::env::var("TESSERA_TEST_PKCS11_TOKEN").ok()?),
        slot: None,
        pin: std::env::var("TESSERA_TEST_PKCS11_PIN").ok()?.into(),
        key_label: "tessera-bench-root".into(),
    };
    let k = Pkcs11Keeper::open(&cfg)
        .or_else(|_| Pkcs11Keeper::init_root_key(&cfg).and_then(|()| Pkcs11Keeper::open(&cfg)));
    if let Err(e) = &k {
        eprintln!("PKCS#11 keeper unavailable: {e}");
    }
    k.ok()
}

/// The binary `name` beside this one (the release build's `tessera`, `echo_server`).
pub fn sibling(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("exe");
    let p = exe.parent().expect("dir").join(name);
    assert!(
        p.exists(),
        "{} missing; build with `cargo build --release -p tessera-server -p tessera-benches`",
        p.display()
    );
    p
}

/// Spawn a process and wait for the line that starts with `marker`; returns the child, the
/// address on that line, the lines printed so far and how long it took.
#[allow(clippy::zombie_processes)] // the caller kills and waits for the child
pub fn spawn_until(
    mut cmd: std::process::Command,
    marker: &str,
) -> (
    std::process::Child,
    std::net::SocketAddr,
    Vec<String>,
    std::time::Duration,
) {
    use std::io::BufRead;
    let start = std::time::Instant::now();
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let mut lines = std::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut seen = Vec::new();
    loop {
        let line = lines.next().expect("output").expect("line");
        seen.push(line.clone());
        if line.starts_with(marker) {
            let addr = line
                .split_whitespace()
                .find_map(|w| w.parse().ok())
                .expect("address");
            let took = start.elapsed();
            // Collect a few more lines (admin address, CA path), without blocking for long.
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                for l in lines.map_while(Result::ok) {
                    let _ = tx.send(l);
                }
            });
            while let Ok(l) = rx.recv_timeout(std::time::Duration::from_millis(300)) {
                seen.push(l);
            }
            return (child, addr, seen, took);
        }
    }
}
