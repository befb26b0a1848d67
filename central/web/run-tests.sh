#!/usr/bin/env bash
# The dashboard's tests, from a clean checkout: npm ci, type check, Vitest component tests, the
# production build, then end-to-end tests in headless Chromium (Debian's /usr/bin/chromium via
# playwright-core) against the real central service (uvicorn on a free loopback port) and a
# throwaway PostgreSQL (central/tests/with_postgres.sh), seeded through the ingest API.
#
#   central/web/run-tests.sh                 everything; screenshots to central/web/e2e/out/
#   central/web/run-tests.sh --screenshots   ... and to docs/screenshots/ (to commit them)
#   central/web/run-tests.sh --bench         ... and the first-load benchmark (docs/BENCHMARKS.md)
#
# Needs node >= 20.19 with npm, /usr/bin/chromium, /usr/bin/python3 with central's Debian packages
# and PostgreSQL 15 (scripts/install-deps.sh installs them). Everything it starts is stopped by PID.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
screenshot_dir="$here/e2e/out"
bench=""
for arg in "$@"; do
  case "$arg" in
    --screenshots) screenshot_dir="$repo/docs/screenshots" ;;
    --bench) bench=yes ;;
    *) echo "usage: $0 [--screenshots] [--bench]" >&2; exit 2 ;;
  esac
done

cd "$here"
if ! node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)'; then
  echo "error: node $(node --version 2>/dev/null || echo 'not found') is too old: Vite 8 needs >= 20.19 (the machine's preinstalled node; do not apt-get install nodejs/npm)" >&2
  exit 1
fi
[ -x "${CHROMIUM_PATH:-/usr/bin/chromium}" ] || { echo "error: ${CHROMIUM_PATH:-/usr/bin/chromium} not found (apt-get install chromium)" >&2; exit 1; }
echo "web: npm ci"
npm ci --no-audit --no-fund --loglevel=error
echo "web: vitest"
npm test --silent
echo "web: build"
npm run build --silent
ls -l dist/assets

# The part below runs inside with_postgres.sh (DATABASE_URL exported, database removed on exit).
export SCREENSHOT_DIR="$screenshot_dir" E2E_BENCH="$bench" REPO="$repo"
exec "$repo/central/tests/with_postgres.sh" bash -c '
  set -euo pipefail
  cd "$REPO"
  export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
  py=/usr/bin/python3
  $py -m central migrate 2>/dev/null
  export GW_NORTH_TOKEN=$($py -m central gateway create gw-north 2>/dev/null)
  export GW_SOUTH_TOKEN=$($py -m central gateway create gw-south 2>/dev/null)
  export GW_LAB_TOKEN=$($py -m central gateway create gw-lab 2>/dev/null)
  export VIEWER_TOKEN=$($py -m central viewer create e2e 2>/dev/null)
  port=$($py -c "import socket; s=socket.socket(); s.bind((\"127.0.0.1\", 0)); print(s.getsockname()[1])")
  export CENTRAL_URL="http://127.0.0.1:$port"
  log=$(mktemp)
  CENTRAL_LOG_LEVEL=warning $py -m central serve --no-migrate --port "$port" >"$log" 2>&1 &
  server=$!
  trap "kill $server 2>/dev/null; wait $server 2>/dev/null; rm -f $log" EXIT
  # wait for /healthz, with a deadline
  deadline=$((SECONDS + 30))
  until $py -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1], timeout=1)" "$CENTRAL_URL/healthz" 2>/dev/null; do
    if ! kill -0 $server 2>/dev/null || [ $SECONDS -ge $deadline ]; then
      echo "central did not start; its log:" >&2; cat "$log" >&2; exit 1
    fi
    sleep 0.1
  done
  echo "web: e2e against $CENTRAL_URL"
  rc=0
  node central/web/e2e/run.mjs || rc=$?
  if [ "$rc" = 0 ] && [ -n "$E2E_BENCH" ]; then
    node central/web/e2e/bench.mjs || rc=$?
  fi
  if [ "$rc" != 0 ]; then echo "central log:" >&2; tail -50 "$log" >&2; fi
  exit $rc
'
