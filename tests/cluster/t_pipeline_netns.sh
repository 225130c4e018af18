#!/usr/bin/env bash
# t_pipeline_netns.sh - pipeline parallel across 2 and 3 namespaced hosts over TCP, for the
# built-in model and a random-weight q8_0 model: prefill in several chunks, greedy decode; the
# logits of every step are bit-identical to one host's `tfab logits`, and the greedy tokens equal
# a one-host run's. The 3-host runs take their ranks from Slurm variables, the 2-host runs from
# Open MPI's, so every host runs the same `tfab run --cluster` command; one 2-host run uses
# explicit `tfab node` commands instead.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
work=$(mktemp -d /tmp/tfab-pp.XXXXXX)
trap 'rm -rf "$work"' EXIT
make_random "$work/rand.gguf"

cluster() { # cluster N CHUNK > file
    echo "# $1 hosts"
    echo "token pp-test-token"
    echo "chunk $2"
    echo "heartbeat_ms 100"
    echo "dead_ms 3000"
    echo "join_s 30"
    local mem=(${MEMS:-})   # optional memory per rank: placement in proportion to it
    echo "coordinator 10.98.0.1:7700${mem[0]:+ mem ${mem[0]}}"
    for ((i = 1; i < $1; i++)); do echo "node 10.98.0.$((i + 1)):7700${mem[i]:+ mem ${mem[i]}}"; done
}
printf 'coordinator 127.0.0.1:7799\n' > "$work/one.txt"

run_case() { # run_case NAME MODEL N_HOSTS LAUNCH PROMPT_ARGS...
    local name=$1 model=$2 n=$3 launch=$4
    shift 4
    local cf=$work/c$n.txt args out ids ids1 np
    cluster "$n" 3 > "$cf"
    args="--cluster $cf --model $model --temp 0 -n 20 --threads 1"
    local q=() a
    for a in "$@"; do q+=("$(printf %q "$a")"); done
    case $launch in
        slurm) out=$(bash "$NS" --hosts "$n" --timeout 90 -- \
            "SLURM_PROCID=\$TFAB_NET_HOST SLURM_NTASKS=$n $T run $args --print-ids --dump-logits $work/d.bin ${q[*]}") ;;
        mpi) out=$(bash "$NS" --hosts "$n" --timeout 90 -- \
            "OMPI_COMM_WORLD_RANK=\$TFAB_NET_HOST OMPI_COMM_WORLD_SIZE=$n $T run $args --print-ids --dump-logits $work/d.bin ${q[*]}") ;;
        node) cmds=("$T run $args --print-ids --dump-logits $work/d.bin ${q[*]}")
              for ((i = 1; i < n; i++)); do
                  cmds+=("$T node --coordinator 10.98.0.1:7700 --listen 10.98.0.$((i + 1)):7700 --token pp-test-token --threads 1")
              done
              out=$(bash "$NS" --hosts "$n" --timeout 90 -- "${cmds[@]}") ;;
    esac || { echo "$out"; fail "$name: the cluster run failed"; }
    ids=$(grep -o 'tfab run: ids [0-9,]*' <<<"$out" | awk '{print $4}')
    [ -n "$ids" ] || { echo "$out"; fail "$name: no ids printed"; }
    grep -q "tfab run: cluster .*, $n ranks" <<<"$out" || { echo "$out"; fail "$name: not $n ranks"; }
    if [ -n "${MEMS:-}" ]; then
        grep -q "stages 0:\[0,1) -> 1:\[1,3) -> 2:\[3,4)" <<<"$out" || { echo "$out"; fail "$name: placement"; }
    fi
    # (a node started before the coordinator listens retries; the fabric logs those refusals)
    if grep 'tfab error' <<<"$out" | grep -v 'Connection refused'; then
        echo "$out"; fail "$name: errors logged"
    fi
    # one host: the same command with a 1-rank cluster file
    out1=$("$T" run --cluster "$work/one.txt" --model "$model" --temp 0 -n 20 --threads 1 --print-ids "$@" 2>&1) ||
        { echo "$out1"; fail "$name: one-host run failed"; }
    ids1=$(grep -o 'tfab run: ids [0-9,]*' <<<"$out1" | awk '{print $4}')
    [ "$ids" = "$ids1" ] || fail "$name: greedy ids differ from one host:\n  $ids\n  $ids1"
    np=$(grep -o 'prefill [0-9]* tokens' <<<"$out" | awk '{print $2}')
    echo "$name: $n hosts ($launch), prompt $np tokens in chunks of 3, ids equal one host"
    check_logits "$model" "$ids" "$work/d.bin" "$np"
}

run_case "tfab-tiny" "$TINY" 2 mpi "Once upon a time, in a land far away"
run_case "tfab-tiny" "$TINY" 3 slurm "Once upon a time, in a land far away"
run_case "tfab-tiny" "$TINY" 2 node "The little dog"
run_case "random q8_0" "$work/rand.gguf" 2 mpi --prompt-ids 1,200,3,45,67,89,10,111,12,130,14
run_case "random q8_0" "$work/rand.gguf" 3 slurm --prompt-ids 1,200,3,45,67,89,10,111,12,130,14
# placed by memory (1:2:1 of a 4-layer model: the middle rank takes 2 layers)
MEMS="1MiB 2MiB 1MiB" run_case "random q8_0, memory 1:2:1" "$work/rand.gguf" 3 slurm --prompt-ids 5,6,7,8,9
echo "t_pipeline_netns: PASS"
