//! The local validator reads a live engine's data directory from the side (as a broker plugin
//! on the server's host would) and agrees with the engine on every outcome, at once.

mod common;

use std::time::Duration;

use common::Harness;
use tessera_engine::{Error, LocalValidator, SoftwareKeeper, TokenFormatError};

fn validator(h: &Harness) -> LocalValidator {
    match std::env::var("TESSERA_TEST_KEEPER").as_deref() {
        Ok("pkcs11") => LocalValidator::open_with(
            h.dir.path(),
            common::pkcs11_keeper("tessera-test-root").expect("pkcs11 keeper"),
        ),
        _ => LocalValidator::open(h.dir.path()),
    }
    .expect("local validator opens beside the running engine")
}

#[test]
fn agrees_with_the_engine_through_refresh_revocation_and_expiry() {
    let h = Harness::sqlite();
    let v = validator(&h);
    let p = h.provision("pump-1");
    let rt = p.rt.expose().as_bytes();

    let id = v.validate(rt, h.now()).expect("valid");
    assert_eq!(id.device_id.as_str(), "pump-1");
    assert_eq!(id.registration_id, p.registration_id);
    assert_eq!(id, h.engine.introspect(rt, h.now()).unwrap());

    // A refresh committed by the engine is seen by the very next check.
    let next = h
        .engine
        .refresh(p.rt.expose(), &Harness::device(), h.now())
        .unwrap();
    assert_eq!(v.validate(rt, h.now()), Err(Error::Superseded));
    let next_rt = next.rt.expose().as_bytes();
    assert_eq!(v.validate(next_rt, h.now()).unwrap().generation, 2);

    // Expiry follows the clock passed in, with the same leeway as the engine.
    let exp = Duration::from_secs(next.claims.expires_at - h.now().unix_secs());
    let later = h.now().saturating_add(exp + Duration::from_secs(61));
    assert_eq!(v.validate(next_rt, later), Err(Error::Expired));
    assert_eq!(
        h.engine.validate_rt(next_rt, later).unwrap_err(),
        Error::Expired
    );

    // Revocation: at once.
    h.engine
        .revoke_registration(p.registration_id, "stolen", &Harness::tech(), h.now())
        .unwrap();
    assert_eq!(v.validate(next_rt, h.now()), Err(Error::Revoked));
}

#[test]
fn forged_malformed_and_retired_keys_are_refused() {
    let h = Harness::sqlite();
    let v = validator(&h);
    let p = h.provision("pump-2");
    let text = p.rt.expose().to_owned();

    // Format-valid RTs whose MAC was not made with this directory's root: the vectors' RT and
    // its forged twin.
    let vectors: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../docs/token-vectors.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let forged = vectors["invalid"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["error"] == "unauthenticated")
        .unwrap()["text"]
        .as_str()
        .unwrap();
    for t in [vectors["rt"]["text"].as_str().unwrap(), forged] {
        assert_eq!(
            v.validate(t.as_bytes(), h.now()),
            Err(Error::Unauthenticated)
        );
    }
    assert_eq!(
        v.validate(b"tsrt_short", h.now()),
        Err(Error::TokenFormat(TokenFormatError::WrongLength))
    );

    // Rotate, retire the old epoch: its RTs stop validating here too.
    h.engine.rotate_keys(&Harness::tech(), h.now()).unwrap();
    assert!(v.validate(text.as_bytes(), h.now()).is_ok());
    h.engine
        .retire_key_epoch(1, &Harness::tech(), h.now())
        .unwrap();
    assert_eq!(
        v.validate(text.as_bytes(), h.now()),
        Err(Error::Unauthenticated)
    );
    assert_eq!(
        h.engine.validate_rt(text.as_bytes(), h.now()),
        Err(Error::Unauthenticated)
    );
    // A registration made under the new epoch validates.
    let p2 = h.provision("pump-3");
    assert_eq!(
        v.validate(p2.rt.expose().as_bytes(), h.now())
            .unwrap()
            .device_id
            .as_str(),
        "pump-3"
    );
}

#[test]
fn refuses_a_wrong_root_and_a_missing_store() {
    let h = Harness::sqlite();
    assert!(matches!(
        LocalValidator::open_with(h.dir.path(), SoftwareKeeper::from_bytes([9; 32])),
        Err(Error::Keys(_))
    ));
    let empty = tempfile::tempdir().unwrap();
    assert!(matches!(
        LocalValidator::open_with(empty.path(), SoftwareKeeper::from_bytes([9; 32])),
        Err(Error::Store(_))
    ));
}

