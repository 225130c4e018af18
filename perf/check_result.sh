#!/usr/bin/env bash
# check_result.sh - runs a benchmark and checks that its last line is
# "RESULT key=value ..." with a positive number (or na) for every key named.
#   check_result.sh KEY [KEY...] -- COMMAND [ARGS...]
set -euo pipefail
keys=()
while [ "$1" != "--" ]; do keys+=("$1"); shift; done
shift
out=$("$@") || { echo "$out"; echo "check_result: benchmark exited non-zero" >&2; exit 1; }
echo "$out"
last=$(tail -n 1 <<<"$out")
[[ "$last" == RESULT\ * ]] || { echo "check_result: last line is not RESULT: $last" >&2; exit 1; }
for k in "${keys[@]}"; do
    v=$(grep -o "\b$k=[^ ]*" <<<"$last" | cut -d= -f2)
    [ -n "$v" ] || { echo "check_result: $k missing from: $last" >&2; exit 1; }
    [ "$v" = na ] || awk -v v="$v" 'BEGIN {exit !(v + 0 > 0)}' ||
        { echo "check_result: $k=$v is not a positive number" >&2; exit 1; }
done
