#!/usr/bin/env bash
# Run every check and test of the project on a fresh machine of the project's kind.
# Usage: bash scripts/test-all.sh
# Installs what it needs (Debian packages when run as root: softhsm2, clang, valgrind, mosquitto,
# mosquitto-dev, libmosquitto-dev, mosquitto-clients, libpaho-mqtt-dev, libfaketime for the
# broker tests that move the broker's clock, chromium for the console's browser tests, systemd
# and pkg-config for the package check), runs
# fmt, clippy, the
# header drift check, the crate-boundary checks (no_std protocol crate, device shape of
# libtessera), the docs build,
# the Rust tests (the engine suite three times: with the software key keeper and with the PKCS#11
# keeper against throw-away SoftHSM2 tokens, and on PostgreSQL), the packages (scripts/dist.sh:
# the .deb files installed and run, then purged; the wheel), the Python package (the wheel into a venv,
# pytest, stubtest, mypy), the console in headless Chromium (node --test with playwright-core),
# and ends with the runners' summary lines.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
export CARGO_INCREMENTAL=0
WORK="$(mktemp -d "${TMPDIR:-/tmp}/tessera-test.XXXXXX")"
# The PostgreSQL server (started below) runs as its own user inside $WORK.
chmod 711 "$WORK"
trap 'bash scripts/postgres-env.sh "$WORK/pg" stop || true; rm -rf "$WORK"' EXIT
failures=()

# Each step prints the seconds since the start, so a slow step shows in the log.
step() { printf '\n==> [%ss] %s\n' "$SECONDS" "$*"; }

need_packages=()
command -v softhsm2-util >/dev/null 2>&1 || need_packages+=(softhsm2)
command -v clang >/dev/null 2>&1 || need_packages+=(clang)
command -v valgrind >/dev/null 2>&1 || need_packages+=(valgrind)
command -v gcc >/dev/null 2>&1 || need_packages+=(gcc)
command -v make >/dev/null 2>&1 || need_packages+=(make)
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need_packages+=(mosquitto)
[ -e /usr/include/MQTTAsync.h ] || need_packages+=(libpaho-mqtt-dev)
[ -e /usr/include/mosquitto_plugin.h ] || need_packages+=(mosquitto-dev)
[ -e /usr/include/mosquitto.h ] || need_packages+=(libmosquitto-dev)
command -v mosquitto_pub >/dev/null 2>&1 || need_packages+=(mosquitto-clients)
[ -e /usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1 ] || need_packages+=(libfaketime)
[ -x /usr/bin/chromium ] || need_packages+=(chromium)
command -v npm >/dev/null 2>&1 || need_packages+=(npm)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_packages+=(postgresql)
# The package check (scripts/check-package.sh): the unit's verifier, pkg-config, the package's
# own dependency (adduser) and pgrep.
command -v systemd-analyze >/dev/null 2>&1 || need_packages+=(systemd)
command -v pkg-config >/dev/null 2>&1 || need_packages+=(pkg-config)
command -v adduser >/dev/null 2>&1 || [ -x /usr/sbin/adduser ] || need_packages+=(adduser)
command -v pgrep >/dev/null 2>&1 || need_packages+=(procps)
# promtool, for the alerting rules in deploy/prometheus.
command -v promtool >/dev/null 2>&1 || need_packages+=(prometheus)
if [ "${#need_packages[@]}" -ne 0 ]; then
    step "installing ${need_packages[*]}"
    if [ "$(id -u)" -eq 0 ]; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq "${need_packages[@]}" >/dev/null
    else
        echo "missing Debian packages: ${need_packages[*]} (run as root, or install them)" >&2
        exit 1
    fi
fi

step "cargo fmt --check"
cargo fmt --all --check || failures+=("fmt")

step "cargo clippy --workspace --all-targets -D warnings"
cargo clippy --workspace --all-targets --features tessera-ffi/platform --locked -- -D warnings || failures+=("clippy")
# The firmware shape of the C library and the no_std build of the protocol crate, linted alone.
cargo clippy -p tessera-ffi --locked -- -D warnings || failures+=("clippy (device shape)")
cargo clippy -p tessera-proto --no-default-features --locked -- -D warnings || failures+=("clippy (no_std proto)")

