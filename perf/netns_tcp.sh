#!/usr/bin/env bash
# netns_tcp.sh - TCP baseline between two network-namespace hosts: tfab's checksummed stream
# mover (tests/tcp_xfer, the stand-in until the TCP transport lands) against iperf3 single
# stream on the same veth link, in the same run. Prints a table and, last,
#   RESULT tcp_bw_ratio=<tfab Mbit/s / iperf3 Mbit/s>
#
#   perf/netns_tcp.sh [--quick] [--build DIR]
# --quick: one 64 MiB round each (a smoke test for CI); default: 3 rounds of 512 MiB, median.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${TFAB_BUILD:-$here/../build}
rounds=3 bytes=512M secs=5
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) rounds=1 bytes=64M secs=2; shift ;;
        --build) build=$2; shift 2 ;;
        *) echo "usage: $0 [--quick] [--build DIR]" >&2; exit 2 ;;
    esac
done
x=$build/tests/tcp_xfer
[ -x "$x" ] || { echo "netns_tcp.sh: $x not built (cmake --build $build)" >&2; exit 2; }
command -v iperf3 >/dev/null || { echo "netns_tcp.sh: iperf3 missing (apt-get install iperf3)" >&2; exit 2; }
ns=$here/../tests/net/netns.sh

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
tf=() ip=()
for ((r = 0; r < rounds; r++)); do
    out=$(bash "$ns" --hosts 2 --timeout 120 -- \
        "$x --server --bind \$TFAB_NET_IP --bytes $bytes" "$x --client 10.98.0.1 --bytes $bytes") ||
        { echo "$out" >&2; echo "netns_tcp.sh: tcp_xfer failed" >&2; exit 1; }
    tf+=("$(grep -o '^client: .* \([0-9.]*\) Mbit/s' <<<"$out" | awk '{print $(NF-1)}')")
    out=$(bash "$ns" --hosts 2 --timeout 120 -- \
        "timeout 100 iperf3 -s -B \$TFAB_NET_IP >/dev/null 2>&1; true" \
        "for i in \$(seq 100); do iperf3 -c 10.98.0.1 -t $secs -J >/tmp/iperf.\$\$.json 2>&1;
           python3 -c 'import json,sys; print(\"iperf3_mbit\", json.load(open(sys.argv[1]))[\"end\"][\"sum_received\"][\"bits_per_second\"]/1e6)' /tmp/iperf.\$\$.json 2>/dev/null && break; sleep 0.3; done;
         pkill -x iperf3; rm -f /tmp/iperf.\$\$.json") ||
        { echo "$out" >&2; echo "netns_tcp.sh: iperf3 failed" >&2; exit 1; }
    ip+=("$(awk '/^iperf3_mbit/ {print $2}' <<<"$out")")
done
t=$(printf '%s\n' "${tf[@]}" | median)
i=$(printf '%s\n' "${ip[@]}" | median)
printf '%-34s %12s\n' "TCP, 2 netns hosts over veth" "Mbit/s"
printf '%-34s %12.0f   (%s rounds of %s, checksummed)\n' "tfab tcp_xfer" "$t" "$rounds" "$bytes"
printf '%-34s %12.0f   (single stream, %s s)\n' "iperf3" "$i" "$secs"
echo "RESULT tcp_bw_ratio=$(awk -v a="$t" -v b="$i" 'BEGIN {printf "%.2f", a / b}')"
