#!/usr/bin/env bash
# compute.sh - tfab's forward pass against llama.cpp (llama-bench) on the same GGUF files with
# the same thread count, next to a STREAM-style read of memory (the decode roofline). Models:
# random-weight llama files (tests/model/make_bench_model.py: 2048 embd, 5632 ff, 16/4 heads,
# 32000-token vocabulary copied from llama.cpp's ggml-vocab-llama-spm.gguf so llama.cpp loads
# them), in f16 and q8_0, several hundred MB so decode is memory-bound.
#
# Prints a table per weight type and, last:
#   RESULT decode_ratio=… prefill_ratio=… roofline=…
# decode_ratio  = min over the types of tfab decode tok/s / llama.cpp's (tg)
# prefill_ratio = min over the types of tfab prefill tok/s / llama.cpp's (pp)
# roofline      = min over the types of tfab's decode weight bytes/s / the measured read GB/s
# (the minimum: every type has to meet a target for the result to).
#
#   perf/compute.sh [--quick] [--build DIR] [--threads N] [--keep DIR]
# --quick: 2 layers instead of 4, fewer repetitions (the ctest smoke run). llama.cpp comes from
# tools/llama_cpp.sh (built once, cached in $TFAB_LLAMA_CACHE or BUILD/llama-cache).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/.." && pwd)
build=${TFAB_BUILD:-$src/build}
quick=0
threads=2
keep=
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) quick=1; shift ;;
        --build) build=$2; shift 2 ;;
        --threads) threads=$2; shift 2 ;;
        --keep) keep=$2; shift 2 ;;
        *) echo "usage: $0 [--quick] [--build DIR] [--threads N] [--keep DIR]" >&2; exit 2 ;;
    esac
done
die() { echo "compute.sh: $*" >&2; exit 1; }
bench=$build/tests/bench_decode
[ -x "$bench" ] || die "$bench not built"
py=
for p in /usr/bin/python3 python3; do
    if "$p" -c 'import numpy' 2>/dev/null; then py=$p; break; fi
done
[ -n "$py" ] || die "no python3 with numpy"
cache=${TFAB_LLAMA_CACHE:-$build/llama-cache}
bin=$("$src/tools/llama_cpp.sh" build "$cache" | tail -n 1) || die "no llama.cpp build (tools/llama_cpp.sh above says why)"
[ -x "$bin/llama-bench" ] || die "$bin/llama-bench missing"
lsrc=$("$src/tools/llama_src.sh" "$cache" | tail -n 1) || die "no llama.cpp source tree"
vocab=$lsrc/models/ggml-vocab-llama-spm.gguf
[ -f "$vocab" ] || die "$vocab missing"

if [ -n "$keep" ]; then dir=$keep; mkdir -p "$dir"; else
    dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT; fi
if [ $quick = 1 ]; then layers=2; steps=8; reps=2; gen=16; else layers=4; steps=32; reps=5; gen=32; fi
ptok=64
types="f16 q8_0"
models=
for t in $types; do
    f=$dir/bench-$t-L$layers.gguf
    [ -s "$f" ] || "$py" "$src/tests/model/make_bench_model.py" "$f" "$t" "$layers" --vocab "$vocab"
    models=${models:+$models,}$f
done

