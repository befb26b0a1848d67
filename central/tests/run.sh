#!/usr/bin/env bash
# The one entry point for the central's tests: starts a throwaway PostgreSQL (see
# with_postgres.sh) and runs the pytest suite against it with /usr/bin/python3 (Debian's
# packages). Exits non-zero on any failure, including "no tests collected" (pytest exit 5).
# Arguments go to pytest (e.g. -x, -k revision); the test path is central/tests unless an
# argument names one under central/ (e.g. central/tests/test_canonical.py).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cd "$repo"

has_path=""
for arg in "$@"; do
  case "$arg" in central/*) has_path=yes ;; esac
done
[ -n "$has_path" ] || set -- "$@" central/tests
set +e
"$here/with_postgres.sh" /usr/bin/python3 -m pytest -q -p no:cacheprovider "$@"
rc=$?
set -e
if [ "$rc" = 5 ]; then
  echo "error: pytest collected no tests" >&2
  exit 1
fi
exit "$rc"
