//! The RT judgement table (`tessera_tests::judgement`) run against the C service validator, as
//! a broker uses it: a C program (ffi/tests/c/test_judgement.c, under AddressSanitizer and
//! UndefinedBehaviorSanitizer) follows a real server with a service token and checks one RT per
//! case. Each answer is checked twice: the first (the server's word, through the validator) and
//! the next (the validator's cache judging the same RT) must both be the table's. The engine
//! and the local validator run the same table in engine/tests/rt_judgement.rs.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{compile_file, SANITIZERS};
use tessera_client::{AdminClient, DeviceClient, DeviceConfig, NoHooks, Trust};
use tessera_proto::admin::requests::{PtArgs, TokenCreate};
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
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (server, presented, token_file) = rt.block_on(async {
        let server =
            tessera_server::Server::start(tessera_server::ServerConfig::ephemeral(data.clone()))
                .await
                .unwrap();
        let trust = Trust::ca_file(&server.ca_cert_path()).unwrap();
        let token = server.first_admin_token().unwrap().clone();
        let admin = AdminClient::new(server.admin_addr(), "localhost", &trust, token).unwrap();
        let pt = admin
            .create_pt(&PtArgs {
                kind: Some("fleet".into()),
                max_registrations: Some(100),
                approval: Some("automatic".into()),
                ..PtArgs::new("judged")
            })
            .await
            .unwrap()
            .token
            .clone();
        let service = admin
            .send(&TokenCreate {
                name: "broker".into(),
                role: "service".into(),
            })
            .await
            .unwrap();
        let token_file = dir.path().join("service-token");
        std::fs::write(&token_file, service.token.as_str()).unwrap();
        let keys = judgement::rt_keys(&data);
        let mut presented = Vec::new();
        for case in CASES {
            let cfg = DeviceConfig::new(
                server.device_addr(),
                "localhost",
                trust.clone(),
                pt.clone().into(),
            );
            let device = DeviceClient::new(cfg, Box::new(NoHooks)).unwrap();
            device
                .ensure_registered(Duration::from_secs(30))
                .await
                .unwrap();
            let current = device.refresh().await.unwrap();
            assert_eq!(current.generation, 2);
            if case.state == State::Revoked {
                admin
                    .revoke_registration(current.registration_id, "judged")
                    .await
                    .unwrap();
            }
            let now = tessera_proto::Timestamp::now_from_system_clock().unix_secs();
            presented.push(judgement::present(case, &current.rt, now, &keys));
            device.close().await;
        }
        admin.close().await;
        (server, presented, token_file)
    });

    let exe = dir.path().join("test_judgement");
    compile_file("test_judgement.c", "clang", SANITIZERS, &exe);
    let mut child = Command::new(&exe)
        .arg(server.admin_addr().to_string())
        .arg(server.ca_cert_path())
        .arg(&token_file)
        .env("ASAN_OPTIONS", "detect_leaks=1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
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
    rt.block_on(server.shutdown(Duration::from_secs(1)));
}
