#!/usr/bin/env bash
# t_bench_decode.sh - decode speed smoke: f16 and q8_0 random-weight llama models (2048 embd,
# 4 layers, 32000 vocab, tied; ~490 MB f16, ~260 MB q8_0); prints GB/s of weights streamed per
# token vs a plain memory read. Fails only if decode does not run. TFAB_BENCH_THREADS (default 2).
set -euo pipefail
py=
for p in /usr/bin/python3 python3; do
    if "$p" -c 'import numpy' 2>/dev/null; then py=$p; break; fi
done
[ -n "$py" ] || { echo "FAIL: no python3 with numpy" >&2; exit 1; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
for t in ${TFAB_BENCH_TYPES:-f16 q8_0}; do
    "$py" "$(dirname "$0")/make_bench_model.py" "$dir/bench_$t.gguf" "$t"
    "${TFAB_BUILD:?}/tests/bench_decode" "$dir/bench_$t.gguf" "${TFAB_BENCH_THREADS:-2}" 8
    rm -f "$dir/bench_$t.gguf"
done
