//! The Mosquitto plugin (ffi/mosquitto) in a real broker from Debian, against a real Tessera
//! server in this process, with the clients from mosquitto-clients and the example firmware:
//! who gets in, which topics each device may use, and sessions ended by revocation.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::platform::Platform;
use common::{free_port, make_with_test_lib, root, Broker};
use tessera_proto::admin::requests::{DeviceBlock, PtArgs};
use tessera_proto::wire::messages::RtBody;

/// The lifetime of the test devices' RTs.
const RT_LIFETIME_SECS: u64 = 600;

/// The plugin, built once per run against the test build of libtessera (the `platform` shape).
fn plugin() -> &'static Path {
    static PLUGIN: OnceLock<PathBuf> = OnceLock::new();
    PLUGIN.get_or_init(|| {
        let dir = root().join("ffi/mosquitto");
        make_with_test_lib(&dir, &["mosquitto_tessera.so"]);
        dir.join("mosquitto_tessera.so")
    })
}

/// Where the plugin learns about RTs: the server's data directory on this host, or the server
/// over the network with a service token.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Local,
    Remote,
}

/// The platform the broker tests run on: a server whose clock moves only when a test moves it,
/// and a PT whose devices are approved automatically.
fn platform() -> Platform {
    Platform::start_with_manual_clock(PtArgs {
        kind: Some("fleet".into()),
        max_registrations: Some(100),
        approval: Some("automatic".into()),
        rt_lifetime_secs: Some(RT_LIFETIME_SECS),
        ..PtArgs::new("broker")
    })
}

impl Platform {
    /// A broker with the plugin in local mode on this server's data directory.
    fn broker(&self) -> Broker {
        self.broker_in(Mode::Local)
    }

    fn broker_in(&self, mode: Mode) -> Broker {
        self.broker_on(free_port(), mode)
    }

    fn broker_on(&self, port: u16, mode: Mode) -> Broker {
        Broker::start(self.dir.path(), port, &self.plugin_config(plugin(), mode))
    }

