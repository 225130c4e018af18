#!/usr/bin/env bash
# t_devices_guest.sh - soft-RoCE bed test: inside a guest, `tfab devices` lists rxe0 with an
# ACTIVE Ethernet port, MTU 1024, and the RoCE v2 GID of the guest's address on eth0, agreeing
# with sysfs; and in a --numa guest it reports the two NUMA nodes.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tfab=${TFAB_BUILD:?}/tfab
bed=$here/../softroce/bed.sh
fail() { echo "t_devices_guest: FAIL: $*" >&2; exit 1; }

cmd="set -euo pipefail; source \"\$TFAB_BED_LIB\"
$tfab devices
echo \"sysfs-v2-index=\$(bed_gid_index)\""
out=$(bash "$bed" --hosts 1 --numa --timeout 200 -- "$cmd") || { echo "$out"; fail "bed.sh failed"; }
echo "$out"
grep -q '^RDMA devices: 1$' <<<"$out" || fail "not exactly one RDMA device"
grep -Eq '^rxe0 +guid [0-9a-f:]+ ' <<<"$out" || fail "rxe0 not listed"
grep -Eq '^  port 1  ACTIVE  Ethernet +mtu 1024 \(max 4096\)' <<<"$out" || fail "port 1 not ACTIVE Ethernet mtu 1024"
idx=$(sed -n 's/^sysfs-v2-index=//p' <<<"$out")
[ -n "$idx" ] || fail "no RoCE v2 GID in sysfs"
grep -Eq "^    gid $idx +::ffff:10\.99\.0\.1 +RoCE v2 +eth0\$" <<<"$out" ||
    fail "GID $idx ::ffff:10.99.0.1 RoCE v2 on eth0 not listed"
grep -Eq '^  eth0 +UP +mtu 1500 .*10\.99\.0\.1/24' <<<"$out" || fail "eth0 10.99.0.1/24 not listed"
grep -Eq '^  NUMA +2 nodes$' <<<"$out" || fail "the --numa guest does not show 2 NUMA nodes"
echo "t_devices_guest: PASS"
