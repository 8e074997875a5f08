//! Crash safety of the real `tessera` binary: kill -9 at random moments during a mixed
//! workload (operations, approvals, refreshes, revocations), restart, and check that every
//! acknowledged change is present and no revoked RT is accepted.
//!
//! 20 cycles by default; `TESSERA_CRASH_CYCLES=1000` for long runs. Each restart checks every
//! acknowledgement of the cycle before and a random sample of [`SAMPLE`] earlier ones; the final
//! restart checks every acknowledgement of the run. So a cycle costs the same however many came
//! before it, and a long run grows linearly (docs/reliability.md has the figures).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tessera_client::transport::Transport;
use tessera_client::{AdminClient, Trust};
use tessera_proto::wire::{code, kind, DEVICE_ALPN};
use tessera_proto::AdminToken;

use crate::common::{begin, code_of, introspect, refresh, wait};

/// The `tessera` binary beside this test binary, built (once per test run) if it is not there:
/// `cargo test -p tessera-tests` alone does not build another package's binaries.
pub fn tessera_bin() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let exe = std::env::current_exe().expect("current exe");
            let dir = exe.parent().and_then(Path::parent).expect("target dir");
            let bin = dir.join("tessera");
            if !bin.exists() {
                let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
                let mut cmd = Command::new(cargo);
                cmd.args(["build", "-p", "tessera-server", "--bin", "tessera"]);
                if dir.file_name().is_some_and(|n| n == "release") {
                    cmd.arg("--release");
                }
                let status = cmd.status().expect("run cargo build");
                assert!(
                    status.success() && bin.exists(),
                    "could not build {}",
                    bin.display()
                );
            }
            bin
        })
        .clone()
}

pub struct Proc {
    pub child: Child,
    pub device: SocketAddr,
    pub admin: SocketAddr,
}

/// A server is never left running: a test that fails (panics) still kills its child here.
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start `tessera serve` on ephemeral loopback ports and wait until it says where it listens.
pub fn spawn_server(dir: &Path) -> Proc {
    spawn_server_with(dir, "")
}

