#!/usr/bin/env bash
# transport.sh - tfab's transport against its peers on the same link in the same run:
# plain: bandwidth sweep and 8-byte latency of tfab over TCP between two network-namespace
# hosts, against iperf3 (single stream) on the same veth pair; the host has no RDMA, so the
# verbs fields print na. --softroce: boots two soft-RoCE guests and measures tfab over verbs
# against ib_write_bw, ib_write_lat and ucx_perftest there, and TCP against iperf3, in the same
# run (perf/transport_softroce.sh). Prints a table and, last:
#   RESULT rdma_bw_ratio=… rdma_lat_ratio=… ucx_bw_ratio=… tcp_bw_ratio=…
#
#   perf/transport.sh [--quick] [--softroce] [--build DIR]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${TFAB_BUILD:-$here/../build}
quick=0
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) quick=1; shift ;;
        --build) build=$2; shift 2 ;;
        --softroce) shift; exec bash "$here/transport_softroce.sh" "$@" ;;
        *) echo "usage: $0 [--quick] [--build DIR]" >&2; exit 2 ;;
    esac
done
x=$build/tests/xfer_peer
[ -x "$x" ] || { echo "transport.sh: $x not built" >&2; exit 2; }
command -v iperf3 >/dev/null || { echo "transport.sh: iperf3 missing (apt-get install iperf3)" >&2; exit 2; }
ns=$here/../tests/net/netns.sh
if [ $quick = 1 ]; then sizes="8 65536 1048576"; bytes_per_size=$((64 << 20)); secs=2
else sizes="8 1024 65536 1048576 16777216 67108864"; bytes_per_size=$((1 << 30)); secs=5; fi

# one netns run per measurement: server and client in two namespaces
peer() { # peer MODE ARGS... -> the client's output
    bash "$ns" --hosts 2 --timeout 300 -- \
        "$x --listen \$TFAB_NET_IP:7400 --pool 1G $*" "$x --connect 10.98.0.1:7400 --pool 1G $*" |
        sed -n '/^=== host 1 /,$p'
}

printf '%-12s %14s\n' "size" "tfab Gbit/s"
declare -A bw
for s in $sizes; do
    iters=$(( bytes_per_size / s )); [ $iters -gt 200000 ] && iters=200000; [ $iters -lt 8 ] && iters=8
    win=64; [ $s -ge 16777216 ] && win=4
    out=$(peer bw --size $s --iters $iters --window $win)
    g=$(grep -o 'client: bw .*: [0-9.]* Gbit/s' <<<"$out" | awk '{print $(NF-1)}')
    [ -n "$g" ] || { echo "$out" >&2; echo "transport.sh: bw run of $s bytes failed" >&2; exit 1; }
    bw[$s]=$g
    printf '%-12s %14s\n' "$s" "$g"
done
out=$(peer lat --size 8 --iters $([ $quick = 1 ] && echo 500 || echo 20000))
lat=$(grep -o 'median [0-9.]* us' <<<"$out" | awk '{print $2}')
[ -n "$lat" ] || { echo "$out" >&2; echo "transport.sh: latency run failed" >&2; exit 1; }

out=$(bash "$ns" --hosts 2 --timeout 120 -- "timeout 100 iperf3 -s -B \$TFAB_NET_IP >/dev/null 2>&1; true" \
    "for i in \$(seq 100); do iperf3 -c 10.98.0.1 -t $secs -J >/tmp/iperf.\$\$.json 2>&1;
       python3 -c 'import json,sys; print(\"iperf3_gbit\", json.load(open(sys.argv[1]))[\"end\"][\"sum_received\"][\"bits_per_second\"]/1e9)' /tmp/iperf.\$\$.json 2>/dev/null && break; sleep 0.3; done;
     pkill -x iperf3; rm -f /tmp/iperf.\$\$.json")
ip=$(awk '/^iperf3_gbit/ {print $2}' <<<"$out")
[ -n "$ip" ] || { echo "$out" >&2; echo "transport.sh: iperf3 failed" >&2; exit 1; }
best=0
for s in $sizes; do [ $s -ge 1048576 ] && best=$(awk -v a="$best" -v b="${bw[$s]}" 'BEGIN{print (b > a ? b : a)}'); done
printf '\n%-40s %10s\n' "TCP, 2 netns hosts over veth" "value"
printf '%-40s %10.2f\n' "tfab best bandwidth >= 1 MiB (Gbit/s)" "$best"
printf '%-40s %10.2f\n' "iperf3 single stream (Gbit/s)" "$ip"
printf '%-40s %10.2f\n' "tfab 8 B latency, half round trip (us)" "$lat"
printf '%-40s %10s\n' "verbs (no RDMA on this host)" "na: run with --softroce"
echo "RESULT rdma_bw_ratio=na rdma_lat_ratio=na ucx_bw_ratio=na tcp_bw_ratio=$(awk -v a="$best" -v b="$ip" 'BEGIN {printf "%.2f", a / b}')"
