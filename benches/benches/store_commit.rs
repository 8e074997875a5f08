//! Durable operations per second through the SQLite store: group commit (one fsync per batch)
//! against one transaction per operation, with 64 concurrent writers (a server's worth of in-flight requests). Each operation is what a
//! refresh writes: one registration update and one audit event.
//!
//! `cargo bench -p tessera-benches --bench store_commit` (uses a directory on the real disk
//! under `target/`, not a tmpfs, so fsync is real).

use std::sync::mpsc;
use std::sync::Arc;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tessera_engine::store::{
    JobOutcome, NewAuditEvent, SqliteOptions, SqliteStore, Store, StoreTxn,
};
use tessera_engine::Timestamp;

const WRITERS: usize = 64;

fn durable_op(store: &SqliteStore, i: u64) {
    let (tx, rx) = mpsc::sync_channel(1);
    store.submit(Box::new(move |db: &mut dyn StoreTxn| {
        let r = db
            .set_meta("bench_counter", &i.to_string())
            .and_then(|()| {
                db.append_audit(&NewAuditEvent {
                    at: Timestamp::from_unix_millis(i),
                    actor: "bench",
                    source: None,
                    action: "registration.refresh",
                    subject: "1",
                    detail: serde_json::json!({ "generation": i }),
                })
            })
            .map(|_| ());
        JobOutcome {
            keep: r.is_ok(),
            on_commit: Box::new(move |c| {
                let _ = tx.send(c.and(r));
            }),
        }
    }));
    rx.recv().expect("reply").expect("durable");
}

fn bench(c: &mut Criterion) {
    let base = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let mut g = c.benchmark_group("store_commit");
    g.sample_size(10);
    g.throughput(Throughput::Elements(1));
    for (name, batch) in [("group", 1024usize), ("per_op", 1)] {
        let dir = tempfile::tempdir_in(base).expect("tempdir");
        let store = Arc::new(
            SqliteStore::open(dir.path(), SqliteOptions::default().max_batch(batch)).expect("open"),
        );
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let per = iters / WRITERS as u64 + 1;
                let start = Instant::now();
                let hs: Vec<_> = (0..WRITERS)
                    .map(|w| {
                        let s = store.clone();
                        std::thread::spawn(move || {
                            for i in 0..per {
                                durable_op(&s, i * WRITERS as u64 + w as u64);
                            }
                        })
                    })
                    .collect();
                for h in hs {
                    h.join().expect("writer");
                }
                start.elapsed()
            })
        });
        let st = store.commit_stats();
        eprintln!(
            "store_commit/{name}: {} jobs in {} batches ({:.1} jobs per fsync)",
            st.jobs,
            st.batches,
            st.jobs as f64 / st.batches.max(1) as f64
        );
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
