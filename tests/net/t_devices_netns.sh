#!/usr/bin/env bash
# t_devices_netns.sh - `tfab devices` inside a namespaced host lists exactly its interfaces
# (lo and eth0 with the harness's address and MTU) and says there is no RDMA device.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
fail() { echo "FAIL: $*" >&2; exit 1; }
out=$(bash "$here/netns.sh" --hosts 2 --mtu 9000 -- "${TFAB_BUILD:?}/tfab devices") || { echo "$out"; fail "tfab devices failed"; }
echo "$out"
for i in 0 1; do
    block=$(awk -v h="=== host $i " 'index($0,h)==1{on=1;next} /^=== host/{on=0} on' <<<"$out")
    grep -Eq "^  eth0 +UP +mtu 9000 +([0-9]+ Mb/s +)?10\.98\.0\.$((i + 1))/24" <<<"$block" || fail "host $i: eth0 10.98.0.$((i + 1))/24 mtu 9000 missing"
    grep -q '^TCP interfaces: 2$' <<<"$block" || fail "host $i: expected exactly lo and eth0"
    grep -q '^RDMA devices: none' <<<"$block" || fail "host $i: RDMA devices should be none"
done
echo PASS
