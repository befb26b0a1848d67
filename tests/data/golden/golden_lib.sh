# shellcheck shell=bash
# How a golden case is run: sourced by make_golden.sh and check_golden.sh (not
# run by itself), so both do exactly the same steps. README.md beside it.

# golden_cases GOLDEN_DIR: the case names (inputs/NAME/steps), one a line, in
# C sort order.
golden_cases() {
  local steps
  for steps in "$1"/inputs/*/steps; do
    [[ -f $steps ]] || continue
    steps=${steps%/steps}
    echo "${steps##*/}"
  done | LC_ALL=C sort
}

# golden_run AGENT GOLDEN_DIR NAME WORK: runs case NAME in the empty directory
# WORK with the meter-agent binary AGENT:
#   - WORK/agent.yaml, a copy of GOLDEN_DIR/agent.yaml, so its buffer.path
#     (buffer.db, relative to the config file) is WORK/buffer.db;
#   - `meter-agent import FILE --received-at TS` for each line "FILE TS" of
#     GOLDEN_DIR/inputs/NAME/steps, in order;
#   - `meter-agent export --format jsonl` > WORK/export.jsonl;
#   - `meter-agent renormalize`, then the export again > WORK/renormalized.jsonl.
# What the commands print goes to WORK/log. Returns 1 when a command fails
# (WORK/log says which), 0 otherwise; the exports are then to be compared.
golden_run() {
  local agent=$1 golden=$2 name=$3 work=$4
  local inputs=$golden/inputs/$name config=$work/agent.yaml log=$work/log
  local file received_at
  cp "$golden/agent.yaml" "$config" || return 1
  : >"$log"
  while read -r file received_at || [[ -n $file ]]; do
    [[ -z $file || $file == \#* ]] && continue
    if [[ -z $received_at || ! -f $inputs/$file ]]; then
      echo "$inputs/steps: bad line '$file $received_at'" >>"$log"
      return 1
    fi
    echo "\$ meter-agent import $file --received-at $received_at" >>"$log"
    "$agent" import "$inputs/$file" --config "$config" --received-at "$received_at" \
      >>"$log" 2>&1 || { echo "(failed: exit $?)" >>"$log"; return 1; }
  done <"$inputs/steps"
  echo "\$ meter-agent export --format jsonl" >>"$log"
  "$agent" export --format jsonl --config "$config" >"$work/export.jsonl" 2>>"$log" ||
    { echo "(failed: exit $?)" >>"$log"; return 1; }
  echo "\$ meter-agent renormalize" >>"$log"
  "$agent" renormalize --config "$config" >>"$log" 2>&1 ||
    { echo "(failed: exit $?)" >>"$log"; return 1; }
  echo "\$ meter-agent export --format jsonl" >>"$log"
  "$agent" export --format jsonl --config "$config" >"$work/renormalized.jsonl" 2>>"$log" ||
    { echo "(failed: exit $?)" >>"$log"; return 1; }
}

# golden_expected_renormalized GOLDEN_DIR NAME: the file the export after
# renormalize must equal: expected/NAME.renormalized.jsonl where the baseline's
# renormalize changed the export, else expected/NAME.jsonl.
golden_expected_renormalized() {
  local expected=$1/expected/$2
  if [[ -f $expected.renormalized.jsonl ]]; then
    echo "$expected.renormalized.jsonl"
  else
    echo "$expected.jsonl"
  fi
}
