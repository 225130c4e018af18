#!/usr/bin/env bash
# t_verbs_softroce.sh - the transport's verbs backend on real rxe queue pairs between soft-RoCE
# guests: (1) the conformance sequence (1 B..64 MiB verified, 1,000 concurrent) with the pool
# registered once per side; (2) peers that disagree on the backend are refused by name, both
# sides, quickly; (3) ring all-reduce/all-gather across 3 guests over verbs.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
b=${TFAB_BUILD:?}
bed=$here/../softroce/bed.sh
fail() { echo "t_verbs_softroce: FAIL: $*" >&2; exit 1; }
x="$b/tests/xfer_peer --pool 512M --wait 100"

server="$x --listen \$TFAB_BED_IP:7400 --backend verbs check --max 64M
$x --listen \$TFAB_BED_IP:7401 --backend tcp --wait 20 check --max 1K; echo mismatch-server-exit=\$?"
client="sleep 1; $x --connect 10.99.0.1:7400 --backend verbs check --max 64M
$x --connect 10.99.0.1:7401 --backend verbs --wait 20 check --max 1K; echo mismatch-client-exit=\$?"
out=$(bash "$bed" --hosts 2 --timeout 400 -- "$server" "$client") || { echo "$out"; fail "bed run failed"; }
echo "$out"
for side in server client; do
    grep -Eq "^$side: check sizes 1\.\.67108864: [0-9]+ messages, [0-9]+ bytes verified$" <<<"$out" || fail "$side: sizes over verbs"
    grep -q "^$side: 1000 concurrent transfers verified$" <<<"$out" || fail "$side: concurrency over verbs"
done
[ "$(grep -c 'verbs: rxe0 port 1: pool registered once (remote access only through per-transfer memory windows)' <<<"$out")" = 2 ] || fail "pool not registered exactly once per side, with memory windows"
grep -q '^link: verbs 10.99.0.1:7400$' <<<"$out" || fail "client link is not verbs"
grep -q '10.99.0.1:7401 offers tcp, we offer verbs: no common link' <<<"$out" || fail "client does not name the mismatch"
grep -q 'refused by the peer: no common link' <<<"$out" || fail "server does not report the refusal"
grep -q '^mismatch-client-exit=1$' <<<"$out" && grep -q '^mismatch-server-exit=1$' <<<"$out" || fail "mismatched peers did not both fail"

# faults: (a) the server is killed mid-stream; (b) the client's RDMA link is deleted mid-stream.
# Each surviving side must fail with a named error within seconds, never hang.
# (both wait for an RTS queue pair, i.e. a live connection, before they strike)
connected='bed_wait_until 90 bash -c "rdma res show qp | grep -q \"type RC state RTS\""'
server="source \"\$TFAB_BED_LIB\"; $x --listen \$TFAB_BED_IP:7402 --backend verbs bw --size 1M --iters 1000000 & p=\$!
$connected; sleep 2; kill -9 \$p; wait \$p; echo killed-server
$x --listen \$TFAB_BED_IP:7403 --backend verbs --wait 15 bw --size 1M --iters 1000000; echo pulled-server-exit=\$?"
client="source \"\$TFAB_BED_LIB\"; s=\$(date +%s); $x --connect 10.99.0.1:7402 --backend verbs --wait 60 bw --size 1M --iters 1000000; echo killed-client-exit=\$? after=\$((\$(date +%s) - s))
$x --connect 10.99.0.1:7403 --backend verbs --wait 60 bw --size 1M --iters 1000000 & p=\$!
$connected; sleep 2; s=\$(date +%s); rdma link delete rxe0; wait \$p; echo pulled-client-exit=\$? after=\$((\$(date +%s) - s))"
out=$(bash "$bed" --hosts 2 --timeout 300 -- "$server" "$client") || true
echo "$out"
grep -Eq '^killed-client-exit=1 after=[0-9]+$' <<<"$out" || fail "client did not fail when its peer was killed"
after=$(sed -n 's/^killed-client-exit=1 after=//p' <<<"$out")
[ "$after" -le 40 ] || fail "client took ${after}s (connect, 2 s of traffic, then the kill) to notice"
grep -Eq 'xfer_peer: a bandwidth transfer failed: (connection failed|input/output error)' <<<"$out" || fail "no named error after the kill"
grep -Eq '^pulled-client-exit=1 after=[0-9]+$' <<<"$out" || fail "client did not fail when its link was deleted"
[ "$(sed -n 's/^pulled-client-exit=1 after=//p' <<<"$out")" -le 20 ] || fail "client hung after its link was deleted"
grep -Eq '^pulled-server-exit=1$' <<<"$out" || fail "server did not fail when the client's link was deleted"

addrs=10.99.0.1:7600,10.99.0.2:7600,10.99.0.3:7600
out=$(bash "$bed" --hosts 3 --timeout 300 -- \
    "$b/tests/ring_peer --rank \$TFAB_BED_HOST --addrs $addrs --backend verbs --count 300007") || { echo "$out"; fail "ring over verbs failed"; }
echo "$out"
[ "$(grep -c '^rank [0-9]: OK$' <<<"$out")" = 3 ] || fail "ring: not all ranks finished"
[ "$(grep -o 'sum-checksum [0-9a-f]*' <<<"$out" | sort -u | wc -l)" = 1 ] || fail "ring: ranks disagree"
[ "$(grep -c '^rank [0-9]: allgather 3 x 4099 bytes OK$' <<<"$out")" = 3 ] || fail "ring: allgather"
echo "t_verbs_softroce: PASS"
