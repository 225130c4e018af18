#!/usr/bin/env bash
# t_rping.sh - soft-RoCE bed test: rping (rdma_cm connection + RDMA READ/WRITE/SEND) between two
# guests; asserts every ping's verbose payload, byte for byte, on the client and the server.
# Run by ctest as `bash tests/softroce/t_rping.sh` (TFAB_SOFTROCE_CACHE names the cache).
set -euo pipefail

here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
COUNT=10           # pings
SIZE=100           # rping buffer size (-S); the payload string is SIZE-1 characters
PORT=7174          # rdma_cm port
SERVER_IP=10.99.0.1

fail() { echo "t_rping: FAIL: $*" >&2; exit 1; }

server="source \"\$TFAB_BED_LIB\"; set -euo pipefail
timeout 180 rping -s -a $SERVER_IP -p $PORT -C $COUNT -S $SIZE -v &
pid=\$!
bed_wait_cm_listen 120 $PORT
bed_signal rping-server
wait \$pid"
client="source \"\$TFAB_BED_LIB\"; set -euo pipefail
bed_wait_signal rping-server 150
bed_retry 10 timeout 120 rping -c -a $SERVER_IP -p $PORT -C $COUNT -S $SIZE -v"

out=$(mktemp "${TMPDIR:-/tmp}/t_rping.XXXXXX")
trap 'rm -f -- "$out"' EXIT
rc=0
bash "$here/bed.sh" --hosts 2 --timeout 280 -- "$server" "$client" > "$out" || rc=$?
cat "$out"
((rc == 0)) || fail "bed.sh exited $rc (see the output above)"

section() { awk -v h="=== host $1 " 'index($0, h) == 1 { on = 1; next } /^=== host [0-9]+ / { on = 0 } on' "$out"; }

# rping's payload for ping K: "rdma-ping-K: " then the characters 'A'..'z' (65..122) cyclically,
# starting at 65 + K mod 58, up to SIZE-1 characters in all.
alpha=
for ((c = 65; c <= 122; c++)); do alpha+=$(printf "\\$(printf %03o "$c")"); done
expected_payload() {
    local k=$1 s="rdma-ping-$1: " off rot
    off=$((k % 58))
    rot=${alpha:off}${alpha:0:off}
    while ((${#s} < SIZE - 1)); do s+=$rot; done
    printf '%s\n' "${s:0:SIZE-1}"
}
expected=$(for ((k = 0; k < COUNT; k++)); do expected_payload "$k"; done)

check_side() {    # check_side HOST NAME LINE-PREFIX
    local s got
    grep -q "^=== host $1 (10\.99\.0\.$(($1 + 1))) exit=0 ===\$" "$out" || fail "$2: no 'exit=0' header for host $1"
    s=$(section "$1")
    got=$(grep -F "$3" <<<"$s" | grep "^$3" | cut -c$((${#3} + 1))- || true)
    if [[ $got != "$expected" ]]; then
        echo "t_rping: $2 expected $COUNT payload lines:" >&2
        printf '%s\n' "$expected" >&2
        echo "t_rping: $2 got:" >&2
        printf '%s\n' "$got" >&2
        fail "$2: rping payloads differ from what rping -C $COUNT -S $SIZE sends"
    fi
}
check_side 1 client "ping data: "
check_side 0 server "server ping data: "
echo "t_rping: PASS ($COUNT pings of $SIZE bytes verified on both sides)"
