//! A scripted operator walkthrough of the real `tessera` binary: serve, create a PT, a
//! simulated device provisions and shows its code, approve through the CLI, revoke through the
//! CLI, stop with SIGTERM.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use tessera_server::server::banner::EPHEMERAL_SERVE;

const BIN: &str = env!("CARGO_BIN_EXE_tessera");

fn cli(dir: &Path, admin: SocketAddr, args: &[&str]) -> Output {
    let out = Command::new(BIN)
        .args(args)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--admin-addr")
        .arg(admin.to_string())
        .env_remove("TESSERA_ADMIN_TOKEN")
        .output()
        .expect("run tessera");
    assert!(
        out.status.success(),
        "tessera {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).expect("JSON output")
}

#[test]
fn operator_walkthrough() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("serve.log");
    let log = std::fs::File::create(&log_path).unwrap();
    // A free loopback port for the metrics endpoint.
    let metrics_addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut serve = Command::new(BIN)
        .args(EPHEMERAL_SERVE)
        .arg("--metrics-addr")
        .arg(metrics_addr.to_string())
        .args(["--log", "debug", "--log-format", "json"])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env_remove("TESSERA_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(serve.stdout.take().unwrap()).lines();
    let (mut device, mut admin, mut token_line, mut names) = (None, None, None, None);
    while device.is_none() || admin.is_none() || token_line.is_none() {
        let line = lines.next().expect("serve output").unwrap();
        use tessera_server::server::banner;
        if let Some(a) = banner::address(&line, banner::DEVICE) {
            device = Some(a);
        } else if let Some(a) = banner::address(&line, banner::ADMIN) {
            admin = Some(a);
        } else if line.starts_with("first admin token") {
            token_line = Some(line.clone());
        } else if line.starts_with("server certificate names") {
            names = Some(line.clone());
        }
        assert!(!line.contains("tspt_"), "serve printed a PT");
    }
    // The names devices may connect to are printed (the default certificate's).
    assert!(
        names
            .as_deref()
            .unwrap_or_default()
            .ends_with(": localhost, 127.0.0.1, ::1"),
        "{names:?}"
    );
    let (device, admin) = (device.unwrap(), admin.unwrap());
    // The first admin token is stored in a 0600 file, and printed only on a terminal: this
    // output is a pipe, as under systemd (the journal), so the line names the file instead.
    let token = std::fs::read_to_string(dir.path().join("data/admin.token")).unwrap();
    let token_line = token_line.unwrap();
    assert!(!token_line.contains(token.trim()), "{token_line}");
    assert!(!token_line.contains("tsat_"), "{token_line}");
    assert!(token_line.contains("admin.token"), "{token_line}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("data/admin.token"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    let pt = json(&cli(
        dir.path(),
        admin,
        &[
            "pt",
            "create",
            "--label",
            "line 3",
            "--approval",
            "code",
            "--json",
        ],
    ));
    let pt_text = pt["token"].as_str().unwrap().to_owned();
    let pt_id = pt["pt"]["id"].as_str().unwrap().to_owned();
    let table = String::from_utf8(cli(dir.path(), admin, &["pt", "list"]).stdout).unwrap();
    assert!(
        table.contains(&pt_id) && table.contains("line 3"),
        "{table}"
    );
    assert!(!table.contains("tspt_"), "pt list shows no secrets");

    // A simulated device provisions and shows its code. It finds the CA (and the server's
    // name) through the data directory, here given in the environment.
    let mut sim = Command::new(BIN)
        .args(["simulate", "--device-id", "pump-17", "--timeout-secs", "60"])
        .arg("--server")
        .arg(device.to_string())
        .env("TESSERA_DATA_DIR", dir.path().join("data"))
        .env("TESSERA_PT", &pt_text)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut sim_out = BufReader::new(sim.stdout.take().unwrap()).lines();
    let code_line = sim_out.next().expect("code shown").unwrap();
    let code = code_line
        .strip_prefix("verification code: ")
        .expect("a code line")
        .to_owned();

    let page = json(&cli(dir.path(), admin, &["op", "list", "--json"]));
    let ops = &page["operations"];
    let op_id = ops[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(ops[0]["requested_device_id"], "pump-17");
    let approved = String::from_utf8(
        cli(
            dir.path(),
            admin,
            &["op", "approve", &op_id, "--code", &code],
        )
        .stdout,
    )
    .unwrap();
    assert!(approved.contains("approved: device pump-17"), "{approved}");
    let registered = sim_out.next().expect("registered line").unwrap();
    assert!(
        registered.starts_with("registered: device pump-17"),
        "{registered}"
    );
    assert!(sim.wait().unwrap().success());

    let devices =
        json(&cli(dir.path(), admin, &["device", "list", "--json"]))["registrations"].take();
    assert_eq!(devices[0]["device_id"], "pump-17");
    assert_eq!(devices[0]["status"], "active");
    let revoked = json(&cli(
        dir.path(),
        admin,
        &[
            "device",
            "revoke",
            "pump-17",
            "--reason",
            "walkthrough",
            "--json",
        ],
    ));
    assert_eq!(revoked["registrations_revoked"], 1);
    let devices =
        json(&cli(dir.path(), admin, &["device", "list", "--json"]))["registrations"].take();
    assert_eq!(devices[0]["status"], "revoked");
    let audit =
        String::from_utf8(cli(dir.path(), admin, &["audit", "--limit", "1000"]).stdout).unwrap();
    for action in [
        "pt.create",
        "operation.begin",
        "operation.approve",
        "registration.revoke",
    ] {
        assert!(audit.contains(action), "audit lacks {action}:\n{audit}");
    }
    // People get tables and field lists with dates, not JSON.
    let text = |args: &[&str]| String::from_utf8(cli(dir.path(), admin, args).stdout).unwrap();
    let shown = text(&["device", "show", "pump-17"]);
    assert!(
        shown.starts_with("device pump-17: not blocked\n"),
        "{shown}"
    );
    let row = shown.lines().nth(2).unwrap_or_default();
    assert!(
        row.starts_with("1 ") && row.contains("revoked") && row.ends_with("walkthrough"),
        "{shown}"
    );
    assert!(
        utc_dates(row) >= 4,
        "issued, expires, created, revoked: {row}"
    );
    let op = text(&["op", "show", &op_id]);
    assert!(
        op.lines()
            .any(|l| l.starts_with("state ") && l.ends_with(" completed")),
        "{op}"
    );
    assert!(
        op.lines()
            .any(|l| l.starts_with("wrong codes ") && l.ends_with(" 0")),
        "{op}"
    );
    assert_eq!(
        text(&["device", "block", "pump-17", "--reason", "walkthrough"]),
        "blocked pump-17; registrations revoked: 0\n"
    );
    assert!(text(&["device", "show", "pump-17"]).starts_with("device pump-17: BLOCKED\n"));
    assert_eq!(
        text(&["device", "unblock", "pump-17"]),
        "unblocked pump-17\n"
    );
    assert_eq!(
        text(&["device", "unblock", "pump-17"]),
        "pump-17 was not blocked\n"
    );
    let status = text(&["status"]);
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("engine.counts.active_registrations ") && l.ends_with(" 0")),
        "{status}"
    );

    // Each command closes its admin connection when it is done, rather than leaving it to the
    // server's idle timeout: over a dozen commands ran above.
    let status = json(&cli(dir.path(), admin, &["status", "--json"]));
    assert_eq!(status["engine"]["counts"]["active_registrations"], 0);
    let open = status["open_connections"].as_u64().unwrap();
    assert!(open <= 3, "{open} connections still open");

    // A technician's token: listed by an `at_` id, revoked by it, refused afterwards.
    let made = json(&cli(
        dir.path(),
        admin,
        &[
            "token",
            "create",
            "tech-1",
            "--role",
            "technician",
            "--json",
        ],
    ));
    let tech_id = made["admin_token"]["id"].as_str().unwrap().to_owned();
    assert!(tech_id.starts_with("at_"), "{made}");
    let tech_file = dir.path().join("tech.token");
    std::fs::write(&tech_file, made["token"].as_str().unwrap()).unwrap();
    let as_tech = |args: &[&str]| {
        Command::new(BIN)
            .args(args)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--admin-addr")
            .arg(admin.to_string())
            .arg("--token-file")
            .arg(&tech_file)
            .env_remove("TESSERA_ADMIN_TOKEN")
            .output()
            .unwrap()
    };
    assert!(as_tech(&["op", "list"]).status.success());
    let listed = text(&["token", "list"]);
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with(&tech_id) && l.contains("technician")),
        "{listed}"
    );
    assert_eq!(
        text(&["token", "revoke", &tech_id]),
        format!("revoked admin token {tech_id}\n")
    );
    let refused = as_tech(&["op", "list"]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("revoked"),
        "{refused:?}"
    );

    // The end of the audit log, then each event as it is recorded, until SIGTERM.
    let mut follow = Command::new(BIN)
        .args([
            "audit",
            "--follow",
            "--json",
            "--limit",
            "1",
            "--interval-ms",
            "20",
        ])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--admin-addr")
        .arg(admin.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, followed) = std::sync::mpsc::channel();
    let stdout = follow.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(serde_json::from_str::<serde_json::Value>(&line).expect("a JSON line"));
        }
    });
    let next = || {
        followed
            .recv_timeout(Duration::from_secs(30))
            .expect("a followed event")
    };
    assert_eq!(
        next()["action"],
        "admin_token.revoke",
        "the newest event first"
    );
    let later = json(&cli(
        dir.path(),
        admin,
        &["pt", "create", "--label", "later", "--json"],
    ));
    let ev = next();
    assert_eq!(
        (&ev["action"], &ev["subject"]),
        (&"pt.create".into(), &later["pt"]["id"])
    );
    assert!(Command::new("kill")
        .args(["-TERM", &follow.id().to_string()])
        .status()
        .unwrap()
        .success());
    assert!(
        follow.wait().unwrap().success(),
        "audit --follow ends cleanly on SIGTERM"
    );

    // An online backup while the server runs; it refuses to overwrite.
    let backup_file = dir.path().join("backup.db");
    let backup = || {
        Command::new(BIN)
            .arg("backup")
            .arg(&backup_file)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .output()
            .unwrap()
    };
    let made = backup();
    assert!(made.status.success(), "{made:?}");
    let said = String::from_utf8_lossy(&made.stdout);
    assert!(
        said.contains("integrity checked") && said.contains("root key is not in it"),
        "{said}"
    );
    let refused = backup();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("exists"));

    // Prometheus metrics and the probes on the loopback HTTP port.
    let get = |path: &str| {
        use std::io::{Read, Write};
        let mut c = std::net::TcpStream::connect(metrics_addr).expect("metrics endpoint");
        write!(c, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
        let mut answer = String::new();
        c.read_to_string(&mut answer).unwrap();
        answer
    };
    let healthz = get("/healthz");
    assert!(healthz.starts_with("HTTP/1.0 200"), "{healthz}");
    let readyz = get("/readyz");
    assert!(readyz.starts_with("HTTP/1.0 200"), "{readyz}");
    assert!(readyz.contains(r#""status":"ready""#), "{readyz}");
    let metrics = get("/metrics");
    // Latency histograms by endpoint and kind (the long poll in its own series), requests by
    // result; admin requests by front end, kind and result.
    for want in [
        r#"tessera_request_seconds_bucket{endpoint="device",kind="begin",result="OK",le="0.005"}"#,
        r#"tessera_request_seconds_bucket{endpoint="device",kind="wait",result="OK",le="35"}"#,
        r#"tessera_open_connections{endpoint="admin"}"#,
        r#"tessera_requests_total{endpoint="device",kind="begin",result="OK"} 1"#,
        r#"tessera_requests_total{endpoint="admin",kind="op_approve",result="OK"} 1"#,
        r#"tessera_admin_requests_total{front="quic",kind="op_approve",result="OK"} 1"#,
        r#"tessera_admin_requests_total{front="quic",kind="op_list",result="REVOKED"} 1"#,
        r#"tessera_admin_request_seconds_bucket{front="quic",kind="pt_create",result="OK",le="+Inf"}"#,
        // The store's writer, the engine's counts, certificates, the process.
        r#"tessera_store_batch_jobs_bucket{le="1"}"#,
        r#"tessera_store_commit_seconds_bucket{le="0.005"}"#,
        r#"tessera_store_commits_total{result="ok"}"#,
        "tessera_store_queue_depth ",
        "tessera_pending_operations ",
        "tessera_active_registrations ",
        r#"tessera_certificate_expiry_timestamp_seconds{certificate="server"} "#,
        r#"tessera_certificate_expiry_timestamp_seconds{certificate="ca"} "#,
        "process_cpu_seconds_total ",
        "process_resident_memory_bytes ",
        "process_open_fds ",
        r#"tessera_build_info{version=""#,
    ] {
        assert!(metrics.contains(want), "{want} in\n{metrics}");
    }

    // Every metric is documented; the dashboard and the alerting rules only use metrics the
    // server has (those that appear only in some deployments or after some events are named).
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let docs = std::fs::read_to_string(root.join("docs/operations.md")).unwrap();
    let names = |text: &str| -> std::collections::BTreeSet<String> {
        text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("tessera_") || w.starts_with("process_"))
            .map(|w| {
                w.trim_end_matches("_bucket")
                    .trim_end_matches("_sum")
                    .trim_end_matches("_count")
                    .to_owned()
            })
            .collect()
    };
    let scraped: std::collections::BTreeSet<String> = metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .flat_map(|l| names(l.split(['{', ' ']).next().unwrap_or("")))
        .collect();
    for m in scraped.iter().filter(|m| m.starts_with("tessera_")) {
        assert!(
            docs.contains(m.as_str()),
            "{m} is not in docs/operations.md"
        );
    }
    const CONDITIONAL: [&str; 12] = [
        "tessera_pg_pool_connections",
        "tessera_pg_pool_idle_connections",
        "tessera_pg_pool_wait_seconds",
        "tessera_feed_current",
        "tessera_feed_lag_changes",
        "tessera_feed_since_caught_up_seconds",
        "tessera_leak_signals_total",
        "tessera_http_connections",
        "tessera_auth_failures_total",
        "tessera_auth_throttled_total",
        "tessera_tls_resumed_total",
        "tessera_connections_refused_total",
    ];
    for file in [
        "deploy/grafana/tessera-dashboard.json",
        "deploy/prometheus/tessera-alerts.yml",
    ] {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        for m in names(&text) {
            assert!(
                scraped.contains(&m) || CONDITIONAL.contains(&m.as_str()),
                "{file} uses {m}, which the server does not export"
            );
            assert!(
                docs.contains(m.as_str()),
                "{file}: {m} is not in docs/operations.md"
            );
        }
    }

    // Bad input: a clear error, non-zero exit.
    let bad = Command::new(BIN)
        .args(["op", "approve", "op_nonsense"])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--admin-addr")
        .arg(admin.to_string())
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("operation_id"));

    // A PT batch shows its progress on a terminal (a pseudo-terminal from `script`), and
    // prints nothing extra otherwise.
    let batch = |out: &str| {
        format!(
            "{BIN} pt batch --count 20000 --label progress --out {} --data-dir {} --admin-addr {admin}",
            dir.path().join(out).display(),
            dir.path().join("data").display()
        )
    };
    let on_tty = Command::new("script")
        .args(["-qec", &batch("tty.tsv"), "/dev/null"])
        .output()
        .unwrap();
    assert!(on_tty.status.success(), "{on_tty:?}");
    let shown = String::from_utf8_lossy(&on_tty.stdout);
    assert!(
        shown.contains("/20,000 PTs ("),
        "no progress bar on a terminal: {shown}"
    );
    let piped = Command::new("sh")
        .args(["-c", &batch("piped.tsv")])
        .output()
        .unwrap();
    assert!(piped.status.success(), "{piped:?}");
    assert!(piped.stderr.is_empty(), "{piped:?}");

    // SIGTERM drains and exits cleanly.
    let pid = serve.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(serve.wait());
    });
    let st = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("serve stopped after SIGTERM")
        .unwrap();
    assert!(st.success(), "serve exited with {st}");

    // The server's debug log holds no secret: no PT, RT, operation secret or admin token, and
    // not the verification code it handled.
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.lines().count() > 10, "the debug log is empty:\n{log}");
    // One JSON object a line; a line for every admin request of the walkthrough, with the
    // token's name, the source, the result and the latency; the refused token at `warn`.
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let admin_lines = |kind: &str| -> Vec<&serde_json::Value> {
        lines
            .iter()
            .filter(|l| l["fields"]["message"] == "admin request" && l["fields"]["kind"] == kind)
            .collect()
    };
    for kind in [
        "pt_create",
        "pt_list",
        "op_list",
        "op_show",
        "op_approve",
        "device_list",
        "device_show",
        "device_revoke",
        "device_block",
        "device_unblock",
        "status",
        "token_create",
        "token_list",
        "token_revoke",
        "audit",
    ] {
        let found = admin_lines(kind);
        assert!(!found.is_empty(), "no log line for {kind}");
        let f = &found[0]["fields"];
        assert_eq!(found[0]["level"], "INFO", "{kind}");
        assert_eq!(f["front"], "quic", "{kind}");
        assert_eq!(f["source"], "127.0.0.1", "{kind}");
        assert!(
            f["token"]
                .as_str()
                .is_some_and(|t| !t.is_empty() && t != "-"),
            "{kind}"
        );
        assert!(f["ms"].as_f64().is_some(), "{kind}");
    }
    assert!(admin_lines("op_approve")
        .iter()
        .any(|l| l["fields"]["result"] == "OK"));
    assert!(
        lines.iter().any(|l| l["level"] == "WARN"
            && l["fields"]["kind"] == "op_list"
            && l["fields"]["result"] == "REVOKED"),
        "the revoked token's request is a warning"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["message"] == "request" && l["level"] == "DEBUG"),
        "device requests at debug"
    );
    // Every state change the engine committed, one line each, with its ids.
    for action in [
        "pt.create",
        "operation.begin",
        "operation.approve",
        "registration.revoke",
        "device.block",
        "device.unblock",
        "admin_token.create",
        "admin_token.revoke",
    ] {
        assert!(
            lines.iter().any(|l| l["level"] == "INFO"
                && l["fields"]["message"] == "state change"
                && l["fields"]["action"] == action
                && l["fields"]["subject"]
                    .as_str()
                    .is_some_and(|s| !s.is_empty())),
            "no state-change line for {action}"
        );
    }
    for secret in [
        "tspt_",
        "tsrt_",
        "tsos_",
        "tsat_",
        code.as_str(),
        token.trim(),
    ] {
        assert!(!log.contains(secret), "the server log contains {secret:?}");
    }
}