/// [`spawn_server`] with extra configuration (TOML).
pub fn spawn_server_with(dir: &Path, toml: &str) -> Proc {
    // Inside the data directory, so it goes with the test's temporary directory.
    std::fs::create_dir_all(dir).expect("data dir");
    let config = dir.join("test-config.toml");
    std::fs::write(&config, toml).expect("write config");
    let mut child = Command::new(tessera_bin())
        .args(tessera_server::server::banner::EPHEMERAL_SERVE)
        .args(["--metrics-addr", "off", "--log", "warn"])
        .arg("--data-dir")
        .arg(dir)
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn tessera serve");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut device = None;
    let mut admin = None;
    while device.is_none() || admin.is_none() {
        let line = lines
            .next()
            .expect("server printed its addresses")
            .expect("read");
        use tessera_server::server::banner;
        if let Some(a) = banner::address(&line, banner::DEVICE) {
            device = Some(a);
        } else if let Some(a) = banner::address(&line, banner::ADMIN) {
            admin = Some(a);
        }
    }
    // Keep draining stdout so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Proc {
        child,
        device: device.expect("device addr"),
        admin: admin.expect("admin addr"),
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Ack {
    Provisioned { device: String, registration: u64 },
    Refreshed { device: String, generation: u32 },
    Revoked { rt: String },
}

/// The servers' configuration: the final check looks every device up, one admin request each,
/// more than the default per-token limit allows.
pub(crate) const CONFIG: &str = "admin_burst = 1000000000\nadmin_per_minute = 1000000000\n";

/// Acknowledgements from before the previous cycle that each restart checks again, at random.
pub(crate) const SAMPLE: usize = 64;

pub(crate) fn cycles() -> usize {
    std::env::var("TESSERA_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_mixed_workload_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut pt: Option<String> = None;
    let mut all_acks: Vec<Ack> = Vec::new();
    // Where the previous cycle's acknowledgements start in `all_acks`.
    let mut previous = 0;
    for cycle in 0..cycles() {
        let mut proc = spawn_server_with(dir.path(), CONFIG);
        let (trust, admin) = connect_admin(dir.path(), &proc);
        let admin = Arc::new(admin);

        // The previous cycle's acknowledgements are all there, and so is a sample of the rest.
        let mut check: Vec<&Ack> = all_acks[previous..].iter().collect();
        for _ in 0..SAMPLE.min(previous) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            check.push(&all_acks[(seed % previous as u64) as usize]);
        }
        verify(&admin, &trust, proc.device, &check).await;
        previous = all_acks.len();

        let pt_text = match &pt {
            Some(p) => p.clone(),
            None => {
                let p = admin
                    .create_pt(&crate::common::pt_args(json!({ "label": "crash", "kind": "fleet", "max_registrations": 1_000_000, "approval": "manual" })))
                    .await
                    .unwrap()
                    .token
                    .clone();
                pt = Some(p.clone());
                p
            }
        };
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let kill_after = 5 + (seed % 60) as usize;
        let acks: Arc<Mutex<Vec<Ack>>> = Arc::default();
        let mut tasks = tokio::task::JoinSet::new();
        for w in 0..4 {
            let (acks, admin, trust, pt_text) =
                (acks.clone(), admin.clone(), trust.clone(), pt_text.clone());
            let device_addr = proc.device;
            tasks.spawn(workload(
                device_addr,
                trust,
                admin,
                pt_text,
                format!("c{cycle}-w{w}"),
                acks,
                OnError::Stop,
            ));
        }
        // Kill once enough has been acknowledged; the workload is mid-flight at that moment.
        loop {
            if acks.lock().unwrap().len() >= kill_after {
                break;
            }
            if let Some(r) = tokio::time::timeout(Duration::from_millis(2), tasks.join_next())
                .await
                .ok()
                .flatten()
            {
                panic!("cycle {cycle}: a worker stopped before the kill: {r:?}");
            }
        }
        proc.child.kill().expect("SIGKILL");
        let _ = proc.child.wait();
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        let acks = acks.lock().unwrap().clone();
        assert!(acks.len() >= kill_after);
        all_acks.extend(acks);
    }
    // One last restart checks every acknowledgement of the run.
    let mut proc = spawn_server_with(dir.path(), CONFIG);
    let (trust, admin) = connect_admin(dir.path(), &proc);
    verify(
        &admin,
        &trust,
        proc.device,
        &all_acks.iter().collect::<Vec<_>>(),
    )
    .await;
    proc.child.kill().unwrap();
    let _ = proc.child.wait();
    assert!(
        all_acks.iter().any(|a| matches!(a, Ack::Revoked { .. })),
        "the workload never revoked anything"
    );
}

/// What a workload does when a request fails.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnError {
    /// Stop (one server: a failure means it was killed).
    Stop,
    /// Go on with the next device (several nodes: a node may fail a request or two while it
    /// reconnects after a fault elsewhere).
    Continue,
}

