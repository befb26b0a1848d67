#!/usr/bin/env bash
# The long fuzz pass of the central (issue #16): the ingest endpoint and the read API, each for
# SECONDS (default 1800), against the real app on a throwaway PostgreSQL (run.sh). Prints the
# tally of each (requests per status code and per outcome/reason); fails on any 5xx.
#   central/tests/fuzz.sh            30 minutes each
#   central/tests/fuzz.sh 60 ingest  one minute, the ingest fuzzer only (or: read)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
seconds=${1:-1800}
which=${2:-all}
tests=()
case "$which" in
  all) tests=(central/tests/test_fuzz_ingest.py central/tests/test_fuzz_read.py) ;;
  ingest) tests=(central/tests/test_fuzz_ingest.py) ;;
  read) tests=(central/tests/test_fuzz_read.py) ;;
  *) echo "usage: $0 [SECONDS] [all|ingest|read]" >&2; exit 2 ;;
esac
CENTRAL_FUZZ_SECONDS=$seconds exec "$here/run.sh" -s "${tests[@]}"