    /// The mosquitto.conf lines that load `plugin` in `mode`. Remote mode gets a service token
    /// of its own, in a file, and the server's CA.
    fn plugin_config(&self, plugin: &Path, mode: Mode) -> String {
        let head = format!("plugin {}\n", plugin.display());
        match mode {
            Mode::Local => format!("{head}plugin_opt_data_dir {}\n", self.data_dir().display()),
            Mode::Remote => format!(
                "{head}plugin_opt_server {}\nplugin_opt_server_name localhost\n\
                 plugin_opt_ca_file {}\nplugin_opt_token_file {}\n",
                self.server().admin_addr(),
                self.server().ca_cert_path().display(),
                self.service_token_file().display()
            ),
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
        .args(["-i", &device.device_id])
        .args(["-u", &device.device_id, "-P", &device.rt]);
    for t in topics {
        c.args(["-t", t]);
    }
    c
}

/// Publish one message with `mosquitto_pub` (QoS 1, so a refused CONNECT fails the command),
/// as client id `<user>/pub` (a session of its own, beside the device's subscriber).
/// A CONNECT refused because the plugin was still asking the server about the RT (remote mode,
/// first sight of an RT) is tried again, as a device would: the result is the settled answer.
fn publish(broker: &Broker, user: &str, password: &str, topic: &str) -> Output {
    for _ in 0..200 {
        let pending = broker.log_text().matches(PENDING).count();
        let out = mosquitto_client("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &broker.port.to_string()])
            .args([
                "-i",
                &format!("{user}/pub"),
                "-u",
                user,
                "-P",
                password,
                "-t",
                topic,
                "-m",
                "hello",
                "-q",
                "1",
            ])
            .output()
            .expect("mosquitto_pub (Debian package mosquitto-clients)");
        if out.status.success() || broker.log_text().matches(PENDING).count() == pending {
            return out;
        }
    }
    panic!("the plugin never settled on an answer");
}

/// What the broker log says of a CONNECT refused while the server is asked (remote mode).
const PENDING: &str = "not verified yet";

fn refused(out: &Output) -> bool {
    !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("not authorised")
}

/// Who gets in: a good RT with its own device id, and nothing else; the log says why and never
/// shows the token.
#[test]
fn only_a_live_rt_with_its_own_device_id_connects() {
    who_gets_in(Mode::Local);
}

/// The same through the server (remote mode): each RT's first CONNECT is refused while the
/// server is asked, and the device's next attempt gets the server's answer.
#[test]
fn only_a_live_rt_with_its_own_device_id_connects_in_remote_mode() {
    who_gets_in(Mode::Remote);
}

fn who_gets_in(mode: Mode) {
    let p = platform();
    let broker = p.broker_in(mode);
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

    // Superseded: the device refreshed (and came back with its new RT), so its old RT no
    // longer opens a session.
    let next = p.rt.block_on(a_client.refresh()).unwrap();
    assert!(publish(&broker, &a.device_id, &next.rt, &topic(&a))
        .status
        .success());
    assert!(refused(&publish(&broker, &a.device_id, &a.rt, &topic(&a))));

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
    ]
    .into_iter()
    .chain((mode == Mode::Remote).then(|| PENDING.to_owned()))
    {
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
    let p = platform();
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
    ends_sessions(Mode::Local);
}

/// The same through the server's revocation feed (remote mode).
#[test]
fn a_device_is_disconnected_when_its_registration_stops_being_live_in_remote_mode() {
    ends_sessions(Mode::Remote);
}

fn ends_sessions(mode: Mode) {
    let p = platform();
    let broker = p.broker_in(mode);
    let (_, a) = p.device();
    let (_, b) = p.device();
    let other =
        p.rt.block_on(p.admin.create_pt(&PtArgs {
            kind: Some("fleet".into()),
            max_registrations: Some(10),
            approval: Some("automatic".into()),
            ..PtArgs::new("line 4")
        }))
        .unwrap();
    let (other_pt_id, other_pt) = (other.pt.id.to_string(), other.token.clone());
    let (_, c) = p.device_with(&other_pt);
    let block = DeviceBlock {
        device_id: Some(b.device_id.to_string()),
        reason: Some("stolen".into()),
    };
    let actions: [(&RtBody, Change<'_>); 3] = [
        (&a, Box::new(|| p.revoke(a.registration_id))),
        (
            &b,
            Box::new(|| {
                p.rt.block_on(p.admin.send(&block)).unwrap();
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
        // The device has connected before (in remote mode, its RT is known).
        let own = format!("devices/{}/status", device.device_id);
        assert!(publish(&broker, &device.device_id, &device.rt, &own)
            .status
            .success());
        let mut sub = subscriber(
            &broker,
            device,
            &[&format!("devices/{}/#", device.device_id)],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
        broker.wait_for_logged(&format!("as device {} ", device.device_id), 2, "connect");
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
    firmware_against(Mode::Local);
}

/// The same with the plugin in remote mode: the broker refuses each new RT's first CONNECT while
/// it asks the server, and the firmware's retry (first connect) and Paho's automatic reconnect
/// (after the restart) get in.
#[test]
fn example_firmware_with_the_validating_broker_in_remote_mode() {
    firmware_against(Mode::Remote);
}

/// The example firmware, built once per run against the test build of libtessera.
fn firmware() -> &'static Path {
    static FIRMWARE: OnceLock<PathBuf> = OnceLock::new();
    FIRMWARE.get_or_init(|| {
        let dir = root().join("ffi/examples");
        make_with_test_lib(&dir, &["firmware"]);
        dir.join("firmware")
    })
}

fn firmware_against(mode: Mode) {
    use std::io::{BufRead, BufReader};
    let p = platform();
    let broker = p.broker_in(mode);
    let port = broker.port;
    let mut fw = Command::new(firmware())
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
    let mut line = next();
    while mode == Mode::Remote && line == "connecting with rt generation 1" {
        line = next(); // a retry of the first connect
    }
    assert_eq!(line, "published 1");
    assert!(next().starts_with("refreshed"));
    // The broker restarts; the firmware reconnects with the refreshed RT.
    broker.kill();
    let broker = p.broker_on(port, mode);
    assert_eq!(next(), "connecting with rt generation 2");
    let mut line = next();
    while mode == Mode::Remote && line == "connecting with rt generation 2" {
        line = next(); // Paho's automatic reconnect, again
    }
    assert_eq!(line, "published 2");
    assert!(fw.wait().unwrap().success());
    let log = broker.log_text();
    assert!(
        log.contains(&format!("as device {device_id}")) && log.contains("generation 2"),
        "{log}"
    );
}

/// A broker whose clock (wall time only) the test sets, through libfaketime: `offset` holds
/// the seconds it runs ahead of the real clock.
fn broker_with_clock(p: &Platform, mode: Mode, offset: &Path) -> Broker {
    std::fs::write(offset, "+0\n").unwrap();
    let lib = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";
    assert!(
        Path::new(lib).exists(),
        "libfaketime (Debian package libfaketime; scripts/test-all.sh installs it)"
    );
    let env = [
        ("LD_PRELOAD", lib.to_owned()),
        ("FAKETIME_TIMESTAMP_FILE", offset.display().to_string()),
        ("FAKETIME_NO_CACHE", "1".to_owned()),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1".to_owned()),
        ("DONT_FAKE_MONOTONIC", "1".to_owned()),
    ];
    let config = p.plugin_config(plugin(), mode);
    Broker::start_under(p.dir.path(), free_port(), &config, &[], &env)
}

/// A session ends when its RT expires, and the device's refreshed RT gets it back in: the
/// device refreshes halfway through its RT's life (the server's clock moved on), and the
/// broker's clock then passes the old RT's expiry (and the server's leeway for clock skew).
#[test]
fn a_session_ends_when_its_rt_expires_and_the_refreshed_rt_gets_in() {
    session_expires(Mode::Local);
}

#[test]
fn a_session_ends_when_its_rt_expires_and_the_refreshed_rt_gets_in_in_remote_mode() {
    session_expires(Mode::Remote);
}

fn session_expires(mode: Mode) {
    let p = platform();
    let offset = p.dir.path().join("broker-clock");
    let broker = broker_with_clock(&p, mode, &offset);
    let (client, first) = p.device();
    let own = format!("devices/{}/status", first.device_id);
    assert!(publish(&broker, &first.device_id, &first.rt, &own)
        .status
        .success());
    let mut sub = subscriber(&broker, &first, &[&own])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    broker.wait_for_logged(&format!("as device {} ", first.device_id), 2, "connect");

    p.advance(Duration::from_secs(RT_LIFETIME_SECS / 2));
    let next = p.rt.block_on(client.refresh()).unwrap();
    assert!(next.expires_at > first.expires_at);
    // Refreshing does not end the session: its registration is live.
    assert!(sub.try_wait().unwrap().is_none());

    // The broker's clock passes the first RT's expiry and the leeway, not the second's.
    let leeway = 60;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let ahead = first.expires_at + leeway + 1 - now;
    assert!(now + ahead < next.expires_at);
    std::fs::write(&offset, format!("+{ahead}\n")).unwrap();
    broker.wait_for_log(&format!("({}): expired", first.device_id), "the expiry");
    let deadline = Instant::now() + Duration::from_secs(10);
    while sub.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "still connected after expiry");
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = sub.wait_with_output().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not authorised"),
        "{out:?}"
    );
    // The old RT stays out; the refreshed one gets in.
    assert!(refused(&publish(
        &broker,
        &first.device_id,
        &first.rt,
        &own
    )));
    assert!(publish(&broker, &next.device_id, &next.rt, &own)
        .status
        .success());
}

/// Remote mode with the server stopped: new CONNECTs are refused, even with an RT the cache
/// holds, and say why; live sessions stay and keep working. With the server back, new CONNECTs
/// get in again.
#[test]
fn remote_mode_fails_closed_while_the_server_is_down_and_recovers() {
    use std::io::Write;
    let mut p = platform();
    let broker = p.broker_in(Mode::Remote);
    broker.wait_for_log("following the Tessera server", "the feed");
    let (_, a) = p.device();
    let (_, b) = p.device();
    let own = |d: &RtBody| format!("devices/{}/telemetry", d.device_id);
    // Both devices have connected before: their RTs are in the cache.
    assert!(publish(&broker, &a.device_id, &a.rt, &own(&a))
        .status
        .success());
    assert!(publish(&broker, &b.device_id, &b.rt, &own(&b))
        .status
        .success());
    // A keeps two sessions open: a subscriber and a publisher that sends a line at a time.
    let sub = subscriber(&broker, &a, &[&own(&a)])
        .args(["-q", "1", "-C", "1", "-W", "30"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut publisher = mosquitto_client("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &broker.port.to_string()])
        .args([
            "-i",
            &format!("{}/publisher", a.device_id),
            "-u",
            &a.device_id,
            "-P",
            &a.rt,
            "-t",
            &own(&a),
            "-q",
            "1",
            "-l",
        ])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    broker.wait_for_logged(&format!("as device {} ", a.device_id), 3, "A's sessions");
    broker.wait_for_log(&format!("{} (QoS 1)", own(&a)), "A's subscription");

    p.stop_server();
    broker.wait_for_log("cannot follow the Tessera server", "the outage");
    let out = publish(&broker, &b.device_id, &b.rt, &own(&b));
    assert!(refused(&out), "{out:?}");
    assert!(broker.log_text().contains("cannot be followed"));
    // A's sessions are still there: what its publisher sends reaches its subscriber.
    let stdin = publisher.stdin.as_mut().unwrap();
    writeln!(stdin, "still here").unwrap();
    stdin.flush().unwrap();
    let seen = sub.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&seen.stdout).trim(), "still here");
    drop(publisher.stdin.take());
    assert!(publisher.wait().unwrap().success());

    p.restart_server();
    broker.wait_for_logged("following the Tessera server", 2, "the recovery");
    assert!(publish(&broker, &b.device_id, &b.rt, &own(&b))
        .status
        .success());
    let log = broker.log_text();
    assert!(!log.contains("disconnecting"), "{log}");
    for secret in [&a.rt, &b.rt] {
        assert!(!log.contains(secret.as_str()), "the broker log shows an RT");
    }
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

/// A device cannot take over another device's session: a CONNECT with a client id in use
/// takes that session over, so the plugin lets a device use only its own device id as client
/// id (or its id, a slash and a suffix). Before, `mosquitto_pub -i pump-18 -u pump-17 -P <RT
/// of pump-17>` disconnected pump-18, over and over.
#[test]
fn a_device_cannot_take_over_another_devices_session() {
    let p = platform();
    let broker = p.broker();
    let (_, victim) = p.device();
    let (_, intruder) = p.device();
    let mut sub = subscriber(
        &broker,
        &victim,
        &[&format!("devices/{}/#", victim.device_id)],
    )
    .stdout(Stdio::null())
    .spawn()
    .unwrap();
    broker.wait_for_log(
        &format!("accepted {} as device", victim.device_id),
        "the victim's session",
    );
    let attempt = |client_id: &str| {
        mosquitto_client("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &broker.port.to_string()])
            .args([
                "-i",
                client_id,
                "-u",
                &intruder.device_id,
                "-P",
                &intruder.rt,
            ])
            .args(["-t", &format!("devices/{}/x", intruder.device_id)])
            .args(["-m", "hello", "-q", "1"])
            .output()
            .unwrap()
    };
    // The intruder's own name and RT, with the victim's client id or one of its suffixed ones,
    // or a made-up one.
    for client_id in [
        victim.device_id.clone(),
        format!("{}/sub", victim.device_id),
        "anything".to_owned(),
        format!("{}x", intruder.device_id),
    ] {
        let out = attempt(&client_id);
        assert!(refused(&out), "{client_id}: {out:?}");
    }
    // Its own id (or a suffixed one) lets it in.
    assert!(attempt(&intruder.device_id).status.success());
    assert!(attempt(&format!("{}/pub", intruder.device_id))
        .status
        .success());
    // The victim's session was never taken over.
    assert!(
        sub.try_wait().unwrap().is_none(),
        "the victim was disconnected"
    );
    let log = broker.log_text();
    assert!(log.contains("the client id must be the device id"), "{log}");
    assert!(
        !log.contains(&format!("Client {} already connected", victim.device_id)),
        "{log}"
    );
    let _ = sub.kill();
    let _ = sub.wait();
}

/// An MQTT 3.1.1 CONNECT packet with a username and password.
fn connect_packet(client_id: &str, username: &str, password: &str) -> Vec<u8> {
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 0xC2, 0, 60];
    for field in [client_id, username, password] {
        body.extend_from_slice(&u16::try_from(field.len()).unwrap().to_be_bytes());
        body.extend_from_slice(field.as_bytes());
    }
    let mut packet = vec![0x10];
    let mut n = body.len();
    loop {
        let byte = (n % 128) as u8;
        n /= 128;
        packet.push(if n > 0 { byte | 0x80 } else { byte });
        if n == 0 {
            break;
        }
    }
    packet.extend_from_slice(&body);
    packet
}

/// Send one CONNECT to the broker on `port` from the loopback address `from` (Linux answers
/// every 127.0.0.0/8 address on the loopback interface, so the broker sees another client
/// address) and read the CONNACK's return code.
fn raw_connect(port: u16, from: std::net::Ipv4Addr, packet: &[u8]) -> u8 {
    use std::io::{Read, Write};
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&std::net::SocketAddr::from((from, 0)).into())
        .unwrap();
    socket
        .connect(&std::net::SocketAddr::from(([127, 0, 0, 1], port)).into())
        .unwrap();
    let mut stream = std::net::TcpStream::from(socket);
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(packet).unwrap();
    let mut connack = [0u8; 4];
    stream.read_exact(&mut connack).expect("a CONNACK");
    assert_eq!(connack[0], 0x20);
    connack[3]
}

/// A made-up RT: well formed, with a correct checksum, under a key the server never had.
fn forged_rt(i: u64) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"not the server's key");
    let claims = tessera_proto::token::RtClaims {
        key_id: 1,
        registration_id: tessera_proto::RegistrationId::new(1_000_000 + i),
        binding: 1,
        generation: 1,
        issued_at: 1,
        expires_at: u64::MAX / 2,
    };
    claims.mint(&key).expose().to_owned()
}

/// Made-up RTs from one client address cost the broker's service token at most that address's
/// share: 20 at once, then 10 a second, are asked about; the rest are refused without a
/// question. A real device from another address gets in while the flood goes on, and the
/// refusals never push its valid answer out of the cache.
#[test]
fn forged_rts_spend_only_their_addresss_share_in_remote_mode() {
    const FLOOD: u64 = 2_000;
    let p = platform();
    // A cache of 4 answers: without refusals bounded apart, 20 of them would push out the
    // device's valid one.
    let config = format!(
        "{}plugin_opt_cache_entries 4\nplugin_opt_report_secs 1\n",
        p.plugin_config(plugin(), Mode::Remote)
    );
    let broker = Broker::start(p.dir.path(), free_port(), &config);
    broker.wait_for_log("following the Tessera server", "the service validator");
    let (_, good) = p.device();
    let good_topic = format!("devices/{}/telemetry", good.device_id);
    assert!(publish(&broker, &good.device_id, &good.rt, &good_topic)
        .status
        .success());
    let before = broker.log_text().len();

    let attacker = std::net::Ipv4Addr::new(127, 0, 0, 2);
    let started = Instant::now();
    let flood = std::thread::spawn({
        let port = broker.port;
        move || {
            (0..FLOOD)
                .filter(|&i| {
                    let id = format!("forged-{i}");
                    raw_connect(port, attacker, &connect_packet(&id, &id, &forged_rt(i))) == 0
                })
                .count()
        }
    });
    // Meanwhile the real device, from 127.0.0.1, comes back.
    let during = Instant::now();
    let out = publish(&broker, &good.device_id, &good.rt, &good_topic);
    let legit_latency = during.elapsed();
    let accepted = flood.join().unwrap();
    let elapsed = started.elapsed();
    assert_eq!(accepted, 0, "a forged RT got in");
    assert!(out.status.success(), "{out:?}");

    let log = broker.log_text()[before..].to_owned();
    let asked = log.matches(PENDING).count();
    let throttled = log
        .matches("too many unknown tokens from this address")
        .count();
    let allowed = 20.0 + 10.0 * elapsed.as_secs_f64() + 1.0;
    assert!(
        (asked as f64) <= allowed,
        "{asked} forged RTs reached the server in {elapsed:?} (at most {allowed})"
    );
    assert_eq!(asked + throttled, FLOOD as usize, "{log}");

    // The plugin reports what it spent (here every second): the refusals without a question.
    let reported = || -> u64 {
        broker
            .log_text()
            .lines()
            .filter(|l| l.contains("RTs from addresses that sent too many"))
            .filter_map(|l| {
                l.split("refused ")
                    .nth(1)?
                    .split(' ')
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .sum()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while reported() < throttled as u64 {
        assert!(
            Instant::now() < deadline,
            "the quota reports say {}",
            reported()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(reported(), throttled as u64, "the reports do not add up");

    // Once the server's refusals of the forged RTs asked about are in the cache (each is
    // answered from it when tried again, from another address), the device still gets in from
    // the cache: no question to the server for it.
    let asked_ids: Vec<String> = log
        .lines()
        .filter(|l| l.contains(PENDING))
        .filter_map(|l| {
            l.split("refused ")
                .nth(1)?
                .split(' ')
                .next()
                .map(str::to_owned)
        })
        .collect();
    let retry_from = std::net::Ipv4Addr::new(127, 0, 0, 3);
    for id in &asked_ids {
        let i: u64 = id.trim_start_matches("forged-").parse().unwrap();
        let cached = format!("refused {id} ({id}): not a token this server issued");
        let mut tries = 0;
        while !broker.log_text().contains(&cached) {
            tries += 1;
            assert!(tries < 2_000, "the server never answered about {id}");
            let _ = raw_connect(
                broker.port,
                retry_from,
                &connect_packet(id, id, &forged_rt(i)),
            );
        }
    }
    let before = broker.log_text().len();
    assert!(publish(&broker, &good.device_id, &good.rt, &good_topic)
        .status
        .success());
    assert!(
        !broker.log_text()[before..].contains(PENDING),
        "the device's valid answer was pushed out of the cache"
    );
    eprintln!(
        "forged-RT flood: {FLOOD} CONNECTs from one address in {elapsed:?}: {asked} asked the \
         server, {throttled} refused unasked; a real device got in in {legit_latency:?} meanwhile"
    );
    assert!(legit_latency < Duration::from_secs(2), "{legit_latency:?}");
}

/// The plugin inside a broker run by Valgrind: no memory errors and no definite leaks (the
/// suppression file is the C tests' one).
#[test]
fn the_plugin_runs_clean_under_valgrind() {
    let p = platform();
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
    for mode in [Mode::Local, Mode::Remote] {
        let config = p.plugin_config(plugin(), mode);
        let broker = Broker::start_under(p.dir.path(), free_port(), &config, &valgrind, &[]);
        let status = exercise(&p, broker);
        let report = std::fs::read_to_string(&report).unwrap_or_default();
        assert!(
            status.success(),
            "Valgrind, {mode:?} mode: {status}\n{report}"
        );
    }
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
    let p = platform();
    let report = p.dir.path().join("asan");
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
    for mode in [Mode::Local, Mode::Remote] {
        let config = p.plugin_config(&dir.join("mosquitto_tessera_asan.so"), mode);
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
            "{mode:?} mode: {status}\n{reports}"
        );
    }
}