step "C header drift check (cbindgen 0.29.2)"
CBINDGEN_VERSION=0.29.2
if ! cbindgen --version 2>/dev/null | grep -q "$CBINDGEN_VERSION"; then
    cargo install cbindgen --version "$CBINDGEN_VERSION" --locked --quiet
fi
(cd ffi && cbindgen --config cbindgen.toml --crate tessera-ffi --output "$WORK/tessera.h" . 2>/dev/null)
if diff -u include/tessera.h "$WORK/tessera.h"; then
    echo "include/tessera.h is up to date"
else
    echo "include/tessera.h differs from what cbindgen generates; regenerate it" >&2
    failures+=("header drift")
fi

step "shell snippets in the README and docs/ parse (bash -n); no citation of outside design notes"
python3 - "$WORK" <<'PY' || failures+=("doc snippets")
import pathlib, re, subprocess, sys
work = pathlib.Path(sys.argv[1])
docs = [pathlib.Path("README.md"), *sorted(pathlib.Path("docs").glob("*.md"))]
bad = 0
for doc in docs:
    text = doc.read_text()
    if "DESIGN.md" in text or "DESIGN §" in text:
        print(f"{doc}: cites DESIGN.md, which is not part of the repository"); bad += 1
    for i, block in enumerate(re.findall(r"```sh\n(.*?)```", text, re.S)):
        f = work / f"{doc.stem}-{i}.sh"
        f.write_text(block)
        r = subprocess.run(["bash", "-n", str(f)], capture_output=True, text=True)
        if r.returncode != 0:
            print(f"{doc}: shell snippet {i} does not parse:\n{block}\n{r.stderr}"); bad += 1
sys.exit(1 if bad else 0)
PY

step "alerting rules: promtool check rules, promtool test rules (deploy/prometheus)"
(cd deploy/prometheus && promtool check rules tessera-alerts.yml \
    && promtool test rules tessera-alerts.test.yml) || failures+=("alerting rules")
python3 -m json.tool deploy/grafana/tessera-dashboard.json > /dev/null || failures+=("dashboard JSON")

step "crate boundaries: tessera-proto builds without std; the device shape of libtessera has no engine, store or server"
# The check crate defines its own panic handler, which fails to compile if anything in its
# graph links std.
cargo build -q --manifest-path proto/no-std-check/Cargo.toml --target-dir target/no-std-check --locked \
    && echo "tessera-proto: no_std + alloc build ok" || failures+=("no_std build")
if device_tree="$(cargo tree -p tessera-ffi --no-default-features --features device -e normal --locked)"; then
    if grep -E "rusqlite|tessera-engine|tessera-server" <<<"$device_tree"; then
        echo "the device shape of libtessera links the above" >&2
        failures+=("device shape")
    else
        echo "device shape: $(grep -c . <<<"$device_tree") dependency lines, none of rusqlite, tessera-engine, tessera-server"
    fi
else
    failures+=("device shape")
fi

step "cargo doc (warnings are errors)"
RUSTDOCFLAGS=-Dwarnings cargo doc --workspace --no-deps --locked -q || failures+=("doc")

run_tests() { # name, then the command
    local name="$1"
    shift
    step "$name: $*"
    set +e
    "$@" 2>&1 | tee -a "$WORK/tests.log"
    local status=${PIPESTATUS[0]}
    set -e
    [ "$status" -eq 0 ] || failures+=("$name")
}