/// Refreshes go to the store's journal and are folded into the registration rows every few
/// (the suite folds every `TEST_FOLD_ROWS`); the engine, its admin reads and a validator in
/// another "process" see the newest generation at every step, across folds and reopens.
#[test]
fn follows_refreshes_across_journal_folds_and_reopens() {
    let mut h = Harness::sqlite();
    let a = h.provision("pump-a");
    let b = h.provision("pump-b");
    let mut rts = [a.rt.expose().to_owned(), b.rt.expose().to_owned()];
    let ids = [a.registration_id, b.registration_id];
    let mut generations = [1u32, 1];
    for step in 0..(4 * common::TEST_FOLD_ROWS as usize + 1) {
        if step == 5 {
            h.reopen();
        }
        let v = validator(&h);
        let i = usize::from(step % 3 == 0);
        let next = h
            .engine
            .refresh(&rts[i], &Harness::device(), h.now())
            .expect("refresh");
        generations[i] += 1;
        assert_eq!(next.claims.generation, generations[i]);
        let old = std::mem::replace(&mut rts[i], next.rt.expose().to_owned());
        for j in 0..2 {
            let g = generations[j];
            assert_eq!(
                v.validate(rts[j].as_bytes(), h.now()).unwrap().generation,
                g
            );
            assert_eq!(h.engine.registration(ids[j]).unwrap().generation, g);
            assert_eq!(
                h.engine
                    .validate_rt(rts[j].as_bytes(), h.now())
                    .unwrap()
                    .claims
                    .generation,
                g
            );
        }
        assert_eq!(v.validate(old.as_bytes(), h.now()), Err(Error::Superseded));
        // The validator keeps following: a second refresh is seen by the same validator.
        let again = h
            .engine
            .refresh(&rts[i], &Harness::device(), h.now())
            .unwrap();
        generations[i] += 1;
        assert_eq!(
            v.validate(rts[i].as_bytes(), h.now()),
            Err(Error::Superseded)
        );
        rts[i] = again.rt.expose().to_owned();
        assert_eq!(
            v.validate(rts[i].as_bytes(), h.now()).unwrap().generation,
            generations[i]
        );
    }
    h.reopen();
    let v = validator(&h);
    for j in 0..2 {
        assert_eq!(
            h.engine.registration(ids[j]).unwrap().generation,
            generations[j]
        );
        assert_eq!(
            v.validate(rts[j].as_bytes(), h.now()).unwrap().generation,
            generations[j]
        );
    }
    // A refresh retried within the grace window after a reopen still gets the same successor.
    let prev = rts[0].clone();
    let next = h
        .engine
        .refresh(&prev, &Harness::device(), h.now())
        .unwrap();
    h.reopen();
    let retry = h
        .engine
        .refresh(&prev, &Harness::device(), h.now())
        .unwrap();
    assert!(retry.retried);
    assert_eq!(retry.rt.expose(), next.rt.expose());
}

/// A holder of live sessions follows revocations instead of checking each session again:
/// every way a registration stops being live appears once, in commit order, and nothing else
/// does.
#[test]
fn revocations_can_be_followed_from_a_cursor() {
    let h = Harness::sqlite();
    let v = validator(&h);
    let (a, b, c, d) = (
        h.provision("pump-a"),
        h.provision("pump-b"),
        h.provision("pump-c"),
        h.provision("pump-d"),
    );
    let start = v.revocation_cursor().unwrap();
    assert_eq!(v.revocations_after(start, 100).unwrap(), (vec![], start));

    // A refresh is not a revocation.
    h.engine
        .refresh(d.rt.expose(), &Harness::device(), h.now())
        .unwrap();
    h.engine
        .revoke_registration(a.registration_id, "stolen", &Harness::tech(), h.now())
        .unwrap();
    h.engine
        .block_device(
            &"pump-b".parse().unwrap(),
            "lost",
            &Harness::tech(),
            h.now(),
        )
        .unwrap();
    let c_pt = v.validate(c.rt.expose().as_bytes(), h.now()).unwrap().pt_id;
    h.engine
        .revoke_pt(&c_pt, "line closed", &Harness::tech(), h.now())
        .unwrap();

    let (revoked, next) = v.revocations_after(start, 100).unwrap();
    assert_eq!(
        revoked,
        vec![a.registration_id, b.registration_id, c.registration_id]
    );
    assert!(next > start);
    // Taken two at a time, the same list; and nothing new after the last cursor.
    let (first, mid) = v.revocations_after(start, 2).unwrap();
    let (rest, end) = v.revocations_after(mid, 2).unwrap();
    assert_eq!([first, rest].concat(), revoked);
    assert_eq!(end, next);
    assert_eq!(v.revocations_after(next, 100).unwrap(), (vec![], next));
}
