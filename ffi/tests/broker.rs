//! The Mosquitto plugin (ffi/mosquitto) in a real broker from Debian, against a real Tessera
//! server in this process, with the clients from mosquitto-clients and the example firmware:
//! who gets in, which topics each device may use, and sessions ended by revocation.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{free_port, make_with_test_lib, root, Broker};
use tessera_client::{AdminClient, DeviceClient, DeviceConfig, NoHooks, Trust};
use tessera_proto::wire::kind;
use tessera_proto::wire::messages::RtBody;

/// The plugin, built once per run against the test build of libtessera (the `platform` shape).
fn plugin() -> &'static Path {
    static PLUGIN: OnceLock<PathBuf> = OnceLock::new();
    PLUGIN.get_or_init(|| {
        let dir = root().join("ffi/mosquitto");
        make_with_test_lib(&dir, &["mosquitto_tessera.so"]);
        dir.join("mosquitto_tessera.so")
    })
}

/// A Tessera server with a PT whose devices are approved automatically.
struct Platform {
    rt: tokio::runtime::Runtime,
    server: Option<tessera_server::Server>,
    admin: AdminClient,
    trust: Trust,
    pt: String,
    dir: tempfile::TempDir,
}

impl Platform {
    fn start() -> Platform {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let (server, admin, trust, pt) = rt.block_on(async {
            let server =
                tessera_server::Server::start(tessera_server::ServerConfig::ephemeral(data))
                    .await
                    .unwrap();
            let trust = Trust::ca_file(&server.ca_cert_path()).unwrap();
            let token = server.first_admin_token().unwrap().clone();
            let admin = AdminClient::new(server.admin_addr(), "localhost", &trust, token).unwrap();
            let (_, pt) = admin
                .create_pt(serde_json::json!({
                    "label": "broker", "kind": "fleet", "max_registrations": 100,
                    "approval": "automatic"
                }))
                .await
                .unwrap();
            (server, admin, trust, pt)
        });
        Platform {
            rt,
            server: Some(server),
            admin,
            trust,
            pt,
            dir,
        }
    }

    fn server(&self) -> &tessera_server::Server {
        self.server.as_ref().expect("server running")
    }

    /// A provisioned device: its client (to refresh) and its current RT.
    fn device(&self) -> (DeviceClient, RtBody) {
        self.device_with(&self.pt)
    }

    fn device_with(&self, pt: &str) -> (DeviceClient, RtBody) {
        let cfg = DeviceConfig::new(
            self.server().device_addr(),
            "localhost",
            self.trust.clone(),
            pt.to_owned().into(),
        );
        self.rt.block_on(async {
            let d = DeviceClient::new(cfg, Box::new(NoHooks)).unwrap();
            let rt = d.ensure_registered(Duration::from_secs(30)).await.unwrap();
            (d, rt)
        })
    }

    /// A broker with the plugin in local mode on this server's data directory.
    fn broker(&self) -> Broker {
        self.broker_on(free_port())
    }

    fn broker_on(&self, port: u16) -> Broker {
        Broker::start(
            self.dir.path(),
            port,
            &format!(
                "plugin {}\nplugin_opt_data_dir {}\n",
                plugin().display(),
                self.dir.path().join("data").display()
            ),
        )
    }

    fn revoke(&self, registration_id: u64) {
        self.rt
            .block_on(self.admin.revoke_registration(registration_id, "test"))
            .unwrap();
    }
}

impl Drop for Platform {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            self.rt.block_on(server.shutdown(Duration::from_secs(1)));
        }
    }
}

fn mosquitto_client(bin: &str) -> Command {
    let path = Path::new("/usr/bin").join(bin);
    Command::new(if path.exists() { path } else { bin.into() })
}

/// `mosquitto_sub` as `device` on `topics` (more arguments may follow).
fn subscriber(broker: &Broker, device: &RtBody, topics: &[&str]) -> Command {
    let mut c = mosquitto_client("mosquitto_sub");
    c.args(["-h", "127.0.0.1", "-p", &broker.port.to_string()])
        .args(["-u", &device.device_id, "-P", &device.rt]);
    for t in topics {
        c.args(["-t", t]);
    }
    c
}

