#!/usr/bin/env bash
# t_failover_netns.sh - failover without loss between two namespaced hosts joined by two
# networks: the endpoint holds two ranked TCP links (10.98.0.x first, 10.98.1.x next); the
# server pulls its first cable (ip link set eth0 down) mid-stream, after 60 of 300 messages
# (1 KB .. 3 MB, eager and rendezvous) were verified. Every message must still arrive once,
# intact and in order over the second link, the checksums of both sides must be equal, and
# each side must have failed over exactly once, saying why.
# TFAB_FAILOVER_LOOPS=N repeats the run (default 1).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
x=${TFAB_BUILD:?}/tests/xfer_peer
ns=$here/../net/netns.sh
fail() { echo "t_failover_netns: FAIL: $*" >&2; exit 1; }
loops=${TFAB_FAILOVER_LOOPS:-1}

for ((run = 1; run <= loops; run++)); do
    s=$(date +%s)
    out=$(bash "$ns" --hosts 2 --nets 2 --timeout 120 -- \
        "$x --listen - --links \"tcp \$TFAB_NET_IP:7400, tcp \$TFAB_NET_IP1:7400\" --timeout-ms 1500 --wait 60 --pool 256M stream --count 300 --window 16 --pull-after 60 --pull-cmd 'ip link set eth0 down'" \
        "$x --connect 10.98.0.1:7400 --links tcp --timeout-ms 1500 --wait 60 --pool 256M stream --count 300 --window 16") ||
        { echo "$out"; fail "run $run: stream failed"; }
    echo "$out"
    grep -q '^link: tcp 10.98.0.1:7400$' <<<"$out" || fail "run $run: the client did not start on the first link"
    grep -q '^server: 60 messages verified, pulling: ip link set eth0 down$' <<<"$out" || fail "run $run: the cable was not pulled mid-stream"
    grep -Eq '^server: stream 300 messages verified, checksum [0-9a-f]{16}$' <<<"$out" || fail "run $run: server did not verify all 300"
    sum=$(sed -n 's/^server: stream 300 messages verified, checksum //p' <<<"$out")
    grep -q "^client: stream 300 messages, checksums equal $sum\$" <<<"$out" || fail "run $run: checksums differ"
    grep -Eq '^server: failovers 1 resent [0-9]+ link now tcp 10.98.1.1:7400' <<<"$out" || fail "run $run: server did not fail over once to the second link"
    grep -Eq '^client: failovers 1 resent [0-9]+ link now tcp 10.98.1.1:7400$' <<<"$out" || fail "run $run: client did not fail over once to the second link"
    grep -Eq 'tcp 10.98.0.1:7400( \(from [0-9.:]+\))? failed \((no progress for 1500 ms|the peer moved to tcp 10.98.1.1:7400[^)]*|[^)]*)\): failing over to tcp 10.98.1.1:7400' <<<"$out" ||
        fail "run $run: the switch is not logged with its reason"
    [ "$(grep -c 'failing over to' <<<"$out")" = 2 ] || fail "run $run: the switch is not logged exactly once per side"
    echo "t_failover_netns: run $run of $loops passed in $(($(date +%s) - s)) s"
done
echo "t_failover_netns: PASS"
