//! Drives the C tests in ffi/tests/c/: compiles them against include/tessera.h and
//! libtessera.a with `-std=c11 -Wall -Wextra -Wpedantic -Werror`, and runs them under
//! AddressSanitizer + UndefinedBehaviorSanitizer (clang) and under Valgrind (gcc build), both
//! with zero errors and no definite leaks. scripts/test-all.sh installs clang and valgrind and
//! builds the static library first (`cargo build -p tessera-ffi`).

use std::path::{Path, PathBuf};
use std::process::Command;
use tessera_proto::codec::CHECKSUM_LEN;

mod common;
use common::platform::Platform;
use common::{compile_file, root, spawn_piped, C_WARNINGS, PLATFORM, SANITIZERS};
use tessera_proto::admin::requests::{DeviceRevoke, PtArgs};

/// The header declares the local validator only for the `platform` shape: a C file that calls
/// it compiles with `TESSERA_PLATFORM` defined and not without (an undeclared function is an
/// error under C11 with -Werror), and everything else compiles either way.
#[test]
fn header_declares_platform_functions_only_for_the_platform_shape() {
    let dir = tempfile::tempdir().unwrap();
    let device = dir.path().join("device.c");
    std::fs::write(
        &device,
        "#include <tessera.h>\n\
         int main(void) { tessera_validator *v = 0; tessera_validator_free(v);\n\
         return tessera_pt_check((const uint8_t *)\"x\", 1) == TESSERA_OK; }\n",
    )
    .unwrap();
    let platform = dir.path().join("platform.c");
    std::fs::write(
        &platform,
        "#include <tessera.h>\n\
         int main(void) { tessera_local_validator *v = 0; tessera_local_validator_free(v);\n\
         return 0; }\n",
    )
    .unwrap();
    let cc = |file: &Path, define: bool| {
        Command::new("cc")
            .args(C_WARNINGS)
            .args(define.then_some(PLATFORM))
            .arg("-fsyntax-only")
            .arg("-I")
            .arg(root().join("include"))
            .arg(file)
            .output()
            .expect("cc")
            .status
            .success()
    };
    assert!(cc(&device, false), "device functions need no define");
    assert!(cc(&device, true));
    assert!(
        cc(&platform, true),
        "platform functions compile with TESSERA_PLATFORM"
    );
    assert!(
        !cc(&platform, false),
        "platform functions are hidden without it"
    );
}

fn vectors_args() -> Vec<String> {
    let text = std::fs::read_to_string(root().join("docs/token-vectors.json")).expect("vectors");
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    let s = |p: &serde_json::Value| {
        p.as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| p.to_string())
    };
    let mut args = vec![
        s(&v["pt"]["text"]),
        s(&v["rt"]["text"]),
        s(&v["rt"]["registration_id"]),
        s(&v["rt"]["generation"]),
        s(&v["rt"]["key_id"]),
        s(&v["rt"]["issued_at"]),
        s(&v["rt"]["expires_at"]),
        s(&v["rt"]["binding"]),
    ];
    let invalid = v["invalid"].as_array().expect("invalid vectors");
    // Each invalid vector as two arguments: the documented error, then the text.
    let format_errors = |kind: &str| {
        invalid
            .iter()
            .filter(|c| c["kind"] == kind && c["error"] != "unauthenticated")
            .flat_map(|c| [s(&c["error"]), s(&c["text"])])
            .collect::<Vec<_>>()
    };
    args.extend(format_errors("pt"));
    args.push("--rt".into());
    args.extend(format_errors("rt"));
    args
}

fn compile(compiler: &str, extra: &[&str], out: &Path) {
    compile_file("test_api.c", compiler, extra, out);
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run C test");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "C test failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    println!("{stdout}");
    stdout
}

/// A Tessera data directory (store and key file) for the local validator's argument tests.
fn data_dir(parent: &Path) -> PathBuf {
    let d = parent.join("data");
    drop(
        tessera_engine::Engine::open_dir(
            &d,
            Default::default(),
            tessera_engine::Timestamp::now_from_system_clock(),
        )
        .expect("engine"),
    );
    d
}

