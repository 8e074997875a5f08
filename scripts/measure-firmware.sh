#!/usr/bin/env bash
# Measure what libtessera costs a firmware build (x86_64): the stripped size of the example
# firmware linked with the library and with stubs in its place, the library's share by section,
# the size of libtessera.a, and the peak heap of one provisioning (Valgrind massif) against a
# real server, and the time of a clean build of the library. The library is the `device` shape
# (the default features) in the `firmware` profile. Figures go to docs/reliability.md. Needs
# gcc, valgrind, libpaho-mqtt-dev.
# Usage: bash scripts/measure-firmware.sh [--no-clean-build]
set -euo pipefail
cd "$(dirname "$0")/.."
WORK="$(mktemp -d "${TMPDIR:-/tmp}/tessera-fw.XXXXXX")"
SERVER_PID=""
cleanup() { [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

if [ "${1:-}" != "--no-clean-build" ]; then
    # A clean build of the firmware library alone, in a target directory of its own (the
    # registry's sources are already downloaded; compiling is what is timed).
    cargo fetch -q --locked
    start=$(date +%s.%N)
    CARGO_TARGET_DIR="$WORK/clean-target" cargo build -q --locked --profile firmware -p tessera-ffi
    end=$(date +%s.%N)
    echo "clean build of libtessera.a (firmware profile, device): $(awk "BEGIN{printf \"%.0f\", $end-$start}") s on $(nproc) cores"
    rm -rf "$WORK/clean-target"
fi
cargo build -q --locked --profile firmware -p tessera-ffi
cargo build -q --locked --release -p tessera-server
LIB=target/firmware/libtessera.a
CFLAGS="-std=c11 -Wall -Wextra -Wpedantic -Werror -O2 -D_DEFAULT_SOURCE -Iinclude"
NATIVE="-lgcc_s -lutil -lrt -lpthread -lm -ldl -lc"

gcc $CFLAGS ffi/examples/firmware.c "$LIB" -lpaho-mqtt3a $NATIVE -Wl,--gc-sections -o "$WORK/with"
gcc $CFLAGS ffi/examples/firmware.c ffi/tests/c/tessera_stubs.c -lpaho-mqtt3a -Wl,--gc-sections -o "$WORK/without"
strip "$WORK/with" "$WORK/without"
with=$(stat -c %s "$WORK/with"); without=$(stat -c %s "$WORK/without")
echo "libtessera.a:                 $(stat -c %s "$LIB") bytes"
echo "firmware with the library:    $with bytes (stripped)"
echo "firmware with stubs instead:  $without bytes (stripped)"
echo "added by the library:         $((with - without)) bytes ($(awk "BEGIN{printf \"%.2f\", ($with-$without)/1048576}") MiB)"
echo "sections (with / without):"
size -A "$WORK/with" > "$WORK/with.size"; size -A "$WORK/without" > "$WORK/without.size"
for s in .text .rodata .eh_frame .eh_frame_hdr .gcc_except_table .data.rel.ro .rela.dyn; do
    a=$(awk -v s="$s" '$1==s {print $2}' "$WORK/with.size"); b=$(awk -v s="$s" '$1==s {print $2}' "$WORK/without.size")
    printf '  %-18s %9s %9s\n' "$s" "${a:-0}" "${b:-0}"
done

# Peak heap during one provisioning, against a real server with an automatic-policy PT.
gcc $CFLAGS ffi/tests/c/provision_only.c "$LIB" $NATIVE -o "$WORK/provision_only"
target/release/tessera serve --data-dir "$WORK/data" --device-addr 127.0.0.1:0 --admin-addr 127.0.0.1:0 \
    --metrics-addr off > "$WORK/serve.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 100); do grep -q "admin endpoint on" "$WORK/serve.log" && break; sleep 0.1; done
DEVICE=$(sed -n 's/^tessera serving devices on \([0-9.:]*\).*/\1/p' "$WORK/serve.log" | head -1)
export TESSERA_DATA_DIR="$WORK/data"
export TESSERA_ADMIN_ADDR=$(sed -n 's/^admin endpoint on \([0-9.:]*\).*/\1/p' "$WORK/serve.log" | head -1)
PT=$(target/release/tessera pt create --label massif --approval automatic --json \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')
valgrind -q --tool=massif --pages-as-heap=no --massif-out-file="$WORK/massif.out" \
    "$WORK/provision_only" "$DEVICE" "$WORK/data/tls/ca.pem" "$PT" > /dev/null
peak=$(grep mem_heap_B "$WORK/massif.out" | sed 's/mem_heap_B=//' | sort -n | tail -1)
echo "peak heap while provisioning: $peak bytes ($((peak / 1024)) KiB), massif"
# MASSIF_OUT=file keeps the profile, for `ms_print file` (which allocations make the peak).
[ -n "${MASSIF_OUT:-}" ] && cp "$WORK/massif.out" "$MASSIF_OUT"
true
