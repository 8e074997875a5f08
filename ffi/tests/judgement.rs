//! The RT judgement table (`tessera_tests::judgement`) run against the C service validator, as
//! a broker uses it: a C program (ffi/tests/c/test_judgement.c, under AddressSanitizer and
//! UndefinedBehaviorSanitizer) follows a real server with a service token and checks one RT per
//! case. Each answer is checked twice: the first (the server's word, through the validator) and
//! the next (the validator's cache judging the same RT) must both be the table's. The engine
//! and the local validator run the same table in engine/tests/rt_judgement.rs.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::Command;

use common::platform::Platform;
use common::{compile_file, spawn_piped, SANITIZERS};
use tessera_proto::admin::requests::PtArgs;
use tessera_tests::judgement::{self, Outcome, State, CASES};

/// The C library's result code for an outcome.
fn c_code(o: Outcome) -> u32 {
    match o {
        Outcome::Valid => 0,
        Outcome::Unauthenticated => 210,
        Outcome::Expired => 211,
        Outcome::Revoked => 212,
        Outcome::Superseded => 213,
    }
}

#[test]
fn the_service_validator_judges_every_case_of_the_table() {
    // The system clock: the C validator's cache judges expiry by it too.
    let p = Platform::start(PtArgs {
        kind: Some("fleet".into()),
        max_registrations: Some(100),
        approval: Some("automatic".into()),
        ..PtArgs::new("judged")
    });
    let token_file = p.service_token_file();
    let keys = judgement::rt_keys(&p.data_dir());
    let mut presented = Vec::new();
    for case in CASES {
        let (device, _) = p.device();
        let current = p.rt.block_on(device.refresh()).unwrap();
        assert_eq!(current.generation, 2);
        if case.state == State::Revoked {
            p.revoke(current.registration_id);
        }
        let now = tessera_proto::Timestamp::now_from_system_clock().unix_secs();
        presented.push(judgement::present(case, &current.rt, now, &keys));
        p.rt.block_on(device.close());
    }

    let exe = p.dir.path().join("test_judgement");
    compile_file("test_judgement.c", "clang", SANITIZERS, &exe);
    let mut child = spawn_piped(
        Command::new(&exe)
            .arg(p.server().admin_addr().to_string())
            .arg(p.server().ca_cert_path())
            .arg(&token_file),
    );
    let mut stdin = child.stdin.take().unwrap();
    for rt in &presented {
        writeln!(stdin, "{rt}").unwrap();
    }
    drop(stdin);
    let lines: Vec<String> = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map(Result::unwrap)
        .collect();
    assert!(child.wait().unwrap().success(), "the C program failed");
    assert_eq!(lines.len(), CASES.len(), "one answer per case: {lines:?}");
    for (case, line) in CASES.iter().zip(&lines) {
        let want = c_code(case.expect);
        assert_eq!(
            line,
            &format!("{want} {want}"),
            "service validator (server's answer, cache's): {}",
            case.name
        );
    }
}
