#!/usr/bin/env bash
# Check the Debian packages scripts/dist.sh built, as an operator would meet them: install them
# with dpkg, verify the unit with systemd-analyze, start the installed server as the unit does
# (its user and group, no new privileges, no capabilities, its umask, open-files limit and
# environment, its state directory made as systemd makes it), use it through the installed CLI,
# C library (pkg-config) and, given PYTHON, a Python with the wheel installed, then purge.
# What needs a running systemd (the unit's namespaces and system-call filter) is left to
# systemd-analyze: CI has no systemd as PID 1.
#
# Usage (as root, on a machine without tessera installed): bash scripts/check-package.sh [PYTHON]
set -euo pipefail
cd "$(dirname "$0")/.."
python="${1:-}"
[ "$(id -u)" -eq 0 ] || { echo "check-package.sh installs packages: run it as root" >&2; exit 1; }
for p in /usr/bin/tessera /var/lib/tessera /etc/tessera; do
    [ ! -e "$p" ] || { echo "$p exists: this check needs a machine without tessera" >&2; exit 1; }
done
work="$(mktemp -d "${TMPDIR:-/tmp}/tessera-package.XXXXXX")"
server=""
cleanup() {
    [ -z "$server" ] || kill "$server" 2>/dev/null || true
    dpkg --purge tessera libtessera-dev >/dev/null 2>&1 || true
    rm -rf /var/lib/tessera "$work"
}
trap cleanup EXIT
ok() { printf 'ok: %s\n' "$*"; }

dpkg -i dist/tessera_*.deb dist/libtessera-dev_*.deb >/dev/null
ok "dpkg -i installed $(dpkg-query -W -f '${Package} ${Version}\n' tessera libtessera-dev | paste -sd, -)"
unit=/usr/lib/systemd/system/tessera.service
systemd-analyze verify "$unit"
ok "systemd-analyze verify $unit"
getent passwd tessera >/dev/null
ok "user tessera: $(getent passwd tessera)"
zcat /usr/share/man/man1/tessera.1.gz | grep -q '^\.TH tessera 1'
grep -q 'complete .*tessera' /usr/share/bash-completion/completions/tessera
ok "the manual page and the bash completion are installed ($(tessera --version))"

# The unit's settings, read from the installed unit.
setting() { sed -n "s/^$1=//p" "$unit" | tail -n 1; }
user="$(setting User)" group="$(setting Group)" umask_="$(setting UMask)"
nofile="$(setting LimitNOFILE)" state="/var/lib/$(setting StateDirectory)"
state_mode="$(setting StateDirectoryMode)" exec_start="$(setting ExecStart)"
read -r -a environment <<< "$(setting Environment)"
[ -z "$(setting CapabilityBoundingSet)" ] && [ "$(setting NoNewPrivileges)" = yes ]
install -d -o "$user" -g "$group" -m "$state_mode" "$state"
# systemd raises the hard limit; here, in a container, the hard limit may be lower and this
# shell may not raise it: then the check applies what it can.
hard="$(ulimit -Hn)"
if [ "$hard" != unlimited ] && [ "$hard" -lt "$nofile" ]; then
    echo "note: LimitNOFILE=$nofile is above this machine's hard limit $hard; checking with $hard"
    nofile="$hard"
fi
read -r -a command <<< "$exec_start"
# Loopback and free ports, so the check runs beside anything else on the machine.
command+=(--device-addr 127.0.0.1:0 --admin-addr 127.0.0.1:0 --console-addr 127.0.0.1:0
          --metrics-addr 127.0.0.1:0)
(
    umask "$umask_"
    cd /
    exec prlimit --nofile="$nofile:$nofile" \
        setpriv --reuid "$user" --regid "$group" --init-groups --no-new-privs \
        --bounding-set -all --inh-caps -all \
        env -i PATH=/usr/bin:/bin "${environment[@]}" "${command[@]}"
) > "$work/serve.out" 2> "$work/serve.err" &
server=$!
admin=""
for _ in $(seq 1 300); do
    admin="$(sed -n 's/^admin endpoint on \([^ ]*\) .*/\1/p' "$work/serve.out")"
    [ -n "$admin" ] && grep -q '^first admin token' "$work/serve.out" && break
    kill -0 "$server" 2>/dev/null || { cat "$work/serve.err"; exit 1; }
    sleep 0.1
