#!/usr/bin/env bash
# Run the central ingest API with one command.
#
#   DATABASE_URL=postgresql://central:secret@127.0.0.1:5432/central central/run.sh
#       migrate the database to the latest schema, then serve (uvicorn; --workers N or
#       CENTRAL_WORKERS processes, default 1) on CENTRAL_HOST:CENTRAL_PORT (default 127.0.0.1:8080).
#
#   central/run.sh --temp-db
#       no database needed: start a throwaway PostgreSQL in a temporary directory, create a
#       gateway (CENTRAL_DEMO_GATEWAY, default gw-local) and a viewer (ops), print their tokens,
#       and serve. Everything is deleted when the server stops (Ctrl-C). For trying things out
#       and end-to-end tests only.
#
# Extra arguments go to `python3 -m central serve` (e.g. --host 0.0.0.0 --port 9000).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cd "$here/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

if [ "${1:-}" = "--temp-db" ]; then
  shift
  exec "$here/tests/with_postgres.sh" /usr/bin/env CENTRAL_SERVE_ARGS="$*" bash -c '
    set -euo pipefail
    /usr/bin/python3 -m central migrate 2>/dev/null
    gw=${CENTRAL_DEMO_GATEWAY:-gw-local}
    echo "gateway $gw token: $(/usr/bin/python3 -m central gateway create "$gw" 2>/dev/null)"
    echo "viewer ops token:  $(/usr/bin/python3 -m central viewer create ops 2>/dev/null)"
    echo "DATABASE_URL=$DATABASE_URL (temporary)"
    /usr/bin/python3 -m central serve --no-migrate $CENTRAL_SERVE_ARGS'
fi

if [ -z "${DATABASE_URL:-}" ]; then
  echo "error: set DATABASE_URL (postgresql://user:password@host:port/dbname) or use --temp-db" >&2
  exit 2
fi
exec /usr/bin/python3 -m central serve "$@"
