#!/usr/bin/env bash
# Start a throw-away PostgreSQL server in a temporary directory, listening on a free loopback
# port only, and print the environment the PostgreSQL tests read.
# Usage: eval "$(bash scripts/postgres-env.sh DIR)"; stop it with
#        bash scripts/postgres-env.sh DIR stop      (then remove DIR)
#        bash scripts/postgres-env.sh DIR restart fast|immediate   (the crash tests do)
# With TESSERA_PG_STATEMENTS=1 the server preloads pg_stat_statements (the `nodes` load
# generator then counts statements per request).
# Uses Debian's PostgreSQL (package postgresql). initdb refuses to run as root, so as root the
# server runs as the `postgres` user on a directory it owns.
set -euo pipefail
dir="$1"
action="${2:-start}"
bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
[ -x "$bin/initdb" ] || { echo "PostgreSQL server binaries not found (apt-get install postgresql)" >&2; exit 1; }
as_owner() {
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
if [ "$action" = stop ]; then
    [ -f "$dir/data/postmaster.pid" ] && as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
    exit 0
fi
if [ "$action" = restart ]; then
    # With the options it was started with (pg_ctl keeps them in postmaster.opts).
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -m "${3:-fast}" -w restart >/dev/null
    exit 0
fi
mkdir -p "$dir"
if [ "$(id -u)" -eq 0 ]; then chown postgres: "$dir"; fi
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
as_owner "$bin/initdb" -D "$dir/data" -U tessera --auth=trust -E UTF8 --no-locale >/dev/null
# Loopback TCP only, and the Unix socket inside the directory (never the system's).
extra=""
[ "${TESSERA_PG_STATEMENTS:-0}" = 1 ] && extra="-c shared_preload_libraries=pg_stat_statements"
as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c max_connections=300 $extra" start >/dev/null
as_owner "$bin/createdb" -h 127.0.0.1 -p "$port" -U tessera tessera_test
echo "export TESSERA_TEST_PG_DIR='$dir'"
echo "export TESSERA_TEST_PG_BIN='$bin'"
echo "export TESSERA_TEST_STORE='postgres://tessera@127.0.0.1:$port/tessera_test'"