/// The crash tests' mixed workload, until it is aborted (or, with [`OnError::Stop`], a request
/// fails): devices `PREFIX-0, PREFIX-1, …` begin on `device_addr` and are approved through
/// `admin`, collect their RT and refresh it twice; every third is then revoked. Every
/// acknowledged step is pushed to `acks`.
pub(crate) async fn workload(
    device_addr: SocketAddr,
    trust: Trust,
    admin: Arc<AdminClient>,
    pt: String,
    prefix: String,
    acks: Arc<Mutex<Vec<Ack>>>,
    on_error: OnError,
) {
    let t = Transport::new(
        device_addr,
        "localhost",
        &trust,
        DEVICE_ALPN,
        Duration::from_secs(5),
    )
    .unwrap();
    macro_rules! or_next {
        ($e:expr) => {
            match $e {
                Ok(v) => v,
                Err(_) if on_error == OnError::Continue => continue,
                Err(_) => return,
            }
        };
    }
    'devices: for i in 0u32.. {
        let device = format!("{prefix}-{i}");
        let op = or_next!(begin(&t, &pt, Some(&device), &device).await);
        let reg = or_next!(admin.approve(&op.operation_id, None, None).await);
        let registration = reg.registration.id.get();
        acks.lock().unwrap().push(Ack::Provisioned {
            device: device.clone(),
            registration,
        });
        let got = or_next!(wait(&t, &op, 0).await);
        let mut rt = got.registration.unwrap().rt;
        for _ in 0..2 {
            let r = match refresh(&t, &rt).await {
                Ok(r) => r,
                Err(_) if on_error == OnError::Continue => continue 'devices,
                Err(_) => return,
            };
            rt = r.registration.rt;
            acks.lock().unwrap().push(Ack::Refreshed {
                device: device.clone(),
                generation: r.registration.generation,
            });
        }
        if i % 3 == 0 {
            or_next!(admin.revoke_registration(registration, "crash test").await);
            acks.lock().unwrap().push(Ack::Revoked { rt });
        }
    }
}

/// The CA trust and an admin client (first admin token) for a server spawned on `dir`.
pub(crate) fn connect_admin(dir: &Path, proc: &Proc) -> (Trust, AdminClient) {
    let trust = Trust::ca_file(&dir.join("tls/ca.pem")).unwrap();
    let token = std::fs::read_to_string(dir.join("admin.token"))
        .unwrap()
        .trim()
        .to_owned();
    let admin = AdminClient::new(proc.admin, "localhost", &trust, AdminToken::new(token)).unwrap();
    (trust, admin)
}

pub(crate) async fn verify(
    admin: &AdminClient,
    trust: &Trust,
    device_addr: SocketAddr,
    acks: &[&Ack],
) {
    let t = Transport::new(
        device_addr,
        "localhost",
        trust,
        DEVICE_ALPN,
        Duration::from_secs(5),
    )
    .unwrap();
    // One lookup per device (not one list of every registration): the cost of a check depends
    // on how many acknowledgements it looks at, not on how large the store has grown.
    let mut regs: std::collections::HashMap<String, Option<serde_json::Value>> =
        std::collections::HashMap::new();
    for a in acks {
        let device = match a {
            Ack::Provisioned { device, .. } | Ack::Refreshed { device, .. } => device,
            Ack::Revoked { .. } => continue,
        };
        if !regs.contains_key(device) {
            let v = admin
                .call(
                    kind::DEVICE_LIST,
                    json!({ "device_id": device, "limit": 10 }),
                )
                .await
                .unwrap();
            regs.insert(
                device.clone(),
                v["registrations"].as_array().unwrap().first().cloned(),
            );
        }
    }
    let by_device = |d: &str| regs.get(d).cloned().flatten();
    for a in acks {
        match *a {
            Ack::Provisioned {
                device,
                registration,
            } => {
                let r = by_device(device)
                    .unwrap_or_else(|| panic!("acknowledged registration of {device} lost"));
                assert_eq!(r["id"].as_u64(), Some(*registration));
            }
            Ack::Refreshed { device, generation } => {
                let r =
                    by_device(device).unwrap_or_else(|| panic!("registration of {device} lost"));
                assert!(
                    r["generation"].as_u64().unwrap() >= u64::from(*generation),
                    "refresh of {device} to {generation} lost: {r}"
                );
            }
            Ack::Revoked { rt } => {
                // Refused, never accepted. A node of a shared store may first answer
                // "unavailable" while it catches up after a fault; it must then refuse.
                let deadline = std::time::Instant::now() + Duration::from_secs(10);
                loop {
                    let e = introspect(&t, rt)
                        .await
                        .expect_err("a revoked RT was accepted after restart");
                    let c = code_of(&e);
                    if c == code::REVOKED {
                        break;
                    }
                    assert!(
                        c == code::UNAVAILABLE && std::time::Instant::now() < deadline,
                        "a revoked RT got {e:?}"
                    );
                    tokio::task::yield_now().await;
                }
            }
        }
    }
}
