//! Concurrency: validation on several threads while another thread revokes. Once
//! `revoke_registration` has returned, no validation that starts afterwards accepts the family.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use common::{spec, Harness};
use tessera_engine::{ApprovalPolicy, Error, PtKind};

#[test]
fn revoked_families_are_never_accepted_after_revoke_returns() {
    let mut cfg = tessera_engine::EngineConfig::default();
    cfg.source_rate(tessera_engine::Rate::new(100_000, 100_000));
    let h = Harness::with_config(cfg);
    let pt = h.pt(spec(
        PtKind::Fleet {
            max_registrations: 10_000,
        },
        ApprovalPolicy::Automatic,
    ));
    const N: usize = 300;
    const KEEP: usize = 50; // never revoked: must keep validating throughout
    let mut provisioned = Vec::new();
    for i in 0..N + KEEP {
        let op = h
            .begin(&pt, Some(&format!("c-{i}")), &i.to_le_bytes())
            .unwrap();
        provisioned.push(h.collect(&op));
    }
    let tokens: Arc<Vec<String>> = Arc::new(
        provisioned
            .iter()
            .map(|p| p.rt.expose().to_owned())
            .collect(),
    );
    let revoked_upto = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let checks = Arc::new(AtomicUsize::new(0));
    let now = h.now();
    let readers: Vec<_> = (0..3)
        .map(|t| {
            let (engine, tokens, upto, stop, checks) = (
                h.engine.clone(),
                tokens.clone(),
                revoked_upto.clone(),
                stop.clone(),
                checks.clone(),
            );
            std::thread::spawn(move || {
                let mut x: usize = 12345 + t;
                while !stop.load(Ordering::Acquire) {
                    // Everything below `k` had been revoked before this validation started.
                    let k = upto.load(Ordering::Acquire);
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    if k > 0 {
                        let i = (x >> 33) % k;
                        assert_eq!(
                            engine.validate_rt(tokens[i].as_bytes(), now),
                            Err(Error::Revoked),
                            "family {i} accepted after revoke returned"
                        );
                    }
                    let j = N + (x >> 40) % KEEP;
                    assert!(engine.validate_rt(tokens[j].as_bytes(), now).is_ok());
                    checks.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for (i, p) in provisioned.iter().take(N).enumerate() {
        h.engine
            .revoke_registration(p.registration_id, "concurrency test", &Harness::tech(), now)
            .unwrap();
        revoked_upto.store(i + 1, Ordering::Release);
    }
    stop.store(true, Ordering::Release);
    for r in readers {
        r.join().expect("reader thread");
    }
    assert!(checks.load(Ordering::Relaxed) > N, "readers barely ran");
}

#[test]
fn concurrent_refreshes_of_one_family_yield_one_successor() {
    let h = Harness::new();
    let p = h.provision("racer");
    let now = h.now();
    let results: Vec<_> = (0..8)
        .map(|_| {
            let (e, rt) = (h.engine.clone(), p.rt.expose().to_owned());
            std::thread::spawn(move || e.refresh(&rt, &Harness::device(), now))
        })
        .map(|t| t.join().unwrap())
        .collect();
    // One refresh rotates; the others are retries inside the grace window and get the same RT.
    let ok: Vec<_> = results.into_iter().map(|r| r.unwrap()).collect();
    assert_eq!(ok.iter().filter(|r| !r.retried).count(), 1);
    assert!(ok
        .iter()
        .all(|r| r.rt == ok[0].rt && r.claims.generation == 2));
}
