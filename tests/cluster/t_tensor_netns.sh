#!/usr/bin/env bash
# t_tensor_netns.sh - tensor parallelism across 2 and 3 namespaced hosts over the fabric's TCP
# ring (tfab_ring_allgather): every rank holds its share of every layer's heads and rows; the
# built-in model (2 KV heads) on 2 hosts, a random q8_0 model with 6 KV heads (n_ff and the
# vocabulary not divisible by 3) on 2 and 3 hosts. Every step's logits bit-identical to one
# host's `tfab logits`, greedy ids equal a one-host run's.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
work=$(mktemp -d /tmp/tfab-tp.XXXXXX)
trap 'rm -rf "$work"' EXIT
make_random "$work/r6.gguf" 256 6
printf 'coordinator 127.0.0.1:7799\n' > "$work/one.txt"

run_tp() { # run_tp NAME MODEL N_HOSTS PROMPT_ARGS...
    local name=$1 model=$2 n=$3
    shift 3
    local cf=$work/tp$n.txt q=() a out ids ids1 np
    { echo "token tp-test"; echo "tp $n"; echo "chunk 4"; echo "coordinator 10.98.0.1:7700"
      for ((i = 1; i < n; i++)); do echo "node 10.98.0.$((i + 1)):7700"; done; } > "$cf"
    for a in "$@"; do q+=("$(printf %q "$a")"); done
    out=$(bash "$NS" --hosts "$n" --timeout 120 -- \
        "TFAB_RANK=\$TFAB_NET_HOST TFAB_SIZE=$n $T run --cluster $cf --model $model --temp 0 -n 16 --threads 1 --print-ids --dump-logits $work/d.bin ${q[*]}") ||
        { echo "$out"; fail "$name: the run failed"; }
    if grep 'tfab error' <<<"$out" | grep -v 'Connection refused'; then echo "$out"; fail "$name: errors logged"; fi
    ids=$(grep -o 'tfab run: ids [0-9,]*' <<<"$out" | awk '{print $4}')
    np=$(grep -o 'prefill [0-9]* tokens' <<<"$out" | awk '{print $2}')
    [ -n "$ids" ] && [ -n "$np" ] || { echo "$out"; fail "$name: no ids"; }
    out1=$("$T" run --cluster "$work/one.txt" --model "$model" --temp 0 -n 16 --threads 1 --print-ids "$@" 2>&1) ||
        { echo "$out1"; fail "$name: one-host run failed"; }
    ids1=$(grep -o 'tfab run: ids [0-9,]*' <<<"$out1" | awk '{print $4}')
    [ "$ids" = "$ids1" ] || fail "$name: greedy ids differ from one host"
    echo "$name: tensor parallel over $n hosts, prompt $np tokens in chunks of 4, ids equal one host"
    check_logits "$model" "$ids" "$work/d.bin" "$np"
}
run_tp "tfab-tiny" "$TINY" 2 "Once upon a time, in a land far away"
run_tp "random q8_0 (6 KV heads)" "$work/r6.gguf" 2 --prompt-ids 3,1,4,1,5,9,2,6,5,3
run_tp "random q8_0 (6 KV heads)" "$work/r6.gguf" 3 --prompt-ids 3,1,4,1,5,9,2,6,5,3
echo "t_tensor_netns: PASS"
