//! Revocation latency while a large PT batch runs, against the same revocations with no batch
//! (side by side, one run). The store is seeded with `--seed` registrations; then one thread
//! revokes them one at a time, each waiting until its revocation is durable, first alone for
//! `--alone` revocations, then while another thread creates a `--count` PT batch (default
//! 1,000,000, written to a sink as a reader that keeps up would take it). Prints one JSON
//! object with p50/p99/max latency in both phases and the batch's duration.
//!
//! `cargo run --release -p tessera-benches --bin batch_revoke -- [--seed N] [--alone N]
//! [--count N]`

use std::time::{Duration, Instant};

use tessera_benches::{bench_now, numeric_flags, open, scale_dir, seed_registrations};
use tessera_engine::{Actor, PtSpec, RegistrationId};

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    tessera_benches::percentile(sorted, p).as_secs_f64() * 1e3
}

fn summary(mut v: Vec<Duration>) -> serde_json::Value {
    v.sort_unstable();
    serde_json::json!({
        "revocations": v.len(),
        "p50_ms": percentile(&v, 0.50),
        "p99_ms": percentile(&v, 0.99),
        "max_ms": percentile(&v, 1.0),
    })
}

fn main() {
    let mut seed = 200_000u64;
    let mut alone = 2_000u64;
    let mut count = 1_000_000u64;
    for (flag, v) in numeric_flags() {
        match flag.as_str() {
            "--seed" => seed = v,
            "--alone" => alone = v,
            "--count" => count = v,
            other => panic!("unknown option {other}"),
        }
    }
    let dir = scale_dir();
    drop(open(dir.path()));
    seed_registrations(dir.path(), seed, bench_now()).expect("seed");
    let engine = open(dir.path());
    let now = bench_now();
    let operator = Actor::operator("bench");
    let mut next = 1u64;
    let mut revoke = || {
        let id = RegistrationId::new(next);
        next += 1;
        assert!(next <= seed, "--seed too small for this run");
        let t = Instant::now();
        engine
            .revoke_registration(id, "bench", &operator, now)
            .expect("revoke");
        t.elapsed()
    };

    let alone_latency: Vec<Duration> = (0..alone).map(|_| revoke()).collect();

    let batch_engine = engine.clone();
    let started = Instant::now();
    let batch = std::thread::spawn(move || {
        let r = batch_engine.create_pt_batch(
            &PtSpec::new("factory run"),
            count,
            Box::new(std::io::sink()),
            &Actor::operator("bench"),
            now,
        );
        (r, started.elapsed())
    });
    let mut during = Vec::new();
    while !batch.is_finished() {
        during.push(revoke());
    }
    let (result, batch_time) = batch.join().expect("batch thread");
    result.expect("batch");
    println!(
        "{}",
        serde_json::json!({
            "seeded_registrations": seed,
            "batch_pts": count,
            "batch_secs": batch_time.as_secs_f64(),
            "batch_pts_per_sec": count as f64 / batch_time.as_secs_f64(),
            "revoke_alone": summary(alone_latency),
            "revoke_during_batch": summary(during),
            "commits": engine.status().expect("status").commits,
        })
    );
}
