#!/usr/bin/env bash
# t_pipeline_softroce.sh - the 2-host pipeline over the verbs backend between soft-RoCE guests
# (real rxe queue pairs): the built-in model, prefill in chunks of 3, greedy decode; every step's
# logits bit-identical to one host's `tfab logits`, the greedy ids equal a one-host run's.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
bed=$here/../softroce/bed.sh
work=$(mktemp -d /tmp/tfab-pp-rxe.XXXXXX)
trap 'rm -rf "$work"' EXIT
cat > "$work/c.txt" <<EOC
token rxe-test
backend verbs
chunk 3
join_s 120
coordinator 10.99.0.1:7700
node 10.99.0.2:7700
EOC
args="--cluster $work/c.txt --model $TINY --temp 0 -n 12 --threads 1"
# the guests write to a tmpfs overlay; TFAB_BED_OUT is the run share (kept in $work/run)
out=$(bash "$bed" --hosts 2 --timeout 400 --keep "$work/run" -- \
    "TFAB_RANK=0 TFAB_SIZE=2 $T run $args --print-ids --dump-logits \$TFAB_BED_OUT/d.bin 'Once upon a time, in a land far away' 2> \$TFAB_BED_OUT/err; rc=\$?; cat \$TFAB_BED_OUT/err
     ids=\$(grep -o 'tfab run: ids [0-9,]*' \$TFAB_BED_OUT/err | awk '{print \$4}')
     $T logits --model $TINY --tokens \$ids --out \$TFAB_BED_OUT/ref.bin --threads 1; exit \$rc" \
    "TFAB_RANK=1 TFAB_SIZE=2 $T run $args") || { echo "$out"; fail "the verbs cluster run failed"; }
echo "$out"
grep -q "tfab run: cluster .*, 2 ranks" <<<"$out" || fail "not 2 ranks"
ids=$(grep -o 'tfab run: ids [0-9,]*' <<<"$out" | awk '{print $4}')
np=$(grep -o 'prefill [0-9]* tokens' <<<"$out" | awk '{print $2}')
[ -n "$ids" ] && [ -n "$np" ] || fail "no ids"
printf 'coordinator 127.0.0.1:7799\n' > "$work/one.txt"
out1=$("$T" run --cluster "$work/one.txt" --model "$TINY" --temp 0 -n 12 --threads 1 --print-ids 'Once upon a time, in a land far away' 2>&1)
ids1=$(grep -o 'tfab run: ids [0-9,]*' <<<"$out1" | awk '{print $4}')
[ "$ids" = "$ids1" ] || fail "greedy ids over verbs differ from one host: $ids vs $ids1"
echo "verbs pipeline: ids equal one host"
# the reference logits come from the guest itself: its emulated CPU may select other kernels
# (another summation order) than this host's
check_logits "$TINY" "$ids" "$work/run/host0/d.bin" "$np" "$work/run/host0/ref.bin"
echo "t_pipeline_softroce: PASS"
