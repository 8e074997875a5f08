//! The family-state lookup under a concurrent writer, at 1,000,000 entries: Tessera's
//! `FamilyTable` against `DashMap` and `RwLock<HashMap>`, on 1 and 2 reader threads.
//!
//! Each iteration is one lookup; with 2 readers the iterations are split between them, so the
//! reported time per iteration is the inverse of aggregate throughput. A writer thread updates
//! and removes entries throughout (about 200k changes per second), as revocations and
//! refreshes would.
//!
//! `cargo bench -p tessera-benches --bench family_lookup`

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use dashmap::DashMap;
use std::hint::black_box;
use tessera_engine::family::{FamilyState, FamilyTable};
use tessera_engine::RegistrationId;

const N: u64 = 1_000_000;

trait Families: Send + Sync + 'static {
    fn lookup(&self, id: u64) -> Option<u64>;
    fn update(&self, id: u64, v: u64);
    fn remove(&self, id: u64);
}

impl Families for FamilyTable {
    #[inline]
    fn lookup(&self, id: u64) -> Option<u64> {
        self.get(RegistrationId::new(id))
            .map(|s| u64::from(s.generation))
    }
    fn update(&self, id: u64, v: u64) {
        self.set(
            RegistrationId::new(id),
            FamilyState {
                generation: v as u32 | 1,
                binding: 1,
            },
            u64::from(u32::MAX),
        );
    }
    fn remove(&self, id: u64) {
        FamilyTable::revoke(self, RegistrationId::new(id));
    }
}

impl Families for DashMap<u64, u64> {
    #[inline]
    fn lookup(&self, id: u64) -> Option<u64> {
        self.get(&id).map(|v| *v)
    }
    fn update(&self, id: u64, v: u64) {
        self.insert(id, v);
    }
    fn remove(&self, id: u64) {
        DashMap::remove(self, &id);
    }
}

impl Families for RwLock<HashMap<u64, u64>> {
    #[inline]
    fn lookup(&self, id: u64) -> Option<u64> {
        self.read().expect("lock").get(&id).copied()
    }
    fn update(&self, id: u64, v: u64) {
        self.write().expect("lock").insert(id, v);
    }
    fn remove(&self, id: u64) {
        self.write().expect("lock").remove(&id);
    }
}

fn next(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

fn run<F: Families>(c: &mut Criterion, name: &str, fam: Arc<F>) {
    for id in 1..=N {
        fam.update(id, 1);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (fam, stop) = (fam.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut x = 0x1234_5678_u64;
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..10 {
                    let id = next(&mut x) % N + 1;
                    if x & 1 == 0 {
                        fam.update(id, x);
                    } else {
                        fam.remove(id);
                        fam.update(id, 1);
                    }
                }
                std::thread::sleep(Duration::from_micros(50));
            }
        })
    };
    let mut g = c.benchmark_group("family_lookup");
    for threads in [1usize, 2] {
        g.bench_function(BenchmarkId::new(name, format!("{threads}_threads")), |b| {
            b.iter_custom(|iters| {
                let per = iters / threads as u64 + 1;
                let start = Instant::now();
                let handles: Vec<_> = (0..threads)
                    .map(|t| {
                        let fam = fam.clone();
                        std::thread::spawn(move || {
                            let mut x = 0x9e37_79b9 + t as u64;
                            let mut hits = 0u64;
                            for _ in 0..per {
                                let id = next(&mut x) % N + 1;
                                hits += u64::from(black_box(fam.lookup(id)).is_some());
                            }
                            hits
                        })
                    })
                    .collect();
                for h in handles {
                    black_box(h.join().expect("reader"));
                }
                start.elapsed()
            })
        });
    }
    g.finish();
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("writer");
}

fn family_lookup(c: &mut Criterion) {
    run(c, "tessera", Arc::new(FamilyTable::new()));
    run(c, "dashset", Arc::new(DashMap::<u64, u64>::new()));
    run(
        c,
        "rwlock_hashset",
        Arc::new(RwLock::new(HashMap::<u64, u64>::new())),
    );
}

criterion_group!(benches, family_lookup);
criterion_main!(benches);
