//! Every operator command's `--json` output, one test per command: it is one JSON object, the
//! admin endpoint's answer unchanged, so it reads back into the answer's type and writes out
//! the same; and its fields are the ones docs/protocol.md lists for that request. The commands
//! run as the real `tessera` binary against one server started in this process.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{OnceLock, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use serde_json::Value;
use tessera_client::{DeviceClient, DeviceConfig, NoHooks, Trust};
use tessera_proto::admin::requests::*;
use tessera_proto::admin::AdminRequest;

const BIN: &str = env!("CARGO_BIN_EXE_tessera");

/// The server every test uses, with its runtime.
struct Fixture {
    rt: tokio::runtime::Runtime,
    server: tessera_server::Server,
    data: PathBuf,
    token_file: PathBuf,
    _dir: tempfile::TempDir,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let mut config = tessera_server::ServerConfig::ephemeral(data.clone());
        // Every test here runs commands at once with the one admin token.
        config.admin_burst = 10_000;
        config.admin_per_minute = 100_000;
        let server = rt.block_on(tessera_server::Server::start(config)).unwrap();
        let token_file = dir.path().join("admin.token");
        std::fs::write(&token_file, server.first_admin_token().unwrap().expose()).unwrap();
        Fixture {
            rt,
            server,
            data,
            token_file,
            _dir: dir,
        }
    })
}

/// Key rotation and retirement change what every other test's tokens are minted under: they run
/// alone (the write side), the others together (the read side).
static KEYS: RwLock<()> = RwLock::new(());

fn shared() -> RwLockReadGuard<'static, ()> {
    KEYS.read().unwrap_or_else(|e| e.into_inner())
}

/// `tessera ARGS --json`: its standard output, which must be one JSON value on one line.
fn run(args: &[&str]) -> Value {
    let f = fixture();
    let out = Command::new(BIN)
        .args(args)
        .arg("--json")
        .arg("--data-dir")
        .arg(&f.data)
        .arg("--admin-addr")
        .arg(f.server.admin_addr().to_string())
        .arg("--token-file")
        .arg(&f.token_file)
        .env_remove("TESSERA_ADMIN_TOKEN")
        .output()
        .expect("run tessera");
    assert!(
        out.status.success(),
        "tessera {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 1, "one line: {text}");
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("tessera {args:?}: not JSON ({e}): {text}"))
}

/// The fields docs/protocol.md gives for the answer of request `name` (its admin table): the
/// top-level names of the first `{…}` in the response column.
fn documented(name: &str) -> BTreeSet<String> {
    let doc = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/protocol.md"),
    )
    .unwrap();
    let row = doc
        .lines()
        .find(|l| {
            l.starts_with("| `0x")
                && l.split('|').nth(2).is_some_and(|c| {
                    c.trim()
                        .trim_end_matches("**T**")
                        .trim_end_matches("**S**")
                        .trim()
                        == name
                })
        })
        .unwrap_or_else(|| panic!("{name} is not in docs/protocol.md's admin table"));
    let response = row.split(" | ").last().unwrap();
    let start = response.find('{').expect("an answer object");
    let (mut depth, mut fields, mut field) = (0, BTreeSet::new(), String::new());
    for c in response[start..].chars() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            ',' if depth == 1 => {
                fields.insert(std::mem::take(&mut field));
                continue;
            }
            _ => {}
        }
        if depth == 1 && c != '{' {
            field.push(c);
        }
    }
    fields.insert(field);
    fields
        .into_iter()
        .map(|f| f.split(':').next().unwrap().trim().to_owned())
        .filter(|f| !f.is_empty() && f != "…")
        .collect()
}

/// The output is request `R`'s answer exactly (it reads back into the type and writes out the
/// same), with the fields the docs list for it.
fn check<R: AdminRequest>(name: &str, out: &Value) {
    let typed: R::Answer = serde_json::from_value(out.clone())
        .unwrap_or_else(|e| panic!("{name}: not its answer type ({e}): {out}"));
    assert_eq!(&serde_json::to_value(&typed).unwrap(), out, "{name}");
    let keys: BTreeSet<String> = out
        .as_object()
        .expect("an object")
        .keys()
        .cloned()
        .collect();
    assert_eq!(
        keys,
        documented(name),
        "{name}: the fields docs/protocol.md lists"
    );
}

/// A new PT (its id and token) through the CLI.
fn pt(label: &str, approval: &str) -> (String, String) {
    let v = run(&[
        "pt",
        "create",
        "--label",
        label,
        "--fleet",
        "10",
        "--approval",
        approval,
    ]);
    (
        v["pt"]["id"].as_str().unwrap().to_owned(),
        v["token"].as_str().unwrap().to_owned(),
    )
}