/// An admin token's text that is valid in form (no server issued it).
fn token_of_valid_form() -> String {
    let mut payload = vec![7u8; tessera_proto::token::PT_BINARY_LEN - CHECKSUM_LEN];
    payload[0] = tessera_proto::token::PT_VERSION;
    tessera_proto::codec::encode(tessera_proto::token::ADMIN_TOKEN_PREFIX, &payload)
}

#[test]
fn c_api_under_address_and_undefined_behaviour_sanitizers() {
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("test_api_asan");
    compile("clang", SANITIZERS, &exe);
    let out = run(Command::new(&exe)
        .args(vectors_args())
        .env("TESSERA_C_TEST_DATA_DIR", data_dir(dir.path()))
        .env("TESSERA_C_TEST_SERVICE_TOKEN", token_of_valid_form())
        .env("TESSERA_C_TEST_VERSION", env!("CARGO_PKG_VERSION"))
        .env("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=1")
        .env("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1"));
    assert!(out.contains(" 0 failed"));
}

/// Valgrind as every C test runs under it: errors and definite leaks fail the run; the one
/// suppression (ring's AES-GCM tags under Valgrind's model) is explained in the file.
fn valgrind() -> Command {
    let mut c = Command::new("valgrind");
    c.args([
        "--quiet",
        "--error-exitcode=99",
        "--leak-check=full",
        "--errors-for-leak-kinds=definite",
        "--show-leak-kinds=definite",
    ])
    .arg(format!(
        "--suppressions={}",
        root().join("ffi/tests/valgrind.supp").display()
    ));
    c
}

#[test]
fn c_api_under_valgrind() {
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("test_api_vg");
    compile("gcc", &["-O0"], &exe);
    let out = run(valgrind()
        .env("TESSERA_C_TEST_DATA_DIR", data_dir(dir.path()))
        .env("TESSERA_C_TEST_SERVICE_TOKEN", token_of_valid_form())
        .env("TESSERA_C_TEST_VERSION", env!("CARGO_PKG_VERSION"))
        .arg(&exe)
        .args(vectors_args()));
    assert!(out.contains(" 0 failed"));
}

/// The full device flow from C against a real server started here: provision with the
/// verification-code callback (approved through the admin client with the code the C program
/// printed), refresh, then revocation gives TESSERA_REVOKED. Under ASan + UBSan.
#[test]
fn c_device_flow_against_a_real_server() {
    device_flow(false);
}

/// The same flow under Valgrind (errors and definite leaks fail it).
#[test]
fn c_device_flow_under_valgrind() {
    device_flow(true);
}

fn device_flow(under_valgrind: bool) {
    use std::io::{BufRead, BufReader, Write};

    let p = Platform::start(PtArgs {
        approval: Some("manual_with_code".into()),
        ..PtArgs::new("c")
    });
    let exe = p.dir.path().join("test_flow");
    let mut cmd = if under_valgrind {
        compile_file("test_flow.c", "gcc", &["-O0"], &exe);
        let mut v = valgrind();
        v.arg(&exe);
        v
    } else {
        compile_file("test_flow.c", "clang", SANITIZERS, &exe);
        Command::new(&exe)
    };
    let mut child = spawn_piped(
        cmd.arg(p.server().device_addr().to_string())
            .arg(p.server().ca_cert_path())
            .arg(&p.pt)
            .arg(p.data_dir()),
    );
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next = || lines.next().expect("a line from the C program").unwrap();
    let code_line = next();
    let code = code_line
        .strip_prefix("code ")
        .expect("code line")
        .to_owned();
    p.rt.block_on(async {
        let ops = p.admin.pending_operations().await.unwrap();
        assert_eq!(ops.len(), 1);
        let requested = ops[0].requested_device_id.as_ref().map(|d| d.as_str());
        assert_eq!(requested, Some("c-device-1"));
        assert_eq!(ops[0].attributes.get("fw"), Some("1.0.0"));
        p.admin
            .approve(&ops[0].id.to_string(), Some(&code), None)
            .await
            .unwrap();
    });
    assert_eq!(next(), "registered c-device-1 1");
    assert_eq!(next(), "refreshed 2");
    let revoked =
        p.rt.block_on(p.admin.send(&DeviceRevoke {
            device_id: Some("c-device-1".into()),
            reason: Some("test".into()),
            ..DeviceRevoke::default()
        }))
        .unwrap();
    assert_eq!(revoked.registrations_revoked, 1);
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    assert_eq!(next(), "validator after revocation 212");
    assert_eq!(next(), "local validator after revocation 212");
    assert!(
        next().starts_with("followed the revocation of registration "),
        "the local validator's revocation feed"
    );
    let last = next();
    assert!(last.starts_with("after revocation 212 "), "{last}");
    assert!(child.wait().unwrap().success());
}

