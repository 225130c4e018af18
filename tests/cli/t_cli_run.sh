#!/usr/bin/env bash
# t_cli_run.sh - `tfab run` with the built-in model: the greedy 64-token continuation of "Once
# upon a time" equals the PyTorch float32 reference recorded with the model (which llama.cpp
# also reproduces); seeded sampling is reproducible; speed lines are printed; bad input errors.
set -euo pipefail
tfab=${TFAB_BUILD:?}/tfab
src=${TFAB_SOURCE:?}
fail() { echo "t_cli_run: FAIL: $*" >&2; exit 1; }
want=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["prompt"] + r["greedy_64_text"])' "$src/models/tfab-tiny.ref.json")

out=$("$tfab" run -n 64 --temp 0 "Once upon a time" 2>err.txt)
[ "$out" = "$want" ] || fail "greedy continuation differs from the reference:
  got:  $out
  want: $want"
grep -Eq '^tfab run: prefill 5 tokens in [0-9.]+ ms \([0-9.]+ tok/s\); decode 64 tokens in [0-9.]+ ms \([0-9.]+ tok/s\)$' err.txt ||
    fail "no prefill/decode speed line: $(cat err.txt)"

a=$("$tfab" run -n 40 --seed 7 "The meaning of life is" 2>/dev/null)
b=$("$tfab" run -n 40 --seed 7 "The meaning of life is" 2>/dev/null)
c=$("$tfab" run -n 40 --seed 8 --temp 1.5 --top-k 0 --top-p 1 --min-p 0 "The meaning of life is" 2>/dev/null)
[ "$a" = "$b" ] || fail "the same seed gave different text"
[ "$a" != "$c" ] || fail "another seed at temperature 1.5 gave the same text"
[[ "$a" == "The meaning of life is"* ]] || fail "the prompt is not echoed first"

set +e
err=$("$tfab" run --model /nonexistent.gguf "hi" 2>&1); rc=$?
[ $rc -eq 1 ] && [[ "$err" == *"/nonexistent.gguf"* ]] || fail "missing model: rc=$rc '$err'"
err=$("$tfab" run --temp hot "hi" 2>&1); rc=$?
[ $rc -eq 2 ] && [[ "$err" == *"--temp needs a number"* ]] || fail "bad --temp: rc=$rc '$err'"
err=$("$tfab" run --chat "hi" 2>&1); rc=$?
[ $rc -eq 1 ] && [[ "$err" == *"has no chat template tfab knows"* ]] || fail "--chat without a template: rc=$rc '$err'"
set -e
rm -f err.txt
echo "t_cli_run: PASS"
