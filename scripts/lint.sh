#!/usr/bin/env bash
# clang-tidy over the project's own C++ (the check set and why: .clang-tidy),
# then the include rules between the folders (scripts/check-includes.sh).
# Exits non-zero on any finding.
#   scripts/lint.sh                  every .cpp file in common/ and agent/
#   scripts/lint.sh FILE...          only these .cpp files, named from the top of the
#                                    tree (and the headers of ours they include)
#   METER_LINT_BUILD_DIR=DIR         where to configure (default: build-lint)
#   METER_LINT_JOBS=N                clang-tidy processes at once (default: nproc)
#
# Only the product sources are linted, not tests/: the tests are Catch2 macro
# expansions that most checks misread, and they compile with a precompiled
# Catch2 header whose flags clang-tidy cannot use. Headers of ours are checked
# through the .cpp files that include them, each finding printed once.
set -euo pipefail
source_dir=$(cd "$(dirname "$0")/.." && pwd)
build_dir=${METER_LINT_BUILD_DIR:-$source_dir/build-lint}
jobs=${METER_LINT_JOBS:-$(nproc)}
cd "$source_dir"

clang_tidy=$(command -v clang-tidy-14 || command -v clang-tidy || true)
if [ -z "$clang_tidy" ]; then
  echo "lint: clang-tidy not found (Debian: apt-get install clang-tidy)" >&2
  exit 1
fi

# clang-tidy needs only compile_commands.json, so this configures and never
# builds. With clang++ as the compiler the recorded flags are ones clang-tidy
# (a clang) understands; without the tests there is no precompiled header.
# Debug, so that assert() bodies are compiled and checked too. Configuring
# again each time is ~2 s and picks up new and removed files.
output=$(mktemp -d)
trap 'rm -rf "$output"' EXIT

compiler_args=()
if clang_compiler=$(command -v clang++-14 || command -v clang++); then
  compiler_args=(-DCMAKE_CXX_COMPILER="$clang_compiler")
fi
if ! cmake -S "$source_dir" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DMETER_TESTS=OFF \
  -DMETER_WERROR=OFF -DMETER_SANITIZE=OFF "${compiler_args[@]}" >"$output/configure" 2>&1; then
  cat "$output/configure" >&2
  echo "lint: configuring $build_dir failed" >&2
  exit 1
fi

if [ $# -gt 0 ]; then
  files=("$@")
else
  mapfile -t files < <(git ls-files --cached --others --exclude-standard -- 'common/*.cpp' 'agent/*.cpp' | sort -u)
fi

# One clang-tidy per file, N at once; each writes its own log so that
# parallel output does not interleave. Our headers only (the config's filter,
# anchored here at this checkout), never system or third-party ones.
status=0
# shellcheck disable=SC2016 # $1... are the inner shell's arguments
printf '%s\n' "${files[@]}" |
  xargs -P "$jobs" -I{} sh -c '
    log="$1/$(printf %s "$2" | tr / _).log"
    "$3" -p "$4" --quiet --header-filter="^$5/(common|agent)/" "$2" >"$log" 2>&1 ||
      echo "$2" >>"$1/failed"
  ' _ "$output" {} "$clang_tidy" "$build_dir" "$source_dir" || status=1

# A header's finding is reported by every file that includes it: print each
# once, with the paths relative to the checkout.
# Findings without a location (on code the compiler invents) count too.
findings=$(cat "$output"/*.cpp.log 2>/dev/null |
  grep -E '^([^ ]+:[0-9]+:[0-9]+: )?(warning|error): ' | sed "s|^$source_dir/||" | sort -u || true)
if [ -n "$findings" ]; then
  echo "$findings"
  echo "lint: clang-tidy: $(echo "$findings" | wc -l) finding(s)" >&2
  status=1
elif [ -f "$output/failed" ]; then
  # clang-tidy failed without a finding of its own (a crash, a missing file).
  while read -r file; do
    cat "$output/$(printf %s "$file" | tr / _).log" >&2
  done <"$output/failed"
  echo "lint: clang-tidy failed on: $(tr '\n' ' ' <"$output/failed")" >&2
  status=1
fi

"$source_dir/scripts/check-includes.sh" || status=1
if [ "$status" -eq 0 ]; then
  echo "lint: clean (${#files[@]} files, clang-tidy and include rules)"
fi
exit "$status"
