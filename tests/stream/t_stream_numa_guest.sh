#!/usr/bin/env bash
# t_stream_numa_guest.sh - soft-RoCE bed test: in a guest with two emulated NUMA nodes, tfab
# finds both, and each node's stream runs its workers only on that node's CPU with its scratch
# on that node (test_stream_numa --nodes 2); and the whole stream suite passes there (test_stream
# pins and places per node, so it covers both nodes too).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${TFAB_BUILD:?}/tests/test_stream_numa
suite=$TFAB_BUILD/tests/test_stream
bed=$here/../softroce/bed.sh
fail() { echo "t_stream_numa_guest: FAIL: $*" >&2; exit 1; }
[ -x "$bin" ] && [ -x "$suite" ] || fail "$bin or $suite not built"

out=$(bash "$bed" --hosts 1 --numa --timeout 240 -- "set -e; numactl -H; $bin --nodes 2; $suite") ||
    { echo "$out"; fail "bed.sh or test_stream_numa failed"; }
echo "$out"
grep -q '^available: 2 nodes (0-1)$' <<<"$out" || fail "the guest does not have 2 NUMA nodes"
grep -q '^topology: 2 nodes with CPUs, numa=1$' <<<"$out" || fail "tfab did not find 2 nodes"
for n in 0 1; do
    cpus=$(sed -n "s/^node $n cpus: *//p" <<<"$out" | tr ' ' ',')
    [ -n "$cpus" ] || fail "numactl lists no CPU for node $n"
    grep -Eq "^node $n cpus $cpus mem [0-9]+ MiB\$" <<<"$out" ||
        fail "tfab's CPUs of node $n differ from numactl's ($cpus)"
    grep -Eq "^node $n: [0-9]+ workers ran only on its CPUs \($cpus\); scratch [0-9]+ KiB on node $n\$" \
        <<<"$out" || fail "node $n: workers or scratch not on the node"
done
grep -q 'PASSED.*\] 1 test' <<<"$out" || fail "test_stream_numa did not pass"
grep -q 'PASSED.*\] 14 test' <<<"$out" || fail "test_stream did not pass in the guest"
echo "t_stream_numa_guest: PASS"
