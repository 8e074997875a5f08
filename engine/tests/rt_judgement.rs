//! The RT judgement table (`tessera_tests::judgement`), run against the engine and the local
//! validator. The C service validator runs the same table in `ffi/tests/c_api.rs`.

mod common;

use common::Harness;
use tessera_engine::{Error, LocalValidator};
use tessera_tests::judgement::{self, Outcome, State, CASES};

fn outcome<T>(r: Result<T, Error>) -> Outcome {
    match r {
        Ok(_) => Outcome::Valid,
        Err(Error::Unauthenticated) => Outcome::Unauthenticated,
        Err(Error::Expired) => Outcome::Expired,
        Err(Error::Revoked) => Outcome::Revoked,
        Err(Error::Superseded) => Outcome::Superseded,
        Err(e) => panic!("not an RT judgement: {e}"),
    }
}

/// For each case, a registration of its own in the state the case names, refreshed once, and
/// the RT the case presents.
fn prepare(h: &Harness) -> Vec<(judgement::Case, String)> {
    let keys = judgement::rt_keys(h.dir.path());
    CASES
        .iter()
        .enumerate()
        .map(|(i, case)| {
            let p = h.provision(&format!("judged-{i}"));
            let current = h
                .engine
                .refresh(p.rt.expose(), &Harness::device(), h.now())
                .expect("refresh");
            assert_eq!(current.claims.generation, 2);
            if case.state == State::Revoked {
                h.engine
                    .revoke_registration(p.registration_id, "judged", &Harness::tech(), h.now())
                    .expect("revoke");
            }
            let rt = judgement::present(case, current.rt.expose(), h.now().unix_secs(), &keys);
            (*case, rt)
        })
        .collect()
}

#[test]
fn the_engine_judges_every_case_of_the_table() {
    let h = Harness::new();
    for (case, rt) in prepare(&h) {
        let got = outcome(h.engine.validate_rt(rt.as_bytes(), h.now()));
        assert_eq!(got, case.expect, "engine: {}", case.name);
        // Introspection says the same.
        let got = outcome(h.engine.introspect(rt.as_bytes(), h.now()));
        assert_eq!(got, case.expect, "engine introspection: {}", case.name);
    }
}

#[test]
fn the_local_validator_judges_every_case_of_the_table() {
    let h = Harness::sqlite();
    let v = LocalValidator::open(h.dir.path()).expect("local validator");
    for (case, rt) in prepare(&h) {
        let got = outcome(v.validate(rt.as_bytes(), h.now()));
        assert_eq!(got, case.expect, "local validator: {}", case.name);
    }
}
