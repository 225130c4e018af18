#!/usr/bin/env bash
# t_pingpong.sh - soft-RoCE bed test: ibv_rc_pingpong (RC send/recv over verbs) between two
# guests; asserts the byte and iteration counts both sides report and the GIDs they exchanged.
# Run by ctest as `bash tests/softroce/t_pingpong.sh` (TFAB_SOFTROCE_CACHE names the cache).
set -euo pipefail

here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
SIZE=4096          # message size
ITERS=500          # round trips
PORT=18515         # ibv_rc_pingpong's TCP port for exchanging QP info
SERVER_IP=10.99.0.1
CLIENT_IP=10.99.0.2
BYTES=$((2 * SIZE * ITERS))   # each side counts what it sent and received

fail() { echo "t_pingpong: FAIL: $*" >&2; exit 1; }

# The GID index is looked up in the guest (bed_gid_index: the RoCE v2 GID ::ffff:<eth0 IPv4>).
common='source "$TFAB_BED_LIB"; set -euo pipefail; gid=$(bed_gid_index); echo "bed-gid-index=$gid"'
server="$common
timeout 180 ibv_rc_pingpong -d rxe0 -g \$gid -s $SIZE -n $ITERS -p $PORT &
pid=\$!
bed_wait_tcp_listen $PORT 120
bed_signal pingpong-server
wait \$pid"
client="$common
bed_wait_signal pingpong-server 150
bed_retry 10 timeout 120 ibv_rc_pingpong -d rxe0 -g \$gid -s $SIZE -n $ITERS -p $PORT $SERVER_IP"

out=$(mktemp "${TMPDIR:-/tmp}/t_pingpong.XXXXXX")
trap 'rm -f -- "$out"' EXIT
rc=0
bash "$here/bed.sh" --hosts 2 --timeout 280 -- "$server" "$client" > "$out" || rc=$?
cat "$out"
((rc == 0)) || fail "bed.sh exited $rc (see the output above)"

# section I: the output of host I (between its header and the next).
section() { awk -v h="=== host $1 " 'index($0, h) == 1 { on = 1; next } /^=== host [0-9]+ / { on = 0 } on' "$out"; }

check_side() {    # check_side HOST NAME LOCAL_IP REMOTE_IP
    local s
    s=$(section "$1")
    grep -q "^=== host $1 ($3) exit=0 ===\$" "$out" || fail "$2: no 'exit=0' header for host $1"
    grep -qE '^bed-gid-index=[0-9]+$' <<<"$s" || fail "$2: no GID index found in the guest"
    grep -qE "^ *local address: +LID 0x[0-9a-f]+, QPN 0x[0-9a-f]+, PSN 0x[0-9a-f]+, GID ::ffff:$3\$" <<<"$s" ||
        fail "$2: no 'local address ... GID ::ffff:$3' line"
    grep -qE "^ *remote address: +LID 0x[0-9a-f]+, QPN 0x[0-9a-f]+, PSN 0x[0-9a-f]+, GID ::ffff:$4\$" <<<"$s" ||
        fail "$2: no 'remote address ... GID ::ffff:$4' line"
    grep -qE "^$BYTES bytes in [0-9]+\.[0-9]+ seconds = [0-9]+\.[0-9]+ Mbit/sec\$" <<<"$s" ||
        fail "$2: no '$BYTES bytes in X seconds = Y Mbit/sec' line"
    grep -qE "^$ITERS iters in [0-9]+\.[0-9]+ seconds = [0-9]+\.[0-9]+ usec/iter\$" <<<"$s" ||
        fail "$2: no '$ITERS iters in X seconds = Y usec/iter' line"
}
check_side 0 server "$SERVER_IP" "$CLIENT_IP"
check_side 1 client "$CLIENT_IP" "$SERVER_IP"
echo "t_pingpong: PASS ($BYTES bytes, $ITERS iters each side)"
