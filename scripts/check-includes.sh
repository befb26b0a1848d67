#!/usr/bin/env bash
# The include rules between the folders (docs/ARCHITECTURE.md), checked over
# the #include lines of every C++ file of ours. Prints each violation as
# file:line: rule and exits non-zero if there is any.
#   scripts/check-includes.sh
#
# The rules:
#   - nothing in common/ includes agent/ (common/ is the library without
#     threads or network I/O that the agent is built on, never the reverse);
#   - common/decode/ and common/normalize/ never include common/buffer/ (the
#     rules are pure functions; the buffer applies them, not the other way);
#   - common/model/ includes only common/model/ and common/util/ (the event
#     model is the bottom layer everything else shares);
#   - agent/source/ (MQTT in) never includes agent/uplink/ (HTTP out): the two
#     ends of the pipeline meet only through the buffer;
#   - quoted includes in common/ and agent/ name the file from the top of the
#     tree ("common/decode/json.hpp", not "json.hpp"), so the rules above see
#     every include of ours;
#   - no file includes a .cpp file.
# Angle-bracket includes of system and third-party headers are not restricted.
set -euo pipefail
cd "$(dirname "$0")/.."

# Tracked files and new ones not yet added (not ignored ones such as build
# directories, nor ones deleted but not yet committed).
files=()
while read -r file; do
  if [ -f "$file" ]; then files+=("$file"); fi
done < <(git ls-files --cached --others --exclude-standard -- \
  '*.cpp' '*.hpp' '*.h' '*.cc' '*.hh' '*.ipp' | sort -u)
[ ${#files[@]} -gt 0 ] || exit 0

# grep prints file:line:text; awk splits out the included name and applies the
# rules. The delimiters say whether it is "ours" or <system>.
# (grep exits 1 when no file has an #include: that is not an error.)
{ grep -HnE '^[[:space:]]*#[[:space:]]*include[[:space:]]*[<"][^>"]+[>"]' -- "${files[@]}" ||
  [ $? -eq 1 ]; } |
  awk '
    {
      # file:line:text (file names of ours have no colon)
      first = index($0, ":")
      file = substr($0, 1, first - 1)
      rest = substr($0, first + 1)
      second = index(rest, ":")
      line = substr(rest, 1, second - 1)
      text = substr(rest, second + 1)
      match(text, /[<"][^>"]+[>"]/)
      token = substr(text, RSTART, RLENGTH)
      quoted = substr(token, 1, 1) == "\""
      name = substr(token, 2, length(token) - 2)
      where = file ":" line ": "

      if (name ~ /\.(cpp|cc|cxx)$/)
        report(where "includes a source file (" name "); include its header")
      if (file ~ /^common\// && name ~ /^agent\//)
        report(where "common/ must not include agent/ (" name ")")
      if (file ~ /^common\/(decode|normalize)\// && name ~ /^common\/buffer\//)
        report(where "common/decode/ and common/normalize/ must not include common/buffer/ (" name ")")
      if (file ~ /^common\/model\// && name ~ /^(common|agent)\// && name !~ /^common\/(model|util)\//)
        report(where "common/model/ may include only common/model/ and common/util/ (" name ")")
      if (file ~ /^agent\/source\// && name ~ /^agent\/uplink\//)
        report(where "agent/source/ must not include agent/uplink/ (" name ")")
      if (quoted && file ~ /^(common|agent)\// && name !~ /^(common|agent)\//)
        report(where "name the header from the top of the tree, e.g. \"common/...\" (" name ")")
    }
    function report(message) {
      print message
      violations++
    }
    END {
      if (violations > 0) {
        printf "check-includes: %d violation(s)\n", violations > "/dev/stderr"
        exit 1
      }
    }
  '