/// A device that provisions on `pt_token` as `device_id`, in the background: whether it got
/// its RT.
fn begin(pt_token: &str, device_id: &str) -> tokio::task::JoinHandle<bool> {
    let f = fixture();
    let trust = Trust::ca_file(&f.server.ca_cert_path()).unwrap();
    let mut cfg = DeviceConfig::new(
        f.server.device_addr(),
        "localhost",
        trust,
        pt_token.to_owned().into(),
    );
    cfg.device_id = Some(device_id.to_owned());
    f.rt.spawn(async move {
        let d = DeviceClient::new(cfg, Box::new(NoHooks)).unwrap();
        let ok = d.ensure_registered(Duration::from_secs(30)).await.is_ok();
        d.close().await;
        ok
    })
}

/// A device waiting for a technician on `pt_token`: its pending operation's id once it shows.
fn pending(pt_token: &str, device_id: &str) -> (String, tokio::task::JoinHandle<bool>) {
    let device = begin(pt_token, device_id);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let page = run(&["op", "list", "--limit", "1000"]);
        let found = page["operations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["requested_device_id"] == device_id)
            .map(|o| o["id"].as_str().unwrap().to_owned());
        if let Some(id) = found {
            return (id, device);
        }
        assert!(Instant::now() < deadline, "{device_id} never began");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A device provisioned on a PT that approves by itself.
fn provisioned(device_id: &str) {
    let (_, token) = pt(&format!("auto {device_id}"), "automatic");
    assert!(fixture().rt.block_on(begin(&token, device_id)).unwrap());
}

#[test]
fn pt_create() {
    let _g = shared();
    let out = run(&["pt", "create", "--label", "json pt create"]);
    check::<PtCreate>("PT_CREATE", &out);
}

#[test]
fn pt_batch() {
    let _g = shared();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("batch.tsv");
    let out = run(&[
        "pt",
        "batch",
        "--label",
        "json batch",
        "--count",
        "3",
        "--out",
        file.to_str().unwrap(),
    ]);
    // The batch's final answer (the PTs themselves are in the file).
    let keys: BTreeSet<String> = out.as_object().unwrap().keys().cloned().collect();
    assert_eq!(keys, documented("PT_BATCH"));
    assert_eq!(out["count"], 3);
    assert_eq!(std::fs::read_to_string(&file).unwrap().lines().count(), 3);
}

#[test]
fn pt_list() {
    let _g = shared();
    pt("json pt list", "manual");
    let out = run(&["pt", "list", "--limit", "1"]);
    check::<PtList>("PT_LIST", &out);
    // The page's `next` leads to the next page.
    let next = out["next"].as_str().expect("a next page").to_owned();
    let second = run(&["pt", "list", "--limit", "1", "--before", &next]);
    check::<PtList>("PT_LIST", &second);
    assert_ne!(second["pts"][0]["id"], out["pts"][0]["id"]);
}

#[test]
fn pt_show() {
    let _g = shared();
    let (id, _) = pt("json pt show", "manual");
    check::<PtShow>("PT_SHOW", &run(&["pt", "show", &id]));
}

#[test]
fn pt_revoke() {
    let _g = shared();
    let (id, _) = pt("json pt revoke", "manual");
    let out = run(&["pt", "revoke", &id]);
    check::<PtRevoke>("PT_REVOKE", &out);
}

#[test]
fn op_list() {
    let _g = shared();
    let (_, token) = pt("json op list", "manual");
    let (_op, device) = pending(&token, "json-op-list");
    let out = run(&["op", "list"]);
    check::<OpList>("OP_LIST", &out);
    assert!(out["operations"]
        .as_array()
        .unwrap()
        .iter()
        .any(|o| o["requested_device_id"] == "json-op-list"));
    device.abort();
}

#[test]
fn op_show() {
    let _g = shared();
    let (_, token) = pt("json op show", "manual");
    let (op, device) = pending(&token, "json-op-show");
    check::<OpShow>("OP_SHOW", &run(&["op", "show", &op]));
    device.abort();
}

#[test]
fn op_approve() {
    let _g = shared();
    let (_, token) = pt("json op approve", "manual");
    let (op, device) = pending(&token, "json-op-approve");
    check::<OpApprove>("OP_APPROVE", &run(&["op", "approve", &op]));
    assert!(
        fixture().rt.block_on(device).unwrap(),
        "the device got its RT"
    );
}

#[test]
fn op_reject() {
    let _g = shared();
    let (_, token) = pt("json op reject", "manual");
    let (op, device) = pending(&token, "json-op-reject");
    check::<OpReject>("OP_REJECT", &run(&["op", "reject", &op]));
    assert!(
        !fixture().rt.block_on(device).unwrap(),
        "the device got no RT"
    );
}

#[test]
fn device_list() {
    let _g = shared();
    provisioned("json-device-list");
    check::<DeviceList>("DEVICE_LIST", &run(&["device", "list", "--active"]));
}

#[test]
fn device_show() {
    let _g = shared();
    provisioned("json-device-show");
    check::<DeviceShow>("DEVICE_SHOW", &run(&["device", "show", "json-device-show"]));
}

#[test]
fn device_revoke() {
    let _g = shared();
    provisioned("json-device-revoke");
    let out = run(&["device", "revoke", "json-device-revoke"]);
    check::<DeviceRevoke>("DEVICE_REVOKE", &out);
    assert_eq!(out["registrations_revoked"], 1);
}

#[test]
fn device_block() {
    let _g = shared();
    let out = run(&["device", "block", "json-device-block"]);
    check::<DeviceBlock>("DEVICE_BLOCK", &out);
}

#[test]
fn device_unblock() {
    let _g = shared();
    let out = run(&["device", "unblock", "json-device-unblock"]);
    check::<DeviceUnblock>("DEVICE_UNBLOCK", &out);
    assert_eq!(out["was_blocked"], false);
}

#[test]
fn keys_rotate() {
    let _g = KEYS.write().unwrap_or_else(|e| e.into_inner());
    check::<KeysRotate>("KEYS_ROTATE", &run(&["keys", "rotate"]));
}

#[test]
fn keys_list() {
    let _g = shared();
    check::<KeysList>("KEYS_LIST", &run(&["keys", "list"]));
}

#[test]
fn keys_retire() {
    let _g = KEYS.write().unwrap_or_else(|e| e.into_inner());
    let rotated = run(&["keys", "rotate"]);
    let old = rotated["epoch"].as_u64().unwrap() - 1;
    let out = run(&["keys", "retire", &old.to_string()]);
    check::<KeysRetire>("KEYS_RETIRE", &out);
}

#[test]
fn token_create() {
    let _g = shared();
    let out = run(&[
        "token",
        "create",
        "json token create",
        "--role",
        "technician",
    ]);
    check::<TokenCreate>("TOKEN_CREATE", &out);
}

#[test]
fn token_list() {
    let _g = shared();
    check::<TokenList>("TOKEN_LIST", &run(&["token", "list"]));
}

#[test]
fn token_revoke() {
    let _g = shared();
    let made = run(&[
        "token",
        "create",
        "json token revoke",
        "--role",
        "technician",
    ]);
    let id = made["admin_token"]["id"].as_str().unwrap();
    let out = run(&["token", "revoke", id]);
    check::<TokenRevoke>("TOKEN_REVOKE", &out);
    assert_eq!(out["revoked"], true);
}

#[test]
fn audit() {
    let _g = shared();
    pt("json audit", "manual");
    let out = run(&["audit", "--limit", "5"]);
    check::<Audit>("AUDIT", &out);
    let events = out["events"].as_array().unwrap();
    assert!((1..=5).contains(&events.len()), "{out}");
    assert!(events.iter().any(|e| e["action"] == "pt.create"), "{out}");
}

#[test]
fn audit_follow() {
    let _g = shared();
    pt("json audit follow", "manual");
    let f = fixture();
    // One event per line, as it is recorded, until stopped.
    let mut child = Command::new(BIN)
        .args([
            "audit",
            "--limit",
            "3",
            "--follow",
            "--interval-ms",
            "50",
            "--json",
        ])
        .arg("--data-dir")
        .arg(&f.data)
        .arg("--admin-addr")
        .arg(f.server.admin_addr().to_string())
        .arg("--token-file")
        .arg(&f.token_file)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
    for _ in 0..3 {
        let line = lines.next().expect("an event").unwrap();
        let event: Value = serde_json::from_str(&line).unwrap();
        let typed: tessera_proto::admin::AuditEvent =
            serde_json::from_value(event.clone()).unwrap();
        assert_eq!(serde_json::to_value(&typed).unwrap(), event);
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn leaks() {
    let _g = shared();
    check::<Leaks>("LEAKS", &run(&["leaks"]));
}

#[test]
fn status() {
    let _g = shared();
    check::<Status>("STATUS", &run(&["status"]));
}
