#!/usr/bin/env bash
# t_failover_softroce.sh - failover without loss from verbs to TCP between two soft-RoCE guests:
# the endpoint holds two ranked links, verbs (rxe0, rdma_cm on 10.99.0.x:7400) first and TCP
# (10.99.0.x:7401) next; the server deletes its RDMA link (`rdma link delete rxe0`) mid-stream,
# after 40 of 200 messages (1 KB .. 3 MB: eager SENDs and RDMA WRITEs into memory windows)
# were verified. Every message must still arrive once, intact and in order over TCP, the
# checksums of both sides must be equal, and each side must have failed over once.
# TFAB_FAILOVER_LOOPS=N repeats the run (default 1).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
b=${TFAB_BUILD:?}
bed=$here/../softroce/bed.sh
fail() { echo "t_failover_softroce: FAIL: $*" >&2; exit 1; }
loops=${TFAB_FAILOVER_LOOPS:-1}
x="$b/tests/xfer_peer --pool 256M --wait 100 --timeout-ms 3000"

# the delete runs in the background: rxe cannot detach a process's open device context, so
# the command finishes only when the server exits (the stream goes on over TCP meanwhile)
server="$x --listen - --links \"verbs \$TFAB_BED_IP:7400, tcp \$TFAB_BED_IP:7401\" stream --count 200 --window 16 --pull-after 40 --pull-cmd 'rdma link delete rxe0 &'"
client="sleep 1; $x --connect 10.99.0.1:7400 --links verbs,tcp stream --count 200 --window 16"
for ((run = 1; run <= loops; run++)); do
    s=$(date +%s)
    out=$(bash "$bed" --hosts 2 --timeout 300 -- "$server" "$client") || { echo "$out"; fail "run $run: bed run failed"; }
    echo "$out"
    grep -q '^link: verbs 10.99.0.1:7400$' <<<"$out" || fail "run $run: the client did not start on verbs"
    grep -q 'server: 40 messages verified, pulling: rdma link delete rxe0 &' <<<"$out" || fail "run $run: the RDMA link was not deleted mid-stream"
    grep -Eq '^server: stream 200 messages verified, checksum [0-9a-f]{16}$' <<<"$out" || fail "run $run: server did not verify all 200"
    sum=$(sed -n 's/^server: stream 200 messages verified, checksum //p' <<<"$out")
    grep -q "^client: stream 200 messages, checksums equal $sum\$" <<<"$out" || fail "run $run: checksums differ"
    grep -Eq '^server: failovers 1 resent [0-9]+ link now tcp 10.99.0.1:7401' <<<"$out" || fail "run $run: server did not fail over once to TCP"
    grep -Eq '^client: failovers 1 resent [0-9]+ link now tcp 10.99.0.1:7401$' <<<"$out" || fail "run $run: client did not fail over once to TCP"
    grep -q 'verbs 10.99.0.1:7400.* failed (.*): failing over to tcp 10.99.0.1:7401' <<<"$out" || fail "run $run: the switch is not logged with its reason"
    echo "t_failover_softroce: run $run of $loops passed in $(($(date +%s) - s)) s"
done
echo "t_failover_softroce: PASS"
