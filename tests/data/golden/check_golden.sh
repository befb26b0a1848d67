#!/usr/bin/env bash
# Runs every golden case with the given meter-agent binary and compares its
# exports with expected/ (README.md beside this file):
#   tests/data/golden/check_golden.sh [--jobs N] AGENT_BINARY SOURCE_DIR
# SOURCE_DIR is the source tree whose tests/data/golden/ holds the inputs and
# expected outputs. Prints each difference as a diff and "N passed, M failed";
# exits 1 when a case fails, 2 on a usage error. --jobs N runs N cases at once
# (each in its own directory with its own buffer; default 1); the report is the
# same, in case order, whatever N.
set -uo pipefail
jobs=1
if [[ ${1:-} == --jobs ]]; then
  jobs=${2:-}
  shift 2 || true
fi
if [[ $# -ne 2 || ! $jobs =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: $0 [--jobs N] AGENT_BINARY SOURCE_DIR" >&2
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
# The cases still running are stopped first (each runs in a background
# subshell): the subshells are paused so that they start nothing new, then they
# and the commands they are running (a meter-agent, a diff) are terminated.
stop_cases() {
  local -a pids children
  mapfile -t pids < <(jobs -p)
  ((${#pids[@]} == 0)) && return 0
  kill -STOP "${pids[@]}" 2>/dev/null
  mapfile -t children < <(pgrep -d $'\n' -P "$(
    IFS=,
    echo "${pids[*]}"
  )")
  kill -TERM "${pids[@]}" "${children[@]}" 2>/dev/null
  kill -CONT "${pids[@]}" 2>/dev/null
  wait
}
trap 'stop_cases; rm -rf "$tmp"' EXIT
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

# check_case NAME: runs case NAME and prints its verdict ("ok   NAME" or its
# failures); returns 1 when it failed.
check_case() {
  local name=$1 work=$tmp/$1 expected=$golden/expected/$1.jsonl ok=1 renormalized
  mkdir "$work"
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
  rm -rf "$work"
  ((ok)) && echo "ok   $name"
}

# Each case runs in the background (at most $jobs at once) with its verdict in
# $tmp/NAME.out and its status in $tmp/NAME.status; verdicts are printed in
# case order as soon as every earlier case has finished.
declare -A seen=()
cases=()
while read -r name; do
  cases+=("$name")
done < <(golden_cases "$golden")
printed=0
print_finished() {
  local name
  while ((printed < ${#cases[@]})); do
    name=${cases[printed]}
    [[ -f $tmp/$name.status ]] || return 0
    cat "$tmp/$name.out"
    if [[ $(cat "$tmp/$name.status") == 0 ]]; then
      passed=$((passed + 1))
    else
      failed=$((failed + 1))
    fi
    printed=$((printed + 1))
  done
}
for name in "${cases[@]}"; do
  seen[$name]=1
  while (($(jobs -pr | wc -l) >= jobs)); do
    wait -n
    print_finished
  done
  (
    check_case "$name" >"$tmp/$name.out" 2>&1
    echo $? >"$tmp/$name.status.part"
    mv "$tmp/$name.status.part" "$tmp/$name.status"
  ) &
done
wait
print_finished

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
