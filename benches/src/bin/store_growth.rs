//! How large the SQLite store grows under refreshes, with and without retention, side by side
//! in one run: `--devices` devices (default 10,000) provisioned through the real flow, then
//! each refreshed once a simulated day until `--refreshes` refreshes (default 1,000,000) are
//! made, housekeeping running once a simulated day. Retention off keeps everything; on, it
//! keeps refresh events for `--refresh-days` days (default 31, the server's default).
//!
//! Prints one JSON object per configuration: the store's file size (database and WAL after a
//! checkpoint), the pages holding data (the rest are free pages the store reuses), and the rows
//! of the refresh journal and the audit log.
//!
//! `cargo run -p tessera-benches --bin store_growth -- [--devices N] [--refreshes N]
//! [--refresh-days N]` (sizes do not depend on the build profile; `--release` is faster)

use std::sync::mpsc;
use std::time::Duration;

use tessera_benches::{bench_now, lenient_config, numeric_flags, provision, scale_dir};
use tessera_engine::store::{SqliteOptions, SqliteStore};
use tessera_engine::{Actor, Engine, Retention, SoftwareKeeper, Timestamp};

const DAY: Duration = Duration::from_secs(86_400);

fn main() {
    let mut devices = 10_000usize;
    let mut refreshes = 1_000_000u64;
    let mut refresh_days = 31u64;
    for (flag, v) in numeric_flags() {
        match flag.as_str() {
            "--devices" => devices = v as usize,
            "--refreshes" => refreshes = v,
            "--refresh-days" => refresh_days = v,
            other => panic!("unknown option {other}"),
        }
    }
    let on = Retention {
        refresh_events: Some(DAY * refresh_days as u32),
        ..Retention::default()
    };
    for (name, retention) in [("none", Retention::FOREVER), ("default", on)] {
        let report = run(devices, refreshes, retention);
        println!(
            "{}",
            serde_json::json!({ "retention": name, "refresh_events_days":
                retention.refresh_events.map(|d| d.as_secs() / 86_400), "report": report })
        );
    }
}

fn run(devices: usize, refreshes: u64, retention: Retention) -> serde_json::Value {
    let dir = scale_dir();
    let mut config = lenient_config();
    config.retention(retention);
    let store = SqliteStore::open(dir.path(), &SqliteOptions::default()).expect("open store");
    let keeper = SoftwareKeeper::open_or_create(dir.path()).expect("root key");
    let mut now = bench_now();
    let engine = Engine::open(store, keeper, config, now).expect("open engine");
    let mut rts: Vec<String> = provision(&engine, devices, now)
        .into_iter()
        .map(|p| p.rt.expose().to_owned())
        .collect();
    let actor = Actor::device(Some("127.0.0.1".into()));
    let mut made = 0u64;
    let mut day = 0u64;
    while made < refreshes {
        now = now.saturating_add(DAY);
        day += 1;
        let today = (refreshes - made).min(devices as u64) as usize;
        refresh_all(&engine, &mut rts[..today], &actor, now);
        made += today as u64;
        engine.prune(now).expect("housekeeping");
    }
    drop(engine);
    let db = dir.path().join(tessera_engine::store::DATABASE_FILE);
    let conn = rusqlite::Connection::open(&db).expect("open");
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .expect("checkpoint");
    let pragma = |p: &str| -> i64 {
        conn.query_row(&format!("PRAGMA {p}"), [], |r| r.get(0))
            .expect(p)
    };
    let count = |t: &str| -> i64 {
        conn.query_row(&format!("SELECT count(*) FROM {t}"), [], |r| r.get(0))
            .expect(t)
    };
    let file = |suffix: &str| {
        let mut p = db.clone().into_os_string();
        p.push(suffix);
        std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
    };
    let mib = |b: f64| (b / 1_048_576.0 * 10.0).round() / 10.0;
    let page = pragma("page_size") as f64;
    serde_json::json!({
        "devices": devices,
        "refreshes": made,
        "simulated_days": day,
        "file_mib": mib((file("") + file("-wal")) as f64),
        "data_mib": mib((pragma("page_count") - pragma("freelist_count")) as f64 * page),
        "refresh_journal_rows": count("refresh_journal"),
        "audit_rows": count("audit"),
        "file_bytes_per_refresh": ((file("") as f64) / made as f64 * 10.0).round() / 10.0,
    })
}

/// Refresh every device once, all in flight together (the writer batches them), each moving
/// on to its successor RT.
fn refresh_all(engine: &Engine, rts: &mut [String], actor: &Actor, now: Timestamp) {
    let (done, finished) = mpsc::channel();
    for (i, rt) in rts.iter().enumerate() {
        let done = done.clone();
        engine.refresh_then(rt, actor, now, move |r| {
            let _ = done.send((i, r.expect("refresh").rt.expose().to_owned()));
        });
    }
    drop(done);
    for (i, rt) in finished {
        rts[i] = rt;
    }
}
