//! Engine refresh throughput without the network: the store seeded with N registrations
//! (default 1,000,000), `--devices` of them provisioned through the real flow, then refreshes
//! kept `--inflight` at a time through `Engine::refresh_then` for `--seconds`. Prints one JSON
//! object: refreshes per second; CPU time per refresh of the store's writer thread and of the
//! whole process (the driver thread parses and checks each RT before submitting it); and the
//! time from submitting a refresh until it is durable (p50, p99, p99.9, max), whose tail shows
//! what a journal fold costs the refreshes queued behind it.
//!
//! `cargo run --release -p tessera-benches --bin engine_refresh -- [--seed N] [--devices N]
//! [--inflight N] [--seconds N] [--fold-slice N]` (`--fold-slice`: registrations a batch writes
//! into their rows while a journal fold is in progress; the store's default otherwise)

use std::sync::mpsc;
use std::time::{Duration, Instant};

use tessera_benches::{
    bench_now, cpu_secs, numeric_flags, open_with, provision, scale_dir, seed_registrations,
    thread_named,
};
use tessera_engine::store::SqliteOptions;
use tessera_engine::{Actor, Timestamp};

fn main() {
    let mut seed = 1_000_000u64;
    let mut devices = 10_000usize;
    let mut inflight = 512usize;
    let mut seconds = 10u64;
    let mut options = SqliteOptions::default();
    for (flag, v) in numeric_flags() {
        match flag.as_str() {
            "--seed" => seed = v,
            "--devices" => devices = v as usize,
            "--inflight" => inflight = v as usize,
            "--seconds" => seconds = v,
            "--fold-slice" => {
                options.journal_fold_slice(v as usize);
            }
            other => panic!("unknown option {other}"),
        }
    }
    let dir = scale_dir();
    drop(open_with(dir.path(), &options));
    seed_registrations(dir.path(), seed, bench_now()).expect("seed");
    let engine = open_with(dir.path(), &options);
    let now = bench_now();
    let mut rts: Vec<String> = provision(&engine, devices, now)
        .into_iter()
        .map(|p| p.rt.expose().to_owned())
        .collect();
    let writer = thread_named("/proc/self", "tessera-store-w").expect("writer thread");
    eprintln!("refreshing for {seconds} s");

    // Slot i refreshes devices i, i + inflight, ...; a completion hands the slot back.
    let (done_tx, done_rx) = mpsc::channel::<(usize, String, Duration)>();
    let actor = Actor::device(Some("127.0.0.1".into()));
    let submit = |slot: usize, rt: &str, at: Timestamp| {
        let tx = done_tx.clone();
        let submitted = Instant::now();
        engine.refresh_then(rt, &actor, at, move |r| {
            let r = r.expect("refresh");
            let _ = tx.send((slot, r.rt.expose().to_owned(), submitted.elapsed()));
        });
    };
    let slots = inflight.min(devices);
    let mut next = vec![0usize; slots];
    let (w0, p0, t0) = (cpu_secs(&writer), cpu_secs("/proc/self"), Instant::now());
    for (slot, n) in next.iter_mut().enumerate() {
        submit(slot, &rts[slot], now);
        *n = slot;
    }
    let mut count = 0u64;
    let mut waits = Vec::new();
    let stop = t0 + Duration::from_secs(seconds);
    let mut outstanding = slots;
    while outstanding > 0 {
        let (slot, rt, waited) = done_rx.recv().expect("completion");
        rts[next[slot]] = rt;
        waits.push(waited);
        count += 1;
        outstanding -= 1;
        if Instant::now() < stop {
            // Move this slot on to its next device (each always presents its current RT).
            let d = next[slot] + slots;
            next[slot] = if d < devices { d } else { slot };
            submit(slot, &rts[next[slot]], now);
            outstanding += 1;
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let (w1, p1) = (cpu_secs(&writer), cpu_secs("/proc/self"));
    let us = |cpu: f64| (cpu * 1e6 / count as f64 * 100.0).round() / 100.0;
    waits.sort_unstable();
    let ms = |q: f64| {
        let i = ((waits.len() as f64 * q) as usize).min(waits.len() - 1);
        (waits[i].as_secs_f64() * 1e5).round() / 100.0
    };
    println!(
        "{}",
        serde_json::json!({
            "seeded_registrations": seed,
            "devices": devices,
            "inflight": slots,
            "refreshes": count,
            "per_second": (count as f64 / secs).round(),
            "writer_cpu_us_per_refresh": us(w1 - w0),
            "process_cpu_us_per_refresh": us(p1 - p0),
            "commits": engine.status().expect("status").commits,
            "durable_after_ms": { "p50": ms(0.5), "p99": ms(0.99), "p999": ms(0.999), "max": ms(1.0) },
        })
    );
}
