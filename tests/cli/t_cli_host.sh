#!/usr/bin/env bash
# t_cli_host.sh - the tfab CLI on the host itself: help, version, errors, and `tfab devices`
# listing the interfaces (and, on a host without RDMA, saying so and still exiting 0).
set -euo pipefail
tfab=${TFAB_BUILD:?}/tfab
fail() { echo "FAIL: $*" >&2; exit 1; }

out=$("$tfab" --version)
[[ "$out" =~ ^tfab\ [0-9]+\.[0-9]+\.[0-9]+\ \(verbs\ backend:\ (yes|no)\)$ ]] || fail "--version printed '$out'"
"$tfab" --help | grep -q '^  devices ' || fail "--help does not list the devices command"

set +e
err=$("$tfab" no-such-command 2>&1); rc=$?
set -e
[ $rc -eq 2 ] && [[ "$err" == *"unknown command 'no-such-command'"* ]] || fail "unknown command: rc=$rc '$err'"
set +e
err=$("$tfab" devices --pool-size 12Q 2>&1); rc=$?
set -e
[ $rc -eq 2 ] && [[ "$err" == *"--pool-size '12Q' is not a size"* ]] || fail "bad size: rc=$rc '$err'"
set +e
err=$(TFAB_LOG_LEVEL=loud "$tfab" devices 2>&1); rc=$?
set -e
[ $rc -eq 2 ] && [[ "$err" == *"TFAB_LOG_LEVEL=loud"* ]] || fail "bad TFAB_LOG_LEVEL: rc=$rc '$err'"

out=$("$tfab" devices)
echo "$out"
grep -Eq '^  lo +UP +mtu 65536 .*127\.0\.0\.1/8' <<<"$out" || fail "loopback with 127.0.0.1/8 not listed"
# every interface the kernel has is listed
for i in $(ls /sys/class/net); do
    grep -Eq "^  $i +(UP|DOWN) " <<<"$out" || fail "interface $i missing"
done
grep -Eq '^  memlock +soft ' <<<"$out" || fail "memlock limit missing"
if [ -z "$(ls /sys/class/infiniband 2>/dev/null)" ]; then
    grep -q '^RDMA devices: none: ' <<<"$out" || fail "no RDMA device, but not said so"
    grep -q 'tfab will use TCP' <<<"$out" || fail "does not say it falls back to TCP"
else
    n=$(ls /sys/class/infiniband | wc -l)
    grep -q "^RDMA devices: $n\$" <<<"$out" || fail "expected $n RDMA devices"
fi
# the limits line follows ulimit -l
out=$(bash -c "ulimit -l 64; '$tfab' devices --pool-size 1G")
grep -Eq 'memlock +soft 64.0 KiB, hard 64.0 KiB' <<<"$out" || fail "memlock 64 KiB not reported: $out"
if ! grep -q 'CAP_IPC_LOCK' <<<"$out"; then
    grep -q 'TOO LOW: .*/etc/security/limits.d' <<<"$out" || fail "no fix printed for a low memlock"
fi
echo "PASS"
