#!/usr/bin/env bash
# serve.sh - tfab serve's start-up, footprint, request overhead and batching throughput with the
# built-in model: time from exec to the first successful /health (the model mapped, not
# pre-faulted), idle RSS (after the latency runs touched every weight) over the model file's size, p50/p99 of a max_tokens=1 completion over
# the Unix socket and over TCP (one keep-alive connection), and aggregate tokens/s with 1, 8 and
# 32 concurrent clients. Prints a table and, last:
#   RESULT startup_ms=… idle_rss_over_model_mb=… uds_p50_ms=… tcp_p50_ms=… batch32_speedup=…
#
#   perf/serve.sh [--quick] [--build DIR] [--model GGUF]
# --model: another model than the built-in one (e.g. a memory-bound one written by
# tests/model/make_bench_model.py --vocab, where batching has weight reads to share)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${TFAB_BUILD:-$here/../build}
quick=0
model=""
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) quick=1; shift ;;
        --build) build=$2; shift 2 ;;
        --model) model=$(realpath "$2"); shift 2 ;;
        *) echo "usage: $0 [--quick] [--build DIR] [--model GGUF]" >&2; exit 2 ;;
    esac
done
tfab=$build/tfab
[ -x "$tfab" ] || { echo "serve.sh: $tfab not built" >&2; exit 2; }
py=/usr/bin/python3
load=$here/serve_load.py
model=${model:-$here/../models/tfab-tiny-f16.gguf}
export TFAB_LOAD_MODEL=$(basename "$model" .gguf)
if [ $quick = 1 ]; then n_lat=200; per_client=2; tokens=32; else n_lat=2000; per_client=4; tokens=64; fi
work=$(mktemp -d /tmp/tfab-serve-perf.XXXXXX)
pid=""
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; rm -rf "$work"' EXIT
port=$($py -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

read -r pid startup < <($py "$load" start "127.0.0.1:$port" "$work/log" \
    "$tfab" --log-level info serve --config "" --listen 127.0.0.1:$port --socket "$work/s.sock" \
    --model "$model" --slots 32 --stream-limit-min 40 --stream-limit-max 50 --stream-limit-initial 40)
[ -n "$startup" ] || { cat "$work/log" >&2; exit 1; }
sleep 0.3
rss_start_kb=$(awk '/^VmRSS:/ {print $2}' /proc/$pid/status)
read -r uds50 uds99 < <($py "$load" latency "unix:$work/s.sock" $n_lat)
read -r tcp50 tcp99 < <($py "$load" latency "127.0.0.1:$port" $n_lat)
# idle after the latency runs: every weight page has been touched once, nothing is running
sleep 0.3
rss_kb=$(awk '/^VmRSS:/ {print $2}' /proc/$pid/status)
model_b=$(stat -c %s "$model")
rss_over=$(awk -v r="$rss_kb" -v m="$model_b" 'BEGIN {printf "%.1f", r / 1024 - m / 1048576}')
declare -A tps
for c in 1 8 32; do
    tps[$c]=$($py "$load" throughput "127.0.0.1:$port" $c $per_client $tokens)
done
rss_busy_kb=$(awk '/^VmRSS:/ {print $2}' /proc/$pid/status)
batched=$(grep -o "[0-9]* slot(s)" "$work/log" | tail -1)
kill -TERM $pid; while kill -0 $pid 2>/dev/null; do sleep 0.05; done; pid=""
speedup=$(awk -v a="${tps[32]}" -v b="${tps[1]}" 'BEGIN {printf "%.2f", a / b}')

printf '%-44s %12s\n' "measure" "value"
printf '%-44s %12s\n' "start to first /health (ms)" "$startup"
printf '%-44s %12s\n' "RSS right after start (MiB), weights unread" "$((rss_start_kb / 1024))"
printf '%-44s %12s\n' "idle RSS (MiB), model file $((model_b >> 20)) MiB" "$((rss_kb / 1024))"
printf '%-44s %12s\n' "idle RSS over the model (MiB)" "$rss_over"
printf '%-44s %12s\n' "RSS after the load (MiB)" "$((rss_busy_kb / 1024))"
printf '%-44s %12s\n' "max_tokens=1 over the Unix socket p50/p99 ms" "$uds50/$uds99"
printf '%-44s %12s\n' "max_tokens=1 over TCP p50/p99 ms" "$tcp50/$tcp99"
for c in 1 8 32; do printf '%-44s %12s\n' "tok/s with $c concurrent streams ($tokens each)" "${tps[$c]}"; done
printf '%-44s %12s\n' "KV slots batched by tfab_model_decode" "$batched"
echo "RESULT startup_ms=$startup idle_rss_over_model_mb=$rss_over uds_p50_ms=$uds50 tcp_p50_ms=$tcp50 batch32_speedup=$speedup"
