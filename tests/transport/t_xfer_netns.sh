#!/usr/bin/env bash
# t_xfer_netns.sh - the transport between two processes on two namespaced hosts over real TCP:
# sizes 1 B..64 MiB verified on the receiver with checksums echoed, 1,000 concurrent
# transfers, and a peer with the wrong cluster token refused before any transfer.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
x=${TFAB_BUILD:?}/tests/xfer_peer
ns=$here/../net/netns.sh
fail() { echo "t_xfer_netns: FAIL: $*" >&2; exit 1; }

out=$(bash "$ns" --hosts 2 --timeout 120 -- \
    "$x --listen \$TFAB_NET_IP:7400 --pool 512M check --max 64M" \
    "$x --connect 10.98.0.1:7400 --pool 512M check --max 64M") || { echo "$out"; fail "check run failed"; }
echo "$out"
for side in server client; do
    grep -Eq "^$side: check sizes 1\.\.67108864: [0-9]+ messages, [0-9]+ bytes verified$" <<<"$out" || fail "$side: sizes not verified"
    grep -q "^$side: 1000 concurrent transfers verified$" <<<"$out" || fail "$side: concurrency not verified"
    grep -q "^$side: OK$" <<<"$out" || fail "$side did not finish"
done
grep -q '^link: tcp 10.98.0.1:7400$' <<<"$out" || fail "client link not reported as tcp 10.98.0.1:7400"

set +e
out=$(bash "$ns" --hosts 2 --timeout 60 -- \
    "$x --listen \$TFAB_NET_IP:7400 --token right --wait 5 check --max 1K" \
    "$x --connect 10.98.0.1:7400 --token wrong --wait 5 check --max 1K")
rc=$?
set -e
echo "$out"
[ $rc -eq 1 ] || fail "expected both sides to fail (exit 1), got $rc"
grep -q 'xfer_peer: no peer: timed out' <<<"$out" || fail "server accepted a peer with the wrong token"
grep -q '10.98.0.1:7400 does not know our cluster token: refusing before revealing anything' <<<"$out" ||
    fail "client does not say the server failed to prove the token"
grep -q 'xfer_peer: no peer: authentication failed' <<<"$out" || fail "client does not fail with an authentication error"
echo "t_xfer_netns: PASS"
