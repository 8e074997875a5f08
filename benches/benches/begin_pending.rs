//! What one BEGIN costs on a fleet PT with 0 and with 1,000 operations already waiting for a
//! technician (a factory line with every device on the bench), side by side, on SQLite: a new
//! operation (begun, timed, then rejected untimed so that the number waiting stays the same),
//! and a BEGIN that resumes a waiting operation by its instance nonce.
//!
//! `cargo bench -p tessera-benches --bench begin_pending` (a directory on the real disk under
//! `target/`, so commits are real fsyncs).

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use tessera_engine::{Actor, BeginRequest, Engine, ProvisioningToken};

fn begin(pt: &ProvisioningToken, nonce: String) -> BeginRequest {
    BeginRequest {
        pt: pt.clone(),
        requested_device_id: None,
        attributes: Default::default(),
        instance_nonce: nonce.into_bytes(),
    }
}

fn bench(c: &mut Criterion) {
    let base = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let now = tessera_benches::bench_now();
    let device = Actor::device(None);
    let tech = Actor::operator("bench");
    let mut g = c.benchmark_group("begin_pending");
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(5));
    for waiting in [0usize, 1000] {
        let dir = tempfile::tempdir_in(base).expect("tempdir");
        // No rate limit in the way; room for every waiting operation.
        let engine =
            Engine::open_dir(dir.path(), tessera_benches::lenient_config(), now).expect("engine");
        let spec = tessera_benches::manual_fleet();
        let (_, pt) = engine.create_pt(&spec, &tech, now).expect("pt");
        for i in 0..waiting {
            let req = begin(&pt, format!("waiting-instance-{i:08}"));
            engine.begin_operation(req, &device, now).expect("waiting");
        }
        // One more waiting operation, the one the resume case finds again.
        let again = format!("resumed-instance-{waiting:08}");
        engine
            .begin_operation(begin(&pt, again.clone()), &device, now)
            .expect("to resume");
        g.bench_function(BenchmarkId::new("new", waiting), |b| {
            let mut n = 0u64;
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    n += 1;
                    let req = begin(&pt, format!("bench-instance-{n:012}"));
                    let t = Instant::now();
                    let op = engine.begin_operation(req, &device, now).expect("begin");
                    spent += t.elapsed();
                    engine
                        .reject_operation(&op.operation_id, "bench", &tech, now)
                        .expect("reject");
                }
                spent
            });
        });
        g.bench_function(BenchmarkId::new("resume", waiting), |b| {
            b.iter(|| {
                let out = engine
                    .begin_operation(begin(&pt, again.clone()), &device, now)
                    .expect("resume");
                assert!(out.resumed);
            });
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
