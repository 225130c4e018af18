#!/usr/bin/env bash
# t_three_hosts.sh - soft-RoCE bed with 3 hosts: each guest sees its own rxe0 GID, and hosts 1
# and 2 both run rping against host 0 at once (verbs traffic from two peers into one).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tfab=${TFAB_BUILD:?}/tfab
fail() { echo "t_three_hosts: FAIL: $*" >&2; exit 1; }
server="source \"\$TFAB_BED_LIB\"; set -euo pipefail; $tfab devices | grep 'RoCE v2'
timeout 120 rping -s -a \$TFAB_BED_IP -C 5 -S 64 -v & a=\$!; bed_wait_cm_listen 60; bed_signal srv1; wait \$a
timeout 120 rping -s -a \$TFAB_BED_IP -C 5 -S 64 -v & b=\$!; bed_wait_cm_listen 60; bed_signal srv2; wait \$b"
client="source \"\$TFAB_BED_LIB\"; set -euo pipefail; $tfab devices | grep 'RoCE v2'
bed_wait_signal srv\$TFAB_BED_HOST 150; bed_retry 10 timeout 60 rping -c -a 10.99.0.1 -C 5 -S 64 -v"
# host 2 waits for the second server instance, host 1 for the first
out=$(bash "$here/../softroce/bed.sh" --hosts 3 --timeout 280 -- "$server" "$client" "$client") || { echo "$out"; fail "bed.sh failed"; }
echo "$out"
for i in 0 1 2; do
    block=$(awk -v h="=== host $i " 'index($0,h)==1{on=1;next} /^=== host [0-9]+ /{on=0} on' <<<"$out")
    grep -Eq "^    gid [0-9]+ +::ffff:10\.99\.0\.$((i + 1)) +RoCE v2 +eth0\$" <<<"$block" || fail "host $i: own RoCE v2 GID missing"
done
[ "$(grep -c 'ping data: rdma-ping-4: ' <<<"$out")" -ge 4 ] || fail "not all rping exchanges completed"
echo "t_three_hosts: PASS"
