#!/usr/bin/env bash
# Runs every golden case with the given meter-agent binary and compares its
# exports with expected/ (README.md beside this file):
#   tests/data/golden/check_golden.sh AGENT_BINARY SOURCE_DIR
# SOURCE_DIR is the source tree whose tests/data/golden/ holds the inputs and
# expected outputs. Prints each difference as a diff and "N passed, M failed";
# exits 1 when a case fails, 2 on a usage error.
set -uo pipefail
if [[ $# -ne 2 ]]; then
  echo "usage: $0 AGENT_BINARY SOURCE_DIR" >&2
  exit 2
fi
# shellcheck source=golden_lib.sh
source "$(cd "$(dirname "$0")" && pwd)/golden_lib.sh"
agent=$(realpath "$1")
golden=$(realpath "$2")/tests/data/golden
[[ -x $agent ]] || { echo "$0: $1 is not an executable" >&2; exit 2; }
[[ -d $golden/inputs && -d $golden/expected ]] ||
  { echo "$0: no inputs/ and expected/ in $golden" >&2; exit 2; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/meter-golden.XXXXXX") || exit 2
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

max_diff_lines=200
passed=0
failed=0
# show_diff EXPECTED ACTUAL WHAT: prints the difference (at most
# $max_diff_lines lines); returns 1 if there is one.
show_diff() {
  local out
  out=$(diff -u --label "expected/${1##*/}" --label "$3" "$1" "$2") && return 0
  echo "$out" | head -n "$max_diff_lines"
  local total
  total=$(echo "$out" | wc -l)
  if ((total > max_diff_lines)); then
    echo "... ($((total - max_diff_lines)) more diff lines)"
  fi
  return 1
}

declare -A seen=()
while read -r name; do
  seen[$name]=1
  work=$tmp/$name
  mkdir "$work"
  expected=$golden/expected/$name.jsonl
  ok=1
  if [[ ! -f $expected ]]; then
    echo "FAIL $name: no expected/$name.jsonl (make_golden.sh writes it)"
    ok=0
  elif ! golden_run "$agent" "$golden" "$name" "$work"; then
    echo "FAIL $name: a command failed:"
    tail -n 20 "$work/log"
    ok=0
  else
    if ! show_diff "$expected" "$work/export.jsonl" "$name: export after the imports" \
      >"$work/diff"; then
      echo "FAIL $name: the export differs:"
      cat "$work/diff"
      ok=0
    fi
    renormalized=$(golden_expected_renormalized "$golden" "$name")
    if ! show_diff "$renormalized" "$work/renormalized.jsonl" \
      "$name: export after renormalize" >"$work/diff"; then
      echo "FAIL $name: the export after renormalize differs:"
      cat "$work/diff"
      ok=0
    fi
  fi
  if ((ok)); then
    echo "ok   $name"
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
  fi
  rm -rf "$work"
done < <(golden_cases "$golden")

# An expected file without its case is a case that went missing.
for file in "$golden"/expected/*.jsonl; do
  [[ -f $file ]] || continue
  name=${file##*/}
  name=${name%.jsonl}
  name=${name%.renormalized}
  if [[ -z ${seen[$name]:-} ]]; then
    echo "FAIL ${file##*/}: no inputs/$name/steps for it"
    failed=$((failed + 1))
  fi
done

echo "$passed passed, $failed failed"
((failed == 0))