/// Publish one message with `mosquitto_pub` (QoS 1, so a refused CONNECT fails the command).
fn publish(broker: &Broker, user: &str, password: &str, topic: &str) -> Output {
    mosquitto_client("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &broker.port.to_string()])
        .args([
            "-u", user, "-P", password, "-t", topic, "-m", "hello", "-q", "1",
        ])
        .output()
        .expect("mosquitto_pub (Debian package mosquitto-clients)")
}

fn refused(out: &Output) -> bool {
    !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("not authorised")
}

/// Who gets in: a good RT with its own device id, and nothing else; the log says why and never
/// shows the token.
#[test]
fn only_a_live_rt_with_its_own_device_id_connects() {
    let p = Platform::start();
    let broker = p.broker();
    let (a_client, a) = p.device();
    let (_, b) = p.device();
    let (_, c) = p.device();
    let topic = |d: &RtBody| format!("devices/{}/telemetry", d.device_id);

    let ok = publish(&broker, &a.device_id, &a.rt, &topic(&a));
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );

    // Another device's RT under this device's name, garbage, a mistyped RT, nothing.
    assert!(refused(&publish(&broker, &a.device_id, &b.rt, &topic(&a))));
    assert!(refused(&publish(
        &broker,
        &a.device_id,
        "hunter2",
        &topic(&a)
    )));
    let mut mistyped = a.rt.clone().into_bytes();
    mistyped[20] = if mistyped[20] == b'A' { b'B' } else { b'A' };
    let mistyped = String::from_utf8(mistyped).unwrap();
    assert!(refused(&publish(
        &broker,
        &a.device_id,
        &mistyped,
        &topic(&a)
    )));
    assert!(refused(&publish(&broker, &a.device_id, "", &topic(&a))));

    // Superseded: the device refreshed, so its old RT no longer opens a session.
    let next = p.rt.block_on(a_client.refresh()).unwrap();
    assert!(refused(&publish(&broker, &a.device_id, &a.rt, &topic(&a))));
    assert!(publish(&broker, &a.device_id, &next.rt, &topic(&a))
        .status
        .success());

    // Revoked.
    p.revoke(c.registration_id);
    assert!(refused(&publish(&broker, &c.device_id, &c.rt, &topic(&c))));

    let log = broker.log_text();
    for why in [
        format!("belongs to device {}", b.device_id),
        "malformed token".into(),
        "superseded by a newer generation".into(),
        "revoked".into(),
        "no username or password".into(),
        "accepted".into(),
    ] {
        assert!(
            log.contains(&why),
            "the broker log does not say {why:?}:\n{log}"
        );
    }
    for secret in [&a.rt, &b.rt, &c.rt, &next.rt, &mistyped] {
        assert!(!log.contains(secret.as_str()), "the broker log shows an RT");
    }
}

