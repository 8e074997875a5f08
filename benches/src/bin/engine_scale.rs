//! Engine scale: open time and memory per registration with N registrations (default
//! 1,000,000) in the store. Prints one JSON object.
//!
//! `cargo run --release -p tessera-benches --bin engine_scale -- [N]`

use std::time::Instant;

use tessera_benches::{bench_now, open, rss_bytes, seed_registrations};

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let base = std::env::var_os("TESSERA_SCALE_DIR").map(std::path::PathBuf::from);
    let dir = match &base {
        Some(b) => tempfile::tempdir_in(b),
        None => tempfile::tempdir_in("."),
    }
    .expect("tempdir");
    drop(open(dir.path())); // create the schema
    let t = Instant::now();
    seed_registrations(dir.path(), n, bench_now()).expect("seed");
    let seed_secs = t.elapsed().as_secs_f64();

    let rss_before = rss_bytes();
    let t = Instant::now();
    let engine = open(dir.path());
    let open_secs = t.elapsed().as_secs_f64();
    let rss_after = rss_bytes();
    let status = engine.status().expect("status");
    assert_eq!(
        status.live_families as u64, n,
        "every seeded registration is live"
    );
    let per_reg = (rss_after.saturating_sub(rss_before)) as f64 / n as f64;
    println!(
        "{}",
        serde_json::json!({
            "registrations": n,
            "seed_secs": seed_secs,
            "open_secs": open_secs,
            "rss_before_open_bytes": rss_before,
            "rss_after_open_bytes": rss_after,
            "bytes_per_registration": per_reg,
            "family_table_bytes": status.family_table_bytes,
        })
    );
}
