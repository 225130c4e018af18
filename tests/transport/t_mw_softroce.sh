#!/usr/bin/env bash
# t_mw_softroce.sh - remote access is bounded per transfer: between two soft-RoCE guests a peer
# (tests/transport/mw_peer.c, wrapping the verbs backend's ops) RDMA-writes half outside the
# memory window granted for its transfer, then replays a write with a window's key after the
# transfer completed and the window was invalidated. The replay must fail on the writer with a
# remote access error and leave the receiver's memory unchanged. The out-of-window write must
# do the same - or, on a device that does not bound windows (rxe on Linux 6.1 checks a window's
# key but the range against the registration under it), tfab must have said so at start-up;
# the test then reports how far the write reached.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
b=${TFAB_BUILD:?}
bed=$here/../softroce/bed.sh
fail() { echo "t_mw_softroce: FAIL: $*" >&2; exit 1; }
out=$(bash "$bed" --hosts 2 --timeout 200 -- \
    "$b/tests/mw_peer --listen \$TFAB_BED_IP:7400 --wait 60" \
    "sleep 1; $b/tests/mw_peer --connect 10.99.0.1:7400 --wait 60") || { echo "$out"; fail "bed run failed"; }
echo "$out"
grep -Eq "^client: replay: write 65536 bytes with the revoked key 0x[0-9a-f]+: input/output error$" <<<"$out" || fail "the write with a revoked key did not fail on the writer"
grep -q "^client: replay: .*" <<<"$out" && grep -q "failed: work completion error 'remote access error'" <<<"$out" || fail "the writer's failure is not named a remote access error"
if grep -q "^client: outside: write 65536 bytes at grant + 32768: input/output error$" <<<"$out"; then
    grep -q "^server: outside: memory outside the grant unchanged (131072 bytes checked), no forged byte anywhere$" <<<"$out" || fail "outside: receiver memory changed"
    echo "t_mw_softroce: the device bounds memory windows"
else
    [ "$(grep -c 'rxe0 (soft-RoCE) enforces a memory window.s key but not its bounds' <<<"$out")" = 2 ] ||
        fail "an out-of-window write succeeded and tfab did not warn that the device does not bound windows"
    grep -Eq '^server: outside: DEVICE DOES NOT BOUND WINDOWS: [0-9]+ bytes outside the grant were written$' <<<"$out" || fail "outside: no report"
    echo "t_mw_softroce: KNOWN DEVICE LIMIT: $(sed -n 's/^server: outside: DEVICE DOES NOT BOUND WINDOWS: //p' <<<"$out") (tfab warns at start-up)"
fi
grep -q "^server: replay: memory outside the grant unchanged (131072 bytes checked), no forged byte anywhere$" <<<"$out" || fail "replay: receiver memory changed"
grep -q '^server: OK$' <<<"$out" && grep -q '^client: OK$' <<<"$out" || fail "a side did not finish"
echo "t_mw_softroce: PASS"
