//! What the C and broker tests share: paths, the test build of libtessera, a running server
//! ([`platform`]) and Mosquitto.
#![allow(dead_code)] // each test binary uses its own part

pub(crate) mod platform;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub(crate) fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_owned()
}

/// The test build of libtessera.a (scripts/test-all.sh builds it with the `platform` and
/// `panic-test` features before the tests run).
pub(crate) fn static_lib() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    let lib = target.join("debug").join("libtessera.a");
    assert!(
        lib.exists(),
        "{} missing: run `cargo build -p tessera-ffi --features platform` first",
        lib.display()
    );
    lib
}

/// The system libraries a Rust static library needs (`rustc --print native-static-libs`).
pub(crate) const NATIVE_LIBS: &[&str] = &[
    "-lgcc_s",
    "-lutil",
    "-lrt",
    "-lpthread",
    "-lm",
    "-ldl",
    "-lc",
];

/// The C standard and warnings every C file of the project compiles with.
pub(crate) const C_WARNINGS: &[&str] = &["-std=c11", "-Wall", "-Wextra", "-Wpedantic", "-Werror"];

/// The test build of libtessera is the `platform` shape (the C tests cover the local
/// validator too), so the tests see its declarations.
pub(crate) const PLATFORM: &str = "-DTESSERA_PLATFORM";

/// clang flags for the AddressSanitizer + UndefinedBehaviorSanitizer builds.
pub(crate) const SANITIZERS: &[&str] = &[
    "-fsanitize=address,undefined",
    "-fno-sanitize-recover=all",
    "-fno-omit-frame-pointer",
];

/// Compile `ffi/tests/c/FILE` with `compiler` against the header and the test build of the
/// library.
pub(crate) fn compile_file(file: &str, compiler: &str, extra: &[&str], out: &Path) {
    let lib = static_lib();
    let status = Command::new(compiler)
        .args(C_WARNINGS)
        .arg(PLATFORM)
        .arg("-g")
        .args(extra)
        .arg("-I")
        .arg(root().join("include"))
        .arg(root().join("ffi/tests/c").join(file))
        .arg(&lib)
        .args(NATIVE_LIBS)
        .arg("-o")
        .arg(out)
        .status()
        .unwrap_or_else(|e| panic!("{compiler} not found ({e}); scripts/test-all.sh installs it"));
    assert!(status.success(), "{compiler} failed to build the C tests");
}

/// `make -B ARGS` in `dir` (a folder with a Makefile over libtessera) against the test build of
/// the library, which make is told not to rebuild (`-o`): the other tests use it at the same
/// time.
pub(crate) fn make_with_test_lib(dir: &Path, args: &[&str]) {
    let lib = static_lib();
    let status = Command::new("make")
        .args(["-B", "-s", "PROFILE=debug"])
        .arg(format!("TESSERA_LIB={}", lib.display()))
        .arg("-o")
        .arg(&lib)
        .args(args)
        .current_dir(dir)
        .status()
        .expect("make");
    assert!(
        status.success(),
        "make {args:?} failed in {}",
        dir.display()
    );
}

/// Start a C test program that reads commands on stdin and answers on stdout, with leak
/// detection on when it runs under AddressSanitizer.
pub(crate) fn spawn_piped(cmd: &mut Command) -> Child {
    cmd.env("ASAN_OPTIONS", "detect_leaks=1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the C test program")
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A Mosquitto broker on a loopback port, killed when dropped. `extra` is appended to its
/// configuration (plugin lines); without it the broker lets anyone in.
pub(crate) struct Broker {
    child: Child,
    pub(crate) port: u16,
    pub(crate) log: PathBuf,
}

impl Broker {
    pub(crate) fn start(dir: &Path, port: u16, extra: &str) -> Broker {
        Broker::start_under(dir, port, extra, &[], &[])
    }

    /// [`Broker::start`] with the broker run by `wrapper` (Valgrind and its arguments) and with
    /// `env` set (a preloaded sanitizer runtime).
    pub(crate) fn start_under(
        dir: &Path,
        port: u16,
        extra: &str,
        wrapper: &[String],
        env: &[(&str, String)],
    ) -> Broker {
        let conf = dir.join(format!("mosquitto-{port}.conf"));
        let log = dir.join(format!("mosquitto-{port}.log"));
        // Without a plugin the broker lets anyone in. With one, it must read the Tessera data
        // directory this process made (files of mode 0600): started as root, Mosquitto would
        // otherwise switch to its own user first (`user` has no effect for other users).
        let auth = if extra.is_empty() {
            "allow_anonymous true\n"
        } else {
            "user root\n"
        };
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\n{auth}persistence false\nlog_dest file {}\n\
                 log_type all\n{extra}",
                log.display()
            ),
        )
        .unwrap();
        // Debian installs it in /usr/sbin, which is not on every PATH.
        let bin = if Path::new("/usr/sbin/mosquitto").exists() {
            "/usr/sbin/mosquitto"
        } else {
            "mosquitto"
        };
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        let mut child = command
            .envs(env.iter().map(|(k, v)| (k, v)))
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto (Debian package mosquitto; scripts/test-all.sh installs it)");
        // Ready when it accepts TCP connections (under Valgrind that takes seconds).
        for _ in 0..3000 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Broker { child, port, log };
            }
            if let Ok(Some(status)) = child.try_wait() {
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                panic!("mosquitto exited ({status}):\n{log}");
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("mosquitto did not start");
    }

    /// Wait (10 s at most) until the broker has logged `text`; `what` names it in the failure.
    pub(crate) fn wait_for_log(&self, text: &str, what: &str) {
        self.wait_for_logged(text, 1, what);
    }

    /// Wait (10 s at most) until the broker has logged `text` `times` times.
    pub(crate) fn wait_for_logged(&self, text: &str, times: usize, what: &str) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while self.log_text().matches(text).count() < times {
            assert!(
                std::time::Instant::now() < deadline,
                "{what}: the broker did not log {text:?} {times} times:\n{}",
                self.log_text()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// What the broker has logged so far.
    pub(crate) fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Ask it to stop (SIGTERM: it unloads its plugins and exits) and return how it exited.
    pub(crate) fn terminate(mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success());
        self.child.wait().expect("broker exit")
    }

    /// Stop it now (SIGKILL) and reap it.
    pub(crate) fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