done
[ -n "$admin" ] || { echo "the installed server did not start"; cat "$work/serve.err"; exit 1; }
ok "the installed server serves (admin endpoint $admin)"
if grep -q tsat_ "$work/serve.out" "$work/serve.err"; then
    echo "the admin token went to the server's output (the journal)"; exit 1
fi
ok "no admin token in its output"

pid="$(pgrep -f -u "$user" '^/usr/bin/tessera serve' | head -n 1)"
[ "$(ps -o user= -p "$pid" | tr -d ' ')" = "$user" ]
grep -q '^CapEff:[[:space:]]*0000000000000000$' "/proc/$pid/status"
grep -q '^NoNewPrivs:[[:space:]]*1$' "/proc/$pid/status"
[ "$(awk '/^Max open files/ {print $4}' "/proc/$pid/limits")" = "$nofile" ]
ok "it runs as $user, no capabilities, no new privileges, $nofile open files"
bad="$(find "$state" \( -type d ! -perm 700 \) -o \( -type f ! -perm 600 \) -o ! -user "$user")"
[ -z "$bad" ] || { echo "not private to $user: $bad"; exit 1; }
ok "$state: every directory 0700, every file 0600, all owned by $user"

export TESSERA_DATA_DIR="$state" TESSERA_ADMIN_ADDR="$admin"
tessera status > "$work/status.out"
pt="$(tessera pt create --label package-check --approval automatic --json \
    | sed -n 's/.*"token": *"\(tspt_[^"]*\)".*/\1/p')"
[ -n "$pt" ] || { echo "pt create printed no token"; exit 1; }
ok "the installed CLI: tessera status, tessera pt create"

cat > "$work/check.c" <<'C'
#include <stdio.h>
#include <string.h>
#include <tessera.h>
int main(int argc, char **argv) {
    if (argc != 2) return 2;
    printf("libtessera %s\n", tessera_version());
    return tessera_pt_check((const uint8_t *)argv[1], strlen(argv[1])) == TESSERA_OK ? 0 : 1;
}
C
# shellcheck disable=SC2046
cc -o "$work/check" "$work/check.c" $(pkg-config --cflags --libs --static tessera)
"$work/check" "$pt"
ok "a C program built with pkg-config against libtessera-dev checks the PT"

if [ -n "$python" ]; then
    device="$(sed -n 's/^tessera serving devices on \([^ ]*\) .*/\1/p' "$work/serve.out")"
    "$python" - "$device" "$pt" "$state/tls/ca.pem" <<'PY'
import sys
import tessera
address, pt, ca = sys.argv[1:]
with open(ca, "rb") as f:
    trust = f.read()
with tessera.DeviceClient(address, pt, ca_pem=trust, device_id="package-check-1") as device:
    registration = device.ensure_registered(10)
    assert registration.device_id == "package-check-1", registration
print("python: registered", registration.device_id, "from", tessera.__file__)
PY
    ok "the wheel's DeviceClient provisions against the installed server"
fi

kill -TERM "$server"
wait "$server" || true
server=""
grep -q 'tessera server stopped' "$work/serve.err"
ok "SIGTERM: the server drained and stopped"

dpkg --purge tessera libtessera-dev > /dev/null 2> "$work/purge.err"
grep -q "/var/lib/tessera is kept" "$work/purge.err"
for p in /usr/bin/tessera /etc/tessera "$unit" /usr/include/tessera.h; do
    [ ! -e "$p" ] || { echo "$p is left after dpkg --purge"; exit 1; }
done
! getent passwd tessera >/dev/null
[ -d "$state" ]
ok "dpkg --purge removed the program, unit, configuration and user, and kept $state"
