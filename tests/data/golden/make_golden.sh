#!/usr/bin/env bash
# Writes expected/ from inputs/ with the given meter-agent binary:
#   tests/data/golden/make_golden.sh AGENT_BINARY
# For each case: expected/NAME.jsonl, the export after its imports, and
# expected/NAME.renormalized.jsonl only when `meter-agent renormalize` changes
# that export. Only for the reference binary (README.md says which commit).
set -euo pipefail
if [[ $# -ne 1 ]]; then
  echo "usage: $0 AGENT_BINARY" >&2
  exit 2
fi
golden=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=golden_lib.sh
source "$golden/golden_lib.sh"
agent=$(realpath "$1")
[[ -x $agent ]] || { echo "$0: $1 is not an executable" >&2; exit 2; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/meter-golden.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

rm -rf "$golden/expected"
mkdir "$golden/expected"
cases=0
measurements=0
while read -r name; do
  mkdir "$tmp/$name"
  if ! golden_run "$agent" "$golden" "$name" "$tmp/$name"; then
    cat "$tmp/$name/log" >&2
    echo "$0: case $name failed" >&2
    exit 1
  fi
  cp "$tmp/$name/export.jsonl" "$golden/expected/$name.jsonl"
  note=""
  if ! cmp -s "$tmp/$name/export.jsonl" "$tmp/$name/renormalized.jsonl"; then
    cp "$tmp/$name/renormalized.jsonl" "$golden/expected/$name.renormalized.jsonl"
    note=" (renormalize changes it: $name.renormalized.jsonl)"
  fi
  lines=$(wc -l <"$tmp/$name/export.jsonl")
  echo "$name: $lines measurements$note"
  cases=$((cases + 1))
  measurements=$((measurements + lines))
done < <(golden_cases "$golden")
echo "$cases cases, $measurements measurements written to $golden/expected"
