#!/usr/bin/env bash
# t_link_pull.sh - the harness can pull a host's cable mid-transfer, and the transfer then
# fails with a clear error within its timeout instead of hanging or reporting success.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
x=${TFAB_BUILD:?}/tests/tcp_xfer
fail() { echo "FAIL: $*" >&2; exit 1; }
set +e
# host 0 pulls its cable once more than 1 MB has arrived (ss counters), so the cut lands
# mid-stream whatever the build's speed
pull='for i in $(seq 300); do
        b=$(ss -Htin state established "( sport = :7472 )" | grep -o "bytes_received:[0-9]*" | cut -d: -f2)
        [ "${b:-0}" -gt 1000000 ] && break; sleep 0.1
      done; echo "pulling eth0 after ${b:-0} bytes"; ip link set eth0 down'
out=$(bash "$here/netns.sh" --hosts 2 --rate 40 --timeout 90 -- \
    "$x --server --bind \$TFAB_NET_IP --bytes 256M --timeout 5 & s=\$!; $pull; wait \$s" \
    "$x --client 10.98.0.1 --bytes 256M --timeout 5")
rc=$?
set -e
echo "$out"
[ $rc -eq 1 ] || fail "expected both sides to fail (exit 1), got $rc"
grep -q '^=== host 0 (10.98.0.1) exit=1 ===' <<<"$out" || fail "server did not fail"
grep -q '^=== host 1 (10.98.0.2) exit=1 ===' <<<"$out" || fail "client did not fail"
grep -q 'tcp_xfer: timed out reading data' <<<"$out" || fail "server error does not say it timed out reading"
grep -Eq 'tcp_xfer: timed out (sending data|reading the reply)' <<<"$out" || fail "client error does not say it timed out"
grep -Eq '^pulling eth0 after [0-9]{7,} bytes' <<<"$out" || fail "link was not pulled mid-stream"
grep -q 'intact' <<<"$out" && fail "a side claims the data arrived intact"
echo PASS
