#!/usr/bin/env bash
# t_start_errors.sh - a cluster that cannot start says why, naming the node or the file line:
# a node whose model differs from the coordinator's, a node whose model file is missing, layer
# ranges that do not cover the model, a launcher whose size differs from the cluster file, a
# rank beyond the file. Coordinator and node run on loopback (different ports per case).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
work=$(mktemp -d /tmp/tfab-start.XXXXXX)
pids=()
cleanup() {
    local rc=$?
    for p in "${pids[@]:-}"; do [ -z "$p" ] || kill "$p" 2>/dev/null || true; done
    rm -rf "$work"
    exit $rc
}
trap cleanup EXIT
"$py" - "$work/other.gguf" "$here/../model" <<'PY'
import sys
sys.path.insert(0, sys.argv[2])
import ref_llama as R
cfg = R.Config("llama", n_vocab=256, n_embd=128, n_layer=6, n_head=8, n_head_kv=2, n_ff=256)
R.write_gguf(cfg, R.make_weights(cfg, seed=7), sys.argv[1])
PY
port=$((17800 + RANDOM % 100 * 2))

start_case() { # start_case NAME WANT NODE_ARGS CLUSTER_TEXT
    local name=$1 want=$2 node_args=$3 out
    printf '%s\n' "$4" > "$work/c.txt"
    "$T" node --cluster "$work/c.txt" --rank 1 --threads 1 $node_args > "$work/node.log" 2>&1 &
    pids+=($!)
    out=$("$T" run --cluster "$work/c.txt" --model "$TINY" --temp 0 -n 2 --threads 1 "Once" 2>&1) &&
        { echo "$out"; fail "$name: the run succeeded"; }
    wait "${pids[-1]}" || true
    grep -Fq "$want" <<<"$out" || { echo "$out"; cat "$work/node.log"; fail "$name: no '$want'"; }
    echo "$name: $(grep -F "$want" <<<"$out" | head -1 | sed 's/^[0-9:.]* tfab error //')"
    port=$((port + 2))
}
c0() { printf 'token t\njoin_s 20\ncoordinator 127.0.0.1:%s\nnode 127.0.0.1:%s\n' $port $((port + 1)); }
start_case "node with another model" \
    "node 1 (127.0.0.1:$((port + 1))) failed to start its stage [3, 6): $work/other.gguf on node 127.0.0.1:$((port + 1)) has 6 layers, width 128, vocabulary 256" \
    "--model $work/other.gguf" "$(c0)"
start_case "node without the model file" \
    "node 1 (127.0.0.1:$((port + 1))) failed to start its stage [3, 6): cannot load layers [3, 6) of $work/none.gguf" \
    "--model $work/none.gguf" "$(c0)"
start_case "layers that do not cover the model" \
    "placement: $work/c.txt:4: the last stage ends at layer 4 but $TINY has 6 layers" "" \
    "$(printf 'token t\njoin_s 20\ncoordinator 127.0.0.1:%s layers 0-2\nnode 127.0.0.1:%s layers 2-4\n' $port $((port + 1)))"

printf 'coordinator 127.0.0.1:1\nnode 127.0.0.1:2\n' > "$work/two.txt"
out=$(SLURM_PROCID=0 SLURM_NTASKS=3 "$T" run --cluster "$work/two.txt" "x" 2>&1) && fail "launcher size accepted"
grep -q "the launcher runs 3 ranks but $work/two.txt lists 2" <<<"$out" || { echo "$out"; fail "launcher size message"; }
echo "launcher size: $out"
out=$("$T" node --cluster "$work/two.txt" --rank 5 2>&1) && fail "rank beyond the file accepted"
grep -q "rank 5 (--rank) but $work/two.txt lists 2 ranks" <<<"$out" || { echo "$out"; fail "rank message"; }
echo "rank beyond the file: $out"
echo "t_start_errors: PASS"
