//! Concurrency: validation on several threads while another thread revokes. Once
//! `revoke_registration` has returned, no validation that starts afterwards accepts the family.
//! Refreshes that share a batch with failing and revoking jobs.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use common::{spec, Harness};
use tessera_engine::{ApprovalPolicy, Error, PtKind, RegistrationId};

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

/// Refreshes of many registrations share batches with jobs that fail (each rolled back to its
/// own savepoint) and with a revocation of a registration being refreshed. On PostgreSQL a
/// batch's refreshes read their rows in one statement and are written at its end or before
/// the next job with a savepoint: none may be lost or rolled back with another job, and the
/// revocation must see the newest generation.
#[test]
fn refreshes_sharing_batches_with_failing_and_revoking_jobs_all_last() {
    const ROUNDS: u32 = 25;
    let mut cfg = tessera_engine::EngineConfig::default();
    cfg.refresh_rate(tessera_engine::Rate::new(10_000, 10_000));
    let mut h = Harness::with_config(cfg);
    let devices: Vec<_> = (0..8)
        .map(|i| h.provision(&format!("batched-{i}")))
        .collect();
    let victim = h.provision("batched-victim");
    let now = h.now();
    let victim_refreshes = std::thread::scope(|s| {
        for p in &devices {
            let h = &h;
            s.spawn(move || {
                let mut rt = p.rt.expose().to_owned();
                for _ in 0..ROUNDS {
                    let next = h.engine.refresh(&rt, &Harness::device(), now).unwrap();
                    assert!(!next.retried);
                    rt = next.rt.expose().to_owned();
                }
            });
        }
        for t in 0..2u64 {
            let h = &h;
            s.spawn(move || {
                for i in 0..50u64 {
                    let missing = RegistrationId::new((1 << 40) + t * 100 + i);
                    assert_eq!(
                        h.engine
                            .revoke_registration(missing, "none such", &Harness::tech(), now),
                        Err(Error::NotFound("registration"))
                    );
                }
            });
        }
        let refresher = s.spawn(|| {
            let mut rt = victim.rt.expose().to_owned();
            let mut n = 0u32;
            loop {
                match h.engine.refresh(&rt, &Harness::device(), now) {
                    Ok(next) => {
                        rt = next.rt.expose().to_owned();
                        n += 1;
                    }
                    Err(e) => {
                        assert_eq!(e, Error::Revoked);
                        return n;
                    }
                }
            }
        });
        // Once the victim has refreshed a few times, revoke it while it goes on.
        while !refresher.is_finished()
            && h.engine
                .registration(victim.registration_id)
                .unwrap()
                .generation
                < 5
        {
            std::thread::yield_now();
        }
        h.engine
            .revoke_registration(victim.registration_id, "test", &Harness::tech(), now)
            .unwrap();
        refresher.join().unwrap()
    });
    // What the store holds, read afresh: every refresh acknowledged, none more.
    h.reopen();
    for p in &devices {
        let reg = h.engine.registration(p.registration_id).unwrap();
        assert_eq!(reg.generation, ROUNDS + 1, "{}", reg.device_id);
        assert_eq!(reg.revoked_at, None);
    }
    let reg = h.engine.registration(victim.registration_id).unwrap();
    assert!(reg.revoked_at.is_some());
    assert_eq!(reg.generation, victim_refreshes + 1);
}