/// `tessera keys init-hsm`, then a server whose root lives in the HSM; a wrong PIN stops the
/// server from starting (no software fallback).
#[test]
#[ignore = "needs a SoftHSM2 token (TESSERA_TEST_PKCS11_*); scripts/test-all.sh runs it with --ignored"]
fn serve_with_the_root_in_an_hsm() {
    let module = std::env::var("TESSERA_TEST_PKCS11_MODULE").expect("TESSERA_TEST_PKCS11_MODULE");
    let token =
        std::env::var("TESSERA_TEST_PKCS11_CLI_TOKEN").expect("TESSERA_TEST_PKCS11_CLI_TOKEN");
    let pin = std::env::var("TESSERA_TEST_PKCS11_PIN").expect("TESSERA_TEST_PKCS11_PIN");
    let init = Command::new(BIN)
        .args([
            "keys",
            "init-hsm",
            "--module",
            &module,
            "--token-label",
            &token,
            "--key-label",
            "cli-root",
        ])
        .env("TESSERA_HSM_PIN", &pin)
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let out = String::from_utf8_lossy(&init.stdout).into_owned();
    assert!(
        out.contains("extractable=false sensitive=true value readable=false"),
        "{out}"
    );
    assert!(!out.contains(&pin));

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tessera.toml");
    std::fs::write(
        &config,
        format!("metrics_addr = \"127.0.0.1:0\"\n[keys]\nkeeper = \"pkcs11\"\nmodule = {module:?}\ntoken_label = {token:?}\nkey_label = \"cli-root\"\n"),
    )
    .unwrap();
    let serve = |pin: &str| {
        Command::new(BIN)
            .args(EPHEMERAL_SERVE)
            .args(["--metrics-addr", "off"])
            .arg("--config")
            .arg(&config)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .env("TESSERA_HSM_PIN", pin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    // Wrong PIN: a clear error, exit status non-zero, and no software key made instead.
    let bad = serve("0000").wait_with_output().unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("HSM: wrong PIN"));
    assert!(!dir.path().join("data/root.key").exists());
    // The right PIN: the server starts with the HSM root.
    let mut ok = serve(&pin);
    let mut lines = BufReader::new(ok.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(
        first.starts_with(tessera_server::server::banner::DEVICE),
        "{first}"
    );
    ok.kill().unwrap();
    let _ = ok.wait();
    assert!(
        !dir.path().join("data/root.key").exists(),
        "the HSM root is used, not a key file"
    );
}

/// How many UTC dates of the form `2026-12-03 15:53:31Z` a line shows.
fn utc_dates(line: &str) -> usize {
    let shape = b"dddd-dd-dd dd:dd:ddZ";
    line.as_bytes()
        .windows(shape.len())
        .filter(|w| {
            w.iter().zip(shape).all(|(c, s)| {
                if *s == b'd' {
                    c.is_ascii_digit()
                } else {
                    c == s
                }
            })
        })
        .count()
}

/// `tessera ARGS --data-dir DATA`, run to its end.
fn in_data_dir(data: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .output()
        .unwrap()
}

/// Standard output as text.
fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `tessera tls init`, `show` and `issue`: a CA made on purpose where there is none (and never
/// over one), its certificates shown with their names and fingerprints, and a server
/// certificate issued again for other names by the same CA, the previous one kept.
#[test]
fn tls_certificates_are_made_shown_and_reissued() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let run = |args: &[&str]| in_data_dir(&data, args);
    let made = run(&["tls", "init", "--server-name", "prov.example"]);
    assert!(made.status.success(), "{made:?}");
    let again = run(&["tls", "init"]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already has a CA"));

    let shown = text(&run(&["tls", "show"]));
    assert!(shown.contains("names:       prov.example"), "{shown}");
    let fingerprints = |s: &str| -> Vec<String> {
        s.lines()
            .filter_map(|l| l.trim().strip_prefix("SHA-256:"))
            .map(|f| f.trim().to_owned())
            .collect()
    };
    let before = fingerprints(&shown);
    assert_eq!(before.len(), 2, "{shown}");
    assert!(
        text(&made).contains(&before[0]),
        "init printed the CA's fingerprint"
    );

    let issued = run(&["tls", "issue", "--server-name", "prov2.example,10.0.0.5"]);
    assert!(issued.status.success(), "{issued:?}");
    let shown = text(&run(&["tls", "show"]));
    assert!(
        shown.contains("names:       prov2.example, 10.0.0.5"),
        "{shown}"
    );
    let after = fingerprints(&shown);
    assert_eq!(after[0], before[0], "the CA stays");
    assert_ne!(after[1], before[1], "a new server certificate");
    assert!(data.join("tls/server.pem.prev").exists());
}

/// Whether a device client that checks for `name` (trusting `ca`) gets through TLS: a refused
/// certificate is `false`; anything the server answers (a junk RT is refused) is `true`.
fn tls_accepts(device: SocketAddr, name: &str, ca: &Path) -> bool {
    use tessera_client::transport::{ClientError, Transport, Trust};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let t = Transport::new(
            device,
            name,
            &Trust::ca_file(ca).unwrap(),
            tessera_proto::wire::DEVICE_ALPN,
            Duration::from_secs(5),
        )
        .unwrap();
        let r: Result<serde_json::Value, _> = t
            .call(
                tessera_proto::wire::kind::REFRESH,
                &serde_json::json!({ "rt": "tsrt_junk" }),
                Duration::ZERO,
            )
            .await;
        t.close().await;
        match r {
            Err(ClientError::Certificate(_)) => false,
            Err(ClientError::Server(_)) => true,
            other => panic!("unexpected: {other:?}"),
        }
    })
}

/// SIGHUP reloads the server certificate: a certificate issued for a new name while the
/// server runs is presented from the next handshake on, and the server keeps serving. A
/// broken certificate is refused and the one in use stays.
#[test]
fn sighup_reloads_the_certificate_and_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log_path = dir.path().join("serve.log");
    let config = dir.path().join("tessera.toml");
    std::fs::write(&config, "log = \"info\"\n").unwrap();
    let mut serve = Command::new(BIN)
        .args(EPHEMERAL_SERVE)
        .args(["--metrics-addr", "off", "--data-dir"])
        .arg(&data)
        .arg("--config")
        .arg(&config)
        .env_remove("TESSERA_CONFIG")
        .env_remove("TESSERA_LOG")
        .env_remove("TESSERA_LOG_FORMAT")
        .stdout(Stdio::piped())
        .stderr(Stdio::from(std::fs::File::create(&log_path).unwrap()))
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(serve.stdout.take().unwrap()).lines();
    let device = loop {
        let line = lines.next().expect("serve output").unwrap();
        use tessera_server::server::banner;
        if let Some(a) = banner::address(&line, banner::DEVICE) {
            break a;
        }
    };
    let ca = data.join("tls/ca.pem");
    let log_lines = |what: &str| {
        std::fs::read_to_string(&log_path)
            .unwrap()
            .matches(what)
            .count()
    };
    // Wait for the server's log to hold `n` lines saying `what` (it logs each SIGHUP).
    let wait_for = |what: &str, n: usize| {
        for _ in 0..500 {
            if log_lines(what) >= n {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("no {what:?} in the log");
    };
    let pid = serve.id().to_string();
    let hup = || {
        assert!(Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success())
    };
    assert!(tls_accepts(device, "localhost", &ca));
    assert!(!tls_accepts(device, "plant.example", &ca));

    let issued = Command::new(BIN)
        .args(["tls", "issue", "--server-name", "plant.example,localhost"])
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    assert!(issued.status.success(), "{issued:?}");
    hup();
    wait_for("reloaded the server certificate", 1);
    assert!(tls_accepts(device, "plant.example", &ca));
    assert!(tls_accepts(device, "localhost", &ca));

    // A key that is not the certificate's: refused, the certificate in use stays.
    std::fs::copy(
        data.join("tls/server.key.prev"),
        data.join("tls/server.key"),
    )
    .unwrap();
    hup();
    wait_for("was not reloaded", 1);
    assert!(tls_accepts(device, "plant.example", &ca));
    assert_eq!(serve.try_wait().unwrap(), None, "SIGHUP stopped the server");

    // The log settings come from the file again: JSON from the reload on.
    std::fs::write(&config, "log = \"info\"\nlog_format = \"json\"\n").unwrap();
    hup();
    wait_for("reloaded the log filter and format", 3);
    let log = std::fs::read_to_string(&log_path).unwrap();
    let last = log.lines().last().unwrap();
    let line: serde_json::Value = serde_json::from_str(last).expect("a JSON line");
    assert_eq!(line["fields"]["format"], "Json", "{last}");
    // A filter that does not parse: refused, the settings in use stay.
    std::fs::write(&config, "log = \"info,[\"\n").unwrap();
    hup();
    wait_for("the log settings were not reloaded", 1);
    assert_eq!(serve.try_wait().unwrap(), None);

    assert!(Command::new("kill")
        .args(["-TERM", &serve.id().to_string()])
        .status()
        .unwrap()
        .success());
    assert!(serve.wait().unwrap().success());
}

/// `tessera tls rollover`: begin makes the next CA and the bundle, finish makes it the CA and
/// reissues the server certificate for the same names; each refuses out of order.
#[test]
fn a_ca_rollover_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let run = |args: &[&str]| in_data_dir(&data, args);
    assert!(run(&["tls", "init", "--server-name", "prov.example"])
        .status
        .success());
    let early = run(&["tls", "rollover", "finish"]);
    assert!(!early.status.success());
    assert!(String::from_utf8_lossy(&early.stderr).contains("rollover begin"));
    let begun = run(&["tls", "rollover", "begin"]);
    assert!(begun.status.success(), "{begun:?}");
    assert!(text(&begun).contains("trust.pem"), "{}", text(&begun));
    let bundle = std::fs::read_to_string(data.join("tls/trust.pem")).unwrap();
    assert_eq!(bundle.matches("BEGIN CERTIFICATE").count(), 2);
    assert!(!run(&["tls", "rollover", "begin"]).status.success());
    let finished = run(&["tls", "rollover", "finish"]);
    assert!(finished.status.success(), "{finished:?}");
    let shown = text(&run(&["tls", "show"]));
    assert!(shown.contains("names:       prov.example"), "{shown}");
    assert!(
        shown.contains("(rollover)"),
        "the new CA is the CA: {shown}"
    );
    for f in ["ca.prev.pem", "ca.prev.key", "server.pem.prev"] {
        assert!(data.join("tls").join(f).exists(), "{f}");
    }
}

/// Operator commands against a server that does not answer fail within 3 s, naming the
/// address tried; they find the server's real name in the data directory (a certificate made
/// for `plant.example` only), and a wrong name is explained; `status` falls back to the
/// readiness probe when the admin endpoint cannot answer.
#[test]
fn the_cli_fails_fast_and_uses_the_servers_real_name() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let metrics = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut serve = Command::new(BIN)
        .args(EPHEMERAL_SERVE)
        .args(["--server-name", "plant.example", "--metrics-addr"])
        .arg(metrics.to_string())
        .arg("--data-dir")
        .arg(&data)
        .env_remove("TESSERA_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(serve.stdout.take().unwrap()).lines();
    let admin = loop {
        let line = lines.next().expect("serve output").unwrap();
        if let Some(a) =
            tessera_server::server::banner::address(&line, tessera_server::server::banner::ADMIN)
        {
            break a;
        }
    };
    let status = |extra: &[&str]| {
        let started = std::time::Instant::now();
        let out = Command::new(BIN)
            .arg("status")
            .arg("--data-dir")
            .arg(&data)
            .args(["--metrics-addr", &metrics.to_string()])
            .args(extra)
            .env_remove("TESSERA_ADMIN_TOKEN")
            .env_remove("TESSERA_SERVER_NAME")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
            started.elapsed(),
        )
    };
    // The name comes from the data directory: no option needed.
    let (ok, _, err, _) = status(&["--admin-addr", &admin.to_string()]);
    assert!(ok, "{err}");
    // A name the certificate does not carry: refused, and the message says what to give.
    let (ok, _, err, _) = status(&[
        "--admin-addr",
        &admin.to_string(),
        "--server-name",
        "localhost",
    ]);
    assert!(!ok);
    assert!(err.contains("--server-name"), "{err}");
    // Nothing at the admin address: within 3 s, naming it; the readiness probe says the
    // server itself is ready, so the address is what to check.
    let nowhere = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let quiet = nowhere.local_addr().unwrap().to_string();
    let (ok, _, err, took) = status(&["--admin-addr", &quiet]);
    assert!(!ok);
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert!(err.contains(&quiet), "{err}");
    assert!(err.contains("says it is ready"), "{err}");
    // Any other command: the same bound and the address.
    let started = std::time::Instant::now();
    let out = Command::new(BIN)
        .args(["pt", "list", "--admin-addr", &quiet, "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(started.elapsed() < Duration::from_secs(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&quiet) && err.contains("tessera serve"),
        "{err}"
    );

    serve.kill().unwrap();
    let _ = serve.wait();
    // The server gone: status says so within 3 s, for both of its addresses.
    let (ok, _, err, took) = status(&["--admin-addr", &admin.to_string()]);
    assert!(!ok);
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert!(err.contains("did not answer either"), "{err}");
}

/// Three consecutive free ports from `base`: UDP `base` and `base + 1`, TCP `base + 1` and
/// `base + 2` (what `--ports` takes).
fn free_port_base() -> u16 {
    for candidate in (0..200).map(|i| 20_000 + (std::process::id() as u16 % 400) * 100 + i * 3) {
        let udp = |p| std::net::UdpSocket::bind(("127.0.0.1", p)).ok();
        let tcp = |p| std::net::TcpListener::bind(("127.0.0.1", p)).ok();
        let udp0 = std::net::UdpSocket::bind(("0.0.0.0", candidate)).ok();
        let held = (
            udp0,
            udp(candidate + 1),
            tcp(candidate + 1),
            tcp(candidate + 2),
        );
        if let (Some(_), Some(_), Some(_), Some(_)) = held {
            return candidate;
        }
    }
    panic!("no three free ports");
}

/// `--ports` moves every endpoint of a second instance with one option; `--log-format json`
/// writes one JSON object a line; an invalid log filter stops the start with an error.
#[test]
fn a_second_instance_moves_with_one_option_and_logs_json() {
    let dir = tempfile::tempdir().unwrap();
    let bad = Command::new(BIN)
        .args(["serve", "--log", "info,[", "--data-dir"])
        .arg(dir.path().join("bad"))
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("invalid log filter"),
        "{bad:?}"
    );
    assert!(
        !dir.path().join("bad").exists(),
        "a refused start made nothing"
    );

    let base = free_port_base();
    let mut serve = Command::new(BIN)
        .args([
            "serve",
            "--ports",
            &base.to_string(),
            "--log-format",
            "json",
        ])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env_remove("TESSERA_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut banner = Vec::new();
    for line in BufReader::new(serve.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        let last = line.starts_with("first admin token");
        banner.push(line);
        if last {
            break;
        }
    }
    let banner = banner.join("\n");
    for want in [
        format!("devices on 0.0.0.0:{base} "),
        format!("admin endpoint on 127.0.0.1:{} ", base + 1),
        format!("console: https://127.0.0.1:{}/", base + 1),
        format!("metrics: http://127.0.0.1:{}/metrics", base + 2),
    ] {
        assert!(banner.contains(&want), "{want} in:\n{banner}");
    }
    assert!(Command::new("kill")
        .args(["-TERM", &serve.id().to_string()])
        .status()
        .unwrap()
        .success());
    let out = serve.wait_with_output().unwrap();
    assert!(out.status.success());
    let log = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(lines.len() >= 3, "{log}");
    assert!(lines
        .iter()
        .all(|l| l["level"].is_string() && l["timestamp"].is_string()));
    assert!(lines
        .iter()
        .any(|l| l["fields"]["message"] == "tessera server started"));
}

/// `--version` names the commit and the build date; the manual page and the completions come
/// from the same definitions as the CLI.
#[test]
fn version_manual_page_and_completions() {
    let run = |args: &[&str]| {
        let out = Command::new(BIN).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let version = run(&["--version"]);
    assert!(
        version.starts_with(&format!(
            "tessera {} (commit {}, built ",
            env!("CARGO_PKG_VERSION"),
            tessera_server::COMMIT
        )),
        "{version}"
    );
    let man = run(&["man"]);
    assert!(man.contains(".TH tessera 1"), "{man}");
    assert!(
        man.contains("rollover") || man.contains("tls"),
        "the subcommands are listed"
    );
    let bash = run(&["completions", "bash"]);
    assert!(bash.contains("complete -F _tessera"), "{bash}");
    assert!(bash.contains("--server-name"), "options are completed");
    assert!(run(&["completions", "zsh"]).contains("#compdef tessera"));
}

/// `tessera config check` and `config show`: the effective settings (file, then flags), a
/// password never shown, an unknown key or a bad filter refused.
#[test]
fn config_check_and_show() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tessera.toml");
    let run = |args: &[&str]| {
        Command::new(BIN)
            .args(args)
            .arg("--config")
            .arg(&file)
            .env_remove("TESSERA_LOG")
            .env_remove("TESSERA_STORE")
            .env_remove("TESSERA_DATA_DIR")
            .output()
            .unwrap()
    };
    std::fs::write(
        &file,
        "log = \"debug\"\n[store]\nurl = \"postgres://tessera:hunter2@db.internal:5433/tessera\"\n",
    )
    .unwrap();
    let checked = run(&["config", "check", "--ports", "6000"]);
    assert!(checked.status.success(), "{checked:?}");
    let text = String::from_utf8_lossy(&checked.stdout);
    assert!(text.contains("device_addr (UDP): 0.0.0.0:6000"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    let shown = run(&["config", "show", "--log", "info"]);
    assert!(shown.status.success(), "{shown:?}");
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(!text.contains("hunter2"), "{text}");
    let back: tessera_server::ServerConfig = toml::from_str(&text).expect("TOML a server reads");
    assert_eq!(back.log, "info", "the flag wins over the file");
    assert_eq!(
        back.store.url.as_deref(),
        Some("postgres://tessera:***@db.internal:5433/tessera")
    );
    std::fs::write(&file, "no_such_setting = 1\n").unwrap();
    let bad = run(&["config", "check"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no_such_setting"));
    std::fs::write(&file, "log = \"info,[\"\n").unwrap();
    let bad = run(&["config", "check"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("invalid log filter"));
}