/// Device A can neither publish nor subscribe under device B's topics.
#[test]
fn a_device_uses_only_its_own_topics() {
    let p = Platform::start();
    let broker = p.broker();
    let (_, a) = p.device();
    let (_, b) = p.device();
    // B listens on its own topics and must receive only its own message.
    let b_topics = format!("devices/{}/#", b.device_id);
    let b_sub = subscriber(&broker, &b, &[&b_topics])
        .args(["-v", "-q", "1", "-C", "1", "-W", "20"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until B's subscription is in place: the broker logs it.
    broker.wait_for_log(
        &format!("devices/{}/# (QoS 1)", b.device_id),
        "B's subscription",
    );
    // A publishes under B's topics: the session is A's, the message goes nowhere.
    let forged = format!("devices/{}/telemetry", b.device_id);
    let _ = publish(&broker, &a.device_id, &a.rt, &forged);
    // A subscribes to B's topics (and to everything): refused.
    let out = subscriber(&broker, &a, &[&b_topics, "#"])
        .args(["-C", "1", "-W", "3"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("denied")
            || String::from_utf8_lossy(&out.stdout).contains("denied"),
        "A's subscription was not denied: {out:?}"
    );
    // B's own message arrives, and is the first (and, with -C 1, the only) one B sees.
    let own = format!("devices/{}/telemetry", b.device_id);
    assert!(publish(&broker, &b.device_id, &b.rt, &own).status.success());
    let seen = String::from_utf8(b_sub.wait_with_output().unwrap().stdout).unwrap();
    assert_eq!(
        seen.lines().next(),
        Some(format!("{own} hello").as_str()),
        "{seen}"
    );
    let log = broker.log_text();
    assert!(log.contains("denied"), "{log}");
    assert!(log.contains(&format!("publish on {forged}")), "{log}");
}

/// What ends a device's standing: done through the admin endpoint while the device is connected.
type Change<'a> = Box<dyn Fn() + 'a>;

/// A connected device is disconnected at once, and cannot come back, when its registration is
/// revoked, its device id is blocked, or its PT is revoked.
#[test]
fn a_device_is_disconnected_when_its_registration_stops_being_live() {
    let p = Platform::start();
    let broker = p.broker();
    let (_, a) = p.device();
    let (_, b) = p.device();
    let (other_pt_id, other_pt) =
        p.rt.block_on(p.admin.create_pt(serde_json::json!({
            "label": "line 4", "kind": "fleet", "max_registrations": 10, "approval": "automatic"
        })))
        .unwrap();
    let (_, c) = p.device_with(&other_pt);
    let block = serde_json::json!({ "device_id": b.device_id, "reason": "stolen" });
    let actions: [(&RtBody, Change<'_>); 3] = [
        (&a, Box::new(|| p.revoke(a.registration_id))),
        (
            &b,
            Box::new(|| {
                p.rt.block_on(p.admin.call(kind::DEVICE_BLOCK, block.clone()))
                    .unwrap();
            }),
        ),
        (
            &c,
            Box::new(|| {
                p.rt.block_on(p.admin.revoke_pt(&other_pt_id, "line closed"))
                    .unwrap();
            }),
        ),
    ];
    for (device, action) in actions {
        let mut sub = subscriber(
            &broker,
            device,
            &[&format!("devices/{}/#", device.device_id)],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
        broker.wait_for_log(&format!("as device {} ", device.device_id), "connect");
        let acknowledged = Instant::now();
        action();
        // mosquitto_sub reconnects by itself; refused, it exits. The deadline is generous;
        // the delay itself is measured by the broker benchmark.
        let deadline = Instant::now() + Duration::from_secs(10);
        while sub.try_wait().unwrap().is_none() {
            assert!(
                Instant::now() < deadline,
                "{} still connected 10 s later",
                device.device_id
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let out = sub.wait_with_output().unwrap();
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("not authorised"),
            "{out:?}"
        );
        let log = broker.log_text();
        assert!(
            log.contains("disconnecting")
                && log.contains(&format!("({}): revoked", device.device_id)),
            "{log}"
        );
        eprintln!(
            "{}: out {:?} after the change was acknowledged",
            device.device_id,
            acknowledged.elapsed()
        );
    }
}

/// The example firmware (ffi/examples, built with its Makefile) against the validating broker:
/// it provisions, connects with username = device id and password = RT, publishes under its
/// own topic, refreshes its RT, and after the broker restarts reconnects by itself presenting
/// the refreshed RT (through MQTTAsync_setUpdateConnectOptions). Nothing lets it in but the RT.
#[test]
fn example_firmware_with_the_validating_broker() {
    use std::io::{BufRead, BufReader};
    make_with_test_lib(&root().join("ffi/examples"), &["firmware"]);
    let p = Platform::start();
    let broker = p.broker();
    let port = broker.port;
    let mut fw = Command::new(root().join("ffi/examples/firmware"))
        .arg(p.server().device_addr().to_string())
        .arg(p.server().ca_cert_path())
        .arg(&p.pt)
        .arg(format!("tcp://127.0.0.1:{port}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(fw.stdout.take().unwrap()).lines();
    let mut next = || lines.next().expect("firmware output").unwrap();
    let registered = next();
    let device_id = registered
        .strip_prefix("registered ")
        .and_then(|r| r.split_whitespace().next())
        .expect("registered <device id>")
        .to_owned();
    assert_eq!(next(), "connecting with rt generation 1");
    assert_eq!(next(), "published 1");
    assert!(next().starts_with("refreshed"));
    // The broker restarts; the firmware reconnects with the refreshed RT.
    broker.kill();
    let broker = p.broker_on(port);
    assert_eq!(next(), "connecting with rt generation 2");
    assert_eq!(next(), "published 2");
    assert!(fw.wait().unwrap().success());
    let log = broker.log_text();
    assert!(
        log.contains(&format!("as device {device_id}")) && log.contains("generation 2"),
        "{log}"
    );
}

/// Drive the plugin through its paths inside `broker`: a good CONNECT, a refused one, a denied
/// subscription and a session ended by revocation; then stop the broker cleanly (SIGTERM
/// unloads the plugin) and return how it exited.
fn exercise(p: &Platform, broker: Broker) -> std::process::ExitStatus {
    let (_, a) = p.device();
    let (_, b) = p.device();
    let own = format!("devices/{}/telemetry", a.device_id);
    assert!(publish(&broker, &a.device_id, &a.rt, &own).status.success());
    assert!(refused(&publish(&broker, &a.device_id, &b.rt, &own)));
    let b_topics = format!("devices/{}/#", b.device_id);
    let mut sub = subscriber(&broker, &b, &[&b_topics, "elsewhere/#"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    broker.wait_for_log("subscribe on elsewhere/#", "the denied subscription");
    p.revoke(b.registration_id);
    broker.wait_for_log(&format!("({}): revoked", b.device_id), "the disconnect");
    let _ = sub.kill();
    let _ = sub.wait();
    broker.terminate()
}

fn plugin_config(p: &Platform, plugin: &Path) -> String {
    format!(
        "plugin {}\nplugin_opt_data_dir {}\n",
        plugin.display(),
        p.dir.path().join("data").display()
    )
}

/// The plugin inside a broker run by Valgrind: no memory errors and no definite leaks (the
/// suppression file is the C tests' one).
#[test]
fn the_plugin_runs_clean_under_valgrind() {
    let p = Platform::start();
    let report = p.dir.path().join("valgrind.log");
    let valgrind: Vec<String> = [
        "valgrind",
        "--quiet",
        "--error-exitcode=99",
        "--leak-check=full",
        "--errors-for-leak-kinds=definite",
        "--show-leak-kinds=definite",
    ]
    .into_iter()
    .map(String::from)
    .chain([
        format!(
            "--suppressions={}",
            root().join("ffi/tests/valgrind.supp").display()
        ),
        format!("--log-file={}", report.display()),
    ])
    .collect();
    let config = plugin_config(&p, plugin());
    let broker = Broker::start_under(p.dir.path(), free_port(), &config, &valgrind, &[]);
    let status = exercise(&p, broker);
    let report = std::fs::read_to_string(report).unwrap_or_default();
    assert!(status.success(), "Valgrind: {status}\n{report}");
}

/// The plugin built with AddressSanitizer and UndefinedBehaviorSanitizer (clang), in a broker
/// with the sanitizer runtime preloaded: any error aborts the broker.
#[test]
fn the_plugin_runs_clean_under_address_and_undefined_behaviour_sanitizers() {
    let dir = root().join("ffi/mosquitto");
    make_with_test_lib(
        &dir,
        &[
            "CC=clang",
            "OUT=mosquitto_tessera_asan.so",
            "SANITIZE=-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer",
        ],
    );
    let runtime = Command::new("clang")
        .arg("-print-file-name=libclang_rt.asan-x86_64.so")
        .output()
        .expect("clang");
    let runtime = String::from_utf8(runtime.stdout).unwrap().trim().to_owned();
    let p = Platform::start();
    let report = p.dir.path().join("asan");
    let config = plugin_config(&p, &dir.join("mosquitto_tessera_asan.so"));
    let env = [
        ("LD_PRELOAD", runtime),
        // Leaks are Valgrind's part (the broker itself is not instrumented).
        (
            "ASAN_OPTIONS",
            format!(
                "detect_leaks=0:abort_on_error=1:log_path={}",
                report.display()
            ),
        ),
        ("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1".into()),
    ];
    let broker = Broker::start_under(p.dir.path(), free_port(), &config, &[], &env);
    let status = exercise(&p, broker);
    let reports: String = std::fs::read_dir(p.dir.path())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("asan"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect();
    assert!(
        status.success() && reports.is_empty(),
        "{status}\n{reports}"
    );
}
