#!/usr/bin/env bash
# t_ring_netns.sh - ring all-reduce and all-gather across 3 namespaced hosts over TCP (progress
# thread), and across 2 with manual progress: exact sums on every rank, identical results.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
x=${TFAB_BUILD:?}/tests/ring_peer
ns=$here/../net/netns.sh
fail() { echo "t_ring_netns: FAIL: $*" >&2; exit 1; }
for cfg in "3 thread" "2 manual"; do
    read -r n mode <<<"$cfg"
    addrs=$(seq -s, -f "10.98.0.%g:7600" 1 "$n")
    out=$(bash "$ns" --hosts "$n" --timeout 120 -- \
        "$x --rank \$TFAB_NET_HOST --addrs $addrs --progress $mode") || { echo "$out"; fail "$n ranks ($mode) failed"; }
    echo "$out"
    [ "$(grep -c '^rank [0-9]: OK$' <<<"$out")" = "$n" ] || fail "$n ranks: not all finished"
    [ "$(grep -c "^rank [0-9]: allgather $n x 4099 bytes OK\$" <<<"$out")" = "$n" ] || fail "$n ranks: allgather"
    sums=$(grep -o 'allreduce count 1000003 OK sum-checksum [0-9a-f]*' <<<"$out" | awk '{print $NF}' | sort -u)
    [ "$(grep -c '^rank [0-9]: allreduce count 1000003 OK' <<<"$out")" = "$n" ] || fail "$n ranks: allreduce"
    [ "$(wc -l <<<"$sums")" = 1 ] || fail "$n ranks: results differ between ranks: $sums"
done
echo "t_ring_netns: PASS"