/// Every function, made to panic inside its boundary by the test-only `panic-test` feature,
/// returns TESSERA_PANIC and the process survives. scripts/test-all.sh builds and tests with
/// `--features tessera-ffi/panic-test` (the panic point fires only when TESSERA_FFI_PANIC is set).
#[test]
#[cfg_attr(
    not(feature = "panic-test"),
    ignore = "needs --features tessera-ffi/panic-test; scripts/test-all.sh runs it"
)]
fn panics_become_the_panic_code_and_the_process_survives() {
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("test_panic");
    compile_file("test_panic.c", "clang", SANITIZERS, &exe);
    let out = run(Command::new(&exe)
        .env("TESSERA_FFI_PANIC", "1")
        .env("ASAN_OPTIONS", "detect_leaks=0"));
    // Every PANICS(...) line in the program ran and passed (the macro's own definition aside).
    let src = std::fs::read_to_string(root().join("ffi/tests/c/test_panic.c")).unwrap();
    let calls = src.matches("PANICS(tessera_").count();
    assert!(out.contains(&format!("{calls} passed, 0 failed")), "{out}");
}

/// Every function the header exports is called by the argument tests (test_api.c), and every
/// function with a panic boundary that returns a result by the panic test (test_panic.c).
#[test]
fn every_exported_function_is_covered_by_the_c_tests() {
    let header = std::fs::read_to_string(root().join("include/tessera.h")).unwrap();
    let api = std::fs::read_to_string(root().join("ffi/tests/c/test_api.c")).unwrap();
    let panic = std::fs::read_to_string(root().join("ffi/tests/c/test_panic.c")).unwrap();
    let mut names = Vec::new();
    for line in header.lines() {
        let Some(rest) = ["tessera_result ", "void ", "const char *"]
            .iter()
            .find_map(|ret| line.strip_prefix(ret))
        else {
            continue;
        };
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if name.starts_with("tessera_") && rest[name.len()..].starts_with('(') {
            names.push((name, line.starts_with("tessera_result ")));
        }
    }
    assert!(names.len() >= 25, "parsed too few functions: {names:?}");
    for (name, returns_result) in &names {
        assert!(
            api.contains(&format!("{name}(")),
            "{name} is not called by test_api.c"
        );
        if *returns_result {
            assert!(
                panic.contains(&format!("PANICS({name}(")),
                "{name} is not in test_panic.c"
            );
        }
    }
}

/// Every C snippet in the README and docs/ compiles against the header with the C tests'
/// warnings as errors, and links against the library when it defines `main` or calls it.
#[test]
fn c_snippets_in_the_documents_compile() {
    let mut docs = vec![root().join("README.md")];
    for e in std::fs::read_dir(root().join("docs")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "md") {
            docs.push(p);
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let mut n = 0;
    for doc in docs {
        let text = std::fs::read_to_string(&doc).unwrap();
        let mut lines = text.lines();
        while let Some(line) = lines.next() {
            if line.trim() != "```c" {
                continue;
            }
            let snippet: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "```").collect();
            n += 1;
            let src = dir.path().join(format!("snippet{n}.c"));
            std::fs::write(&src, snippet.join("\n") + "\n").unwrap();
            let status = Command::new("cc")
                .args(C_WARNINGS)
                .arg(PLATFORM)
                .arg("-c")
                .arg("-I")
                .arg(root().join("include"))
                .arg(&src)
                .arg("-o")
                .arg(dir.path().join(format!("snippet{n}.o")))
                .status()
                .expect("cc");
            assert!(
                status.success(),
                "a C snippet in {} does not compile:\n{}",
                doc.display(),
                snippet.join("\n")
            );
        }
    }
    assert!(n >= 1, "no C snippet found");
}