# The test build of libtessera is the `platform` shape (so the local validator is tested too)
# with the test-only `panic-test` feature (a panic point that fires only when
# TESSERA_FFI_PANIC is set), so one build serves every C test.
FFI_TEST_FEATURES="tessera-ffi/platform,tessera-ffi/panic-test"
# Every later pass runs targets of this one build: cargo resolves features for the packages it
# is given, so `-p tessera-engine` would compile the engine and its dependencies again with
# another feature set. `--lib` adds libtessera.a (a staticlib is not built for tests).
TEST=(cargo test --workspace --features "$FFI_TEST_FEATURES" --locked)
TESSERA_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/tessera"
ENGINE_TESTS=()
for t in engine/tests/*.rs; do ENGINE_TESTS+=(--test "$(basename "$t" .rs)"); done
step "building the workspace once for every test pass (libtessera.a for the C tests included)"
cargo build --workspace --lib --tests --features "$FFI_TEST_FEATURES" --locked || failures+=("build")
run_tests "rust and C tests" "${TEST[@]}"

step "SoftHSM2 tokens for the PKCS#11 keeper"
eval "$(bash scripts/softhsm-env.sh "$WORK/softhsm")"
# The suite's shared root key, made once with the CLI before tests in several processes use it.
TESSERA_HSM_PIN="$TESSERA_TEST_PKCS11_PIN" "$TESSERA_BIN" keys init-hsm \
    --module "$TESSERA_TEST_PKCS11_MODULE" --token-label "$TESSERA_TEST_PKCS11_TOKEN" --key-label tessera-test-root \
    || failures+=("init-hsm")
run_tests "engine suite with the PKCS#11 keeper" env TESSERA_TEST_KEEPER=pkcs11 "${TEST[@]}" "${ENGINE_TESTS[@]}"
run_tests "PKCS#11 keeper tests" "${TEST[@]}" --test pkcs11 -- --ignored

step "PostgreSQL: a throw-away server on a loopback port"
if pg_env="$(bash scripts/postgres-env.sh "$WORK/pg")"; then
    eval "$pg_env"
    run_tests "engine suite on PostgreSQL" env TESSERA_TEST_STORE="$TESSERA_TEST_STORE" \
        "${TEST[@]}" "${ENGINE_TESTS[@]}"
    run_tests "several nodes on PostgreSQL" env TESSERA_TEST_STORE="$TESSERA_TEST_STORE" \
        "${TEST[@]}" --test nodes -- --ignored
    run_tests "end-to-end suite on PostgreSQL" env TESSERA_TEST_STORE="$TESSERA_TEST_STORE" \
        "${TEST[@]}" --test e2e
    run_tests "three nodes, and readiness with the database cut off, end to end on PostgreSQL" \
        env TESSERA_TEST_STORE="$TESSERA_TEST_STORE" \
        "${TEST[@]}" --test e2e -- --ignored --test-threads=1 nodes:: probes::
else
    cat "$WORK/pg/server.log" 2>/dev/null || true
    failures+=("postgresql")
fi
run_tests "serve with an HSM root" "${TEST[@]}" --test cli -- --ignored

# Python: a fresh virtual environment (kept in .venv between runs), the wheel users get installed
# with pip, then pytest, the stub check and mypy.
VENV="${TESSERA_VENV:-$PWD/.venv}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --disable-pip-version-check -r bindings/python/requirements-dev.txt \
    || failures+=("python tools")

# What users install: the Debian packages and the abi3 wheel, built once in the dev profile
# (reusing the tests' build), then installed and run as an operator would (as root: dpkg).
step "packages: bash scripts/dist.sh --profile dev"
PATH="$VENV/bin:$PATH" bash scripts/dist.sh --profile dev --server-binary "$TESSERA_BIN" \
    || failures+=("dist")
step "Python package: pip install the wheel into a virtual environment"
"$VENV/bin/pip" install -q --disable-pip-version-check --force-reinstall --no-deps \
    dist/tessera-*-abi3-*.whl || failures+=("pip install")
step "the Debian packages installed, the unit verified, the installed server run as the unit runs it, purged"
if [ "$(id -u)" -eq 0 ]; then
    bash scripts/check-package.sh "$VENV/bin/python" || failures+=("package check")
else
    echo "installing packages needs root" >&2
    failures+=("package check (not root)")
fi
step "pytest bindings/python/tests"
set +e
"$VENV/bin/python" -m pytest bindings/python/tests -q -p no:cacheprovider 2>&1 | tee "$WORK/pytest.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || failures+=("python tests")
set -e
step "stubs match the native module (mypy.stubtest), and the package type-checks (mypy --strict)"
(cd "$WORK" && "$VENV/bin/python" -m mypy.stubtest tessera._native) || failures+=("stubtest")
"$VENV/bin/python" -m mypy --strict --no-incremental bindings/python/python/tessera || failures+=("mypy")

# The console in headless Chromium, driven by playwright-core (installed from the lockfile),
# against the `tessera` binary the Rust tests built.
step "console browser tests (node --test, playwright-core, Debian chromium)"
(cd tests/browser && npm ci --no-audit --no-fund --silent) || failures+=("npm ci")
set +e
(cd tests/browser && TESSERA_BIN="$TESSERA_BIN" node --test --test-concurrency=1) 2>&1 \
    | tee "$WORK/browser.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || failures+=("browser tests")
set -e

# The HTTPS API against its own OpenAPI document: Schemathesis (pinned in
# tests/api/requirements.txt, in a venv of its own) with every check against a `tessera serve`
# started here with rate limits high enough for a fuzzer (tests/api/schemathesis.toml).
step "API fuzzing against the OpenAPI document (schemathesis, every check)"
API_VENV="${TESSERA_API_VENV:-$PWD/.venv-api}"
[ -x "$API_VENV/bin/python" ] || python3 -m venv "$API_VENV"
"$API_VENV/bin/pip" install -q --disable-pip-version-check -r tests/api/requirements.txt \
    || failures+=("schemathesis install")
API_DIR="$WORK/api"
mkdir -p "$API_DIR"
printf 'admin_burst = 1000000\nadmin_per_minute = 10000000\nauth_failure_burst = 1000000\nauth_failures_per_minute = 10000000\n' > "$API_DIR/tessera.toml"
"$TESSERA_BIN" serve --config "$API_DIR/tessera.toml" --data-dir "$API_DIR/data" \
    --device-addr 127.0.0.1:0 --admin-addr 127.0.0.1:0 --console-addr 127.0.0.1:0 \
    --metrics-addr off > "$API_DIR/serve.out" 2> "$API_DIR/serve.err" &
API_SERVER=$!
API_URL=""
for _ in $(seq 1 300); do
    API_URL=$(sed -n 's#^console: \(https://[^ ]*\)/$#\1#p' "$API_DIR/serve.out")
    [ -n "$API_URL" ] && break
    sleep 0.1
done
set +e
if [ -n "$API_URL" ]; then
    (cd tests/api && TESSERA_ADMIN_TOKEN="$(cat "$API_DIR/data/admin.token")" \
        "$API_VENV/bin/schemathesis" --config-file schemathesis.toml run \
        "$API_URL/api/v1/openapi.json" --checks all --seed 1) 2>&1 | tee "$WORK/api.log"
    [ "${PIPESTATUS[0]}" -eq 0 ] || failures+=("schemathesis")
else
    echo "the server for the API fuzzing did not start:"; cat "$API_DIR/serve.err"
    failures+=("schemathesis")
fi
set -e
kill "$API_SERVER" 2>/dev/null || true
wait "$API_SERVER" 2>/dev/null || true

read -r passed failed < <(awk '/^test result:/ {
    for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i }
} END { print p + 0, f + 0 }' "$WORK/tests.log")

echo
echo "rust: ${passed:-0} passed, ${failed:-0} failed"
echo "python: $(tail -n 1 "$WORK/pytest.log" 2>/dev/null || echo 'not run')"
echo "browser: $(awk '/^# pass/ {p=$3} /^# fail/ {f=$3} END {print p+0 " passed, " f+0 " failed"}' "$WORK/browser.log")"
echo "api: $(grep -E '^ +[0-9]+ generated, ' "$WORK/api.log" 2>/dev/null | tail -n 1 | sed 's/^ *//') ($(grep -cE '^ +❌ ' "$WORK/api.log" 2>/dev/null) kinds of failure)"
if [ "${#failures[@]}" -ne 0 ]; then
    echo "FAILED: ${failures[*]}"
    exit 1
fi
