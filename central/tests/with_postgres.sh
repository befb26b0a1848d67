#!/usr/bin/env bash
# Run a command against a throwaway PostgreSQL 15: a fresh cluster in a temporary directory,
# listening on a free loopback port (socket in the same directory), DATABASE_URL exported to the
# command. The server is stopped and the directory removed on every exit path (trap), so runs
# can happen in parallel and leave nothing behind. Works as root (the cluster runs as the
# `postgres` user, initdb refuses root) and as an ordinary user.
#
#   central/tests/with_postgres.sh COMMAND [ARGS...]
#
# Environment: PG_BIN (default /usr/lib/postgresql/15/bin), PG_FSYNC (default off: tests only;
# set PG_FSYNC=on for benchmarks that should pay for durable commits), CENTRAL_PG_TMPDIR (where
# the temporary directory goes, default /tmp: the postgres user must be able to reach it, and
# the socket path must stay short).
set -euo pipefail

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
PG_FSYNC=${PG_FSYNC:-off}
[ $# -ge 1 ] || { echo "usage: $0 COMMAND [ARGS...]" >&2; exit 2; }
[ -x "$PG_BIN/initdb" ] || { echo "error: $PG_BIN/initdb not found (apt-get install postgresql-15)" >&2; exit 2; }

tmp=$(mktemp -d "${CENTRAL_PG_TMPDIR:-/tmp}/central-pg.XXXXXX")
data="$tmp/data"
pg_pid=""

as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -f "$data/postmaster.pid" ]; then
    as_pg "$PG_BIN/pg_ctl" -D "$data" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  if [ -n "$pg_pid" ] && kill -0 "$pg_pid" 2>/dev/null; then
    kill -KILL "$pg_pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ "$(id -u)" = 0 ]; then chown postgres: "$tmp"; fi
as_pg "$PG_BIN/initdb" -D "$data" -A trust -U postgres -E UTF8 --locale=C.UTF-8 --no-sync \
  >"$tmp/initdb.log" 2>&1 || { cat "$tmp/initdb.log" >&2; exit 1; }

free_port() {
  /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

started=""
for attempt in 1 2 3 4 5; do
  port=$(free_port)
  if as_pg "$PG_BIN/pg_ctl" -D "$data" -l "$tmp/postgres.log" -w -t 60 start \
       -o "-p $port -k $tmp -c listen_addresses=127.0.0.1 -c fsync=$PG_FSYNC \
           -c synchronous_commit=$PG_FSYNC -c full_page_writes=$PG_FSYNC \
           -c max_connections=60 -c shared_buffers=128MB" >/dev/null 2>&1; then
    started=yes
    break
  fi
  sleep 0.2  # port taken between probe and bind: try another
done
if [ -z "$started" ]; then
  echo "error: PostgreSQL did not start; log:" >&2
  cat "$tmp/postgres.log" >&2 || true
  exit 1
fi
pg_pid=$(head -1 "$data/postmaster.pid")

"$PG_BIN/createdb" -h 127.0.0.1 -p "$port" -U postgres central_test

export DATABASE_URL="postgresql://postgres@127.0.0.1:$port/central_test"
export CENTRAL_TEST_PG_LOG="$tmp/postgres.log"
set +e
"$@"
rc=$?
set -e
exit "$rc"
