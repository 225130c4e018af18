#!/usr/bin/env bash
# t_rc_probe.sh - soft-RoCE bed test: rc_probe between two guests. Each side registers one
# 1 GiB region; an RC queue pair is connected with rdma_cm; 64 MiB go by RDMA WRITE (+imm) and
# 64 MiB by SEND; the receiver checks every byte against the regenerated pattern, both sides
# print checksums, and they must agree. Also: with a 64 KiB memlock limit and CAP_IPC_LOCK
# dropped, registering 1 GiB fails with an error that names the limit and the fix.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
probe=${TFAB_BUILD:?}/tests/rc_probe
bed=$here/../softroce/bed.sh
fail() { echo "t_rc_probe: FAIL: $*" >&2; exit 1; }
[ -x "$probe" ] || fail "$probe not built"

server="source \"\$TFAB_BED_LIB\"; set -euo pipefail
timeout 280 $probe --server --bind \$TFAB_BED_IP --timeout 270 & pid=\$!
bed_wait_cm_listen 200 7471
bed_signal probe-server
wait \$pid"
client="source \"\$TFAB_BED_LIB\"; set -euo pipefail
bed_wait_signal probe-server 250
$probe --client 10.99.0.1 --timeout 270
# memlock: with CAP_IPC_LOCK (root) a 64 KiB limit is not enforced; without it, registering
# 1 GiB must fail with the limit and the fix named
bash -c 'ulimit -l 64; exec $probe --reg-only --bind \$0' \$TFAB_BED_IP
capsh --drop=cap_ipc_lock -- -c 'ulimit -l 64; exec $probe --reg-only --bind \$0' \$TFAB_BED_IP && exit 3
exit 0"

out=$(mktemp); trap 'rm -f "$out"' EXIT
rc=0
bash "$bed" --hosts 2 --timeout 400 -- "$server" "$client" >"$out" 2>&1 || rc=$?
cat "$out"
[ $rc -eq 0 ] || fail "bed.sh exited $rc"
section() { awk -v h="=== host $1 " 'index($0,h)==1{on=1;next} /^=== host [0-9]+ /{on=0} on' "$out"; }
s=$(section 0) c=$(section 1)

for side in "$s" "$c"; do
    grep -Eq '^registered 1\.00 GiB in [0-9.]+ s' <<<"$side" || fail "a side did not register 1 GiB"
done
grep -Eq '^gid: rxe0 port 1 index ([0-9]+) ::ffff:10\.99\.0\.1 \(RoCE v2\); rdma_cm chose index \1$' <<<"$s" ||
    fail "server: GID chosen by tfab_gid_select is not rdma_cm's RoCE v2 GID for 10.99.0.1"
grep -Eq '^gid: rxe0 port 1 index ([0-9]+) ::ffff:10\.99\.0\.2 \(RoCE v2\); rdma_cm chose index \1$' <<<"$c" ||
    fail "client: GID chosen by tfab_gid_select is not rdma_cm's RoCE v2 GID for 10.99.0.2"

for op in write send; do
    ss=$(grep -E "^server: $op +67108864 bytes checksum [0-9a-f]{16} intact$" <<<"$s" | awk '{print $6}')
    read -r cs cr < <(grep -E "^client: $op +67108864 bytes checksum [0-9a-f]{16} server [0-9a-f]{16} " <<<"$c" | awk '{print $6, $8}')
    [ -n "$ss" ] || fail "server: no intact 64 MiB $op"
    [ -n "${cs:-}" ] || fail "client: no 64 MiB $op line"
    [ "$ss" = "$cs" ] && [ "$cr" = "$cs" ] || fail "$op checksums differ: server $ss, client $cs, reported $cr"
    echo "t_rc_probe: $op 64 MiB checksum $cs on both sides"
done
grep -q '^server: OK$' <<<"$s" || fail "server did not finish OK"
grep -q '^client: OK$' <<<"$c" || fail "client did not finish OK"
[ "$(grep -c '^reg-only: OK$' <<<"$c")" = 1 ] || fail "with CAP_IPC_LOCK, a 64 KiB memlock limit blocked registration"
grep -Eq '^rc_probe: ibv_reg_mr\(1\.00 GiB\) failed: Cannot allocate memory; memlock limit 64\.0 KiB \(hard limit too\) is below the pool.s 1\.00 GiB: add `\* - memlock unlimited` to /etc/security/limits\.d/tfab\.conf' <<<"$c" ||
    fail "without CAP_IPC_LOCK, the registration error does not name the limit and the fix"
echo "t_rc_probe: PASS"