# Each figure is the best of $reps rounds; a round runs bench_decode on every type and then
# llama-bench (one repetition) on all of them, so both engines sample the same stretches of time:
# on a shared machine the best round is the one least disturbed by other work, for both alike.
declare -A tf_dec tf_gbs tf_pre tf_bw ll_dec ll_pre
max() { awk -v a="$1" -v b="$2" 'BEGIN{print (a == "" || b + 0 > a + 0) ? b : a}'; }
for r in $(seq "$reps"); do
    for t in $types; do
        out=$("$bench" "$dir/bench-$t-L$layers.gguf" "$threads" "$steps" "$ptok") || { echo "$out"; die "bench_decode failed on $t"; }
        echo "$out" | sed 's/^/  tfab: /'
        line=$(grep '^BENCH ' <<<"$out")
        get() { grep -o "\b$1=[^ ]*" <<<"$line" | cut -d= -f2; }
        tf_dec[$t]=$(max "${tf_dec[$t]:-}" "$(get decode_tps)")
        tf_gbs[$t]=$(max "${tf_gbs[$t]:-}" "$(get decode_gbs)")
        tf_pre[$t]=$(max "${tf_pre[$t]:-}" "$(get prefill_tps)")
        tf_bw[$t]=$(max "${tf_bw[$t]:-}" "$(get read_gbs)")
    done
    # llama-bench: pp = prefill of ptok tokens, tg = decode of gen tokens, same thread count
    lout=$("$bin/llama-bench" -m "$models" -t "$threads" -p "$ptok" -n "$gen" -r 1 -o jsonl 2>"$dir/llama-bench.err") ||
        { cat "$dir/llama-bench.err" >&2; die "llama-bench failed"; }
    while read -r path np ng ts; do
        t=$(basename "$path" | sed 's/^bench-\(.*\)-L.*/\1/')
        echo "  llama-bench: $t pp$np tg$ng $ts tok/s"
        if [ "$np" -gt 0 ]; then ll_pre[$t]=$(max "${ll_pre[$t]:-}" "$ts"); else ll_dec[$t]=$(max "${ll_dec[$t]:-}" "$ts"); fi
    done < <("$py" -c '
import json, sys
for l in sys.stdin:
    l = l.strip()
    if l.startswith("{"):
        d = json.loads(l)
        print(d["model_filename"], d["n_prompt"], d["n_gen"], max(d["samples_ts"]))' <<<"$lout")
done

cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
echo
echo "CPU: $cpu, $(nproc) cores online; $threads threads each; $layers layers, 2048 embd, 32000 vocab"
echo "prefill = $ptok tokens at position 0 (tfab: without logits; llama.cpp: the last token's);"
echo "decode = $steps (tfab) / $gen (llama.cpp) tokens; best of $reps interleaved rounds each"
printf '%-6s | %-9s | %10s | %10s | %8s | %8s | %10s\n' type engine "decode t/s" "prefill t/s" "GB/s" "% of BW" "read GB/s"
printf -- '-------+-----------+------------+-------------+----------+----------+-----------\n'
dr=; pr=; rf=
for t in $types; do
    [ -n "${ll_dec[$t]:-}" ] && [ -n "${ll_pre[$t]:-}" ] || die "llama-bench printed no result for $t"
    lgbs=$(awk -v d="${ll_dec[$t]}" -v g="${tf_gbs[$t]}" -v td="${tf_dec[$t]}" 'BEGIN{printf "%.1f", g / td * d}')
    printf '%-6s | %-9s | %10.1f | %11.1f | %8.1f | %7.0f%% | %10.1f\n' "$t" tfab "${tf_dec[$t]}" "${tf_pre[$t]}" \
        "${tf_gbs[$t]}" "$(awk -v a="${tf_gbs[$t]}" -v b="${tf_bw[$t]}" 'BEGIN{print 100 * a / b}')" "${tf_bw[$t]}"
    printf '%-6s | %-9s | %10.1f | %11.1f | %8.1f | %7.0f%% | %10s\n' "$t" llama.cpp "${ll_dec[$t]}" "${ll_pre[$t]}" \
        "$lgbs" "$(awk -v a="$lgbs" -v b="${tf_bw[$t]}" 'BEGIN{print 100 * a / b}')" ""
    d=$(awk -v a="${tf_dec[$t]}" -v b="${ll_dec[$t]}" 'BEGIN{printf "%.3f", a / b}')
    p=$(awk -v a="${tf_pre[$t]}" -v b="${ll_pre[$t]}" 'BEGIN{printf "%.3f", a / b}')
    r=$(awk -v a="${tf_gbs[$t]}" -v b="${tf_bw[$t]}" 'BEGIN{printf "%.3f", a / b}')
    printf '%-6s | %-9s | %9sx | %10sx | %8s | %7s\n' "$t" "tfab/ll" "$d" "$p" "" "roof $r"
    min() { awk -v a="$1" -v b="$2" 'BEGIN{print (a == "" || b + 0 < a + 0) ? b : a}'; }
    dr=$(min "$dr" "$d"); pr=$(min "$pr" "$p"); rf=$(min "$rf" "$r")
done
echo "(GB/s: weight bytes read per decoded token x tok/s; llama.cpp's from the same bytes per token)"
echo "RESULT decode_ratio=$dr prefill_ratio=$pr roofline=$rf"
