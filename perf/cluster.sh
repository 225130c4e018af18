#!/usr/bin/env bash
# cluster.sh - pipeline-parallel inference across 1, 2 and 3 network-namespace hosts (TCP) on
# this machine: prefill and decode tokens/s, activation and logits bytes per token per link, the
# share of prefill transfer time hidden behind the next chunk's compute, and each host's peak
# resident memory (the weights are mmapped: a stage touches only its layers' pages). Every host
# runs 1 compute thread. Prints a table and, last:
#   RESULT pp2_ratio=… tp2_ratio=… overlap=…
# pp2_ratio: 2-host pipeline / 1-host decode tok/s (best of the runs); tp2_ratio: 2-host tensor
# parallel / 1-host; overlap: 2-host pipeline prefill share.
#
#   perf/cluster.sh [--quick] [--build DIR] [--model GGUF]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${TFAB_BUILD:-$here/../build}
model=$here/../models/tfab-tiny-f16.gguf
quick=0
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) quick=1; shift ;;
        --build) build=$2; shift 2 ;;
        --model) model=$2; shift 2 ;;
        *) echo "usage: $0 [--quick] [--build DIR] [--model GGUF]" >&2; exit 2 ;;
    esac
done
T=$build/tfab
[ -x "$T" ] || { echo "cluster.sh: $T not built" >&2; exit 2; }
ns=$here/../tests/net/netns.sh
if [ $quick = 1 ]; then n_gen=32; reps=1; words=10; else n_gen=128; reps=3; words=16; fi
# prompt ids, not text: without the tokenizer there is no end-of-text stop, every run decodes
# exactly n_gen tokens
ids=$(seq -s, 1 $((words * 6)))
work=$(mktemp -d /tmp/tfab-perf-cluster.XXXXXX)
trap 'rm -rf "$work"' EXIT
timer=""
[ -x /usr/bin/time ] && timer="/usr/bin/time -f maxrss_kb=%M"

declare -A dec pre bpt lbpt ovl rss
for run in 1 2 3 tp2; do
    n=${run#tp}
    cf=$work/c$run.txt
    { echo "token perf"; echo "chunk 16"; [ "$run" = tp2 ] && echo "tp 2"; echo "coordinator 10.98.0.1:7700"
      for ((i = 1; i < n; i++)); do echo "node 10.98.0.$((i + 1)):7700"; done; } > "$cf"
    best=0
    for ((r = 0; r < reps; r++)); do
        out=$(bash "$ns" --hosts "$n" --timeout 300 -- \
            "TFAB_RANK=\$TFAB_NET_HOST TFAB_SIZE=$n $timer $T run --cluster $cf --model $model --temp 0 -n $n_gen --threads 1 --prompt-ids $ids >/dev/null") ||
            { echo "$out"; echo "cluster.sh: the $run run failed" >&2; exit 1; }
        d=$(grep -o 'decode [0-9]* tokens in [0-9.]* ms ([0-9.]* tok/s)' <<<"$out" | grep -o '([0-9.]*' | tr -d '(')
        if awk -v a="$d" -v b="$best" 'BEGIN {exit !(a > b)}'; then
            best=$d
            pre[$run]=$(grep -o 'prefill [0-9]* tokens in [0-9.]* ms ([0-9.]* tok/s)' <<<"$out" | grep -o '([0-9.]*' | tr -d '(')
            bpt[$run]=$(grep -o 'activation bytes ([0-9]* per token)' <<<"$out" | grep -o '[0-9]*' | head -1)
            lb=$(grep -o 'received [0-9]* logits bytes' <<<"$out" | grep -o '[0-9]*' | head -1)
            lbpt[$run]=$(( ${lb:-0} / (n_gen) ))
            ovl[$run]=$( (grep -o '(overlap [0-9.]*)' <<<"$out" || true) | grep -o '[0-9.]*' | head -1 || true)
            rss[$run]=$( (grep -o 'maxrss_kb=[0-9]*' <<<"$out" || true) | cut -d= -f2 | awk '{printf "%s%.0f", (NR > 1 ? "/" : ""), $1 / 1024}')
        fi
    done
    dec[$run]=$best
done
model_mb=$(( $(stat -c %s "$model") >> 20 ))
echo "model $(basename "$model") (${model_mb} MiB), $n_gen generated tokens after a $((words * 6))-token prompt, chunk 16, 1 thread per host, TCP between netns hosts"
printf '%-6s %12s %12s %16s %16s %9s %20s\n' hosts "prefill t/s" "decode t/s" "act B/tok/link" "logits B/tok" overlap "peak RSS MiB/host"
# act B/tok/link: bytes the coordinator sent to the first node / tokens evaluated (prefill and
# decode together; every stage link carries the same); logits B/tok: last node -> coordinator
for run in 1 2 3 tp2; do
    printf '%-6s %12s %12s %16s %16s %9s %20s\n' "$run" "${pre[$run]}" "${dec[$run]}" \
        "${bpt[$run]:-0}" "${lbpt[$run]:-0}" "${ovl[$run]:-na}" "${rss[$run]:-na}"
done
echo "(tp2: tensor parallel over 2 hosts; its act B/tok is the token ids sent to the node, the"
echo " per-layer allgathers run on the ring and are not counted there)"
pp2=$(awk -v a="${dec[2]}" -v b="${dec[1]}" 'BEGIN {printf "%.3f", a / b}')
tp2=$(awk -v a="${dec[tp2]}" -v b="${dec[1]}" 'BEGIN {printf "%.3f", a / b}')
echo "RESULT pp2_ratio=$pp2 tp2_ratio=$tp2 overlap=${ovl[2]:-na}"
