#!/usr/bin/env bash
# transport_softroce.sh - the --softroce half of perf/transport.sh: boots two soft-RoCE guests
# and, on the same rxe link in the same run, measures tfab over verbs against ib_write_bw,
# ib_write_lat and ucx_perftest (ucp_put_bw), and tfab over TCP against iperf3 on the guests'
# link. Emulation-bound (TCG): only the same-run ratios mean anything.
#   perf/transport_softroce.sh [--quick] [--build DIR]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${TFAB_BUILD:-$here/../build}
quick=0
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) quick=1; shift ;;
        --build) build=$2; shift 2 ;;
        *) echo "usage: $0 [--quick] [--build DIR]" >&2; exit 2 ;;
    esac
done
export TFAB_SOFTROCE_CACHE=${TFAB_SOFTROCE_CACHE:-$build/softroce-cache}
x="$build/tests/xfer_peer --pool 256M --wait 120"
bw_iters=$([ $quick = 1 ] && echo 32 || echo 128)
lat_iters=$([ $quick = 1 ] && echo 500 || echo 3000)
MB=1048576

# host 0 serves each measurement in turn; host 1's clients wait or retry until it listens
server="source \"\$TFAB_BED_LIB\"; g=\$(bed_gid_index)
$x --listen \$TFAB_BED_IP:7400 --backend verbs bw --size $MB --iters $bw_iters --window 8
$x --listen \$TFAB_BED_IP:7401 --backend verbs lat --size 8 --iters $lat_iters
ib_write_bw -d rxe0 -x \$g -s $MB -n $bw_iters -p 18601 | sed 's/^/PT /'
ib_write_lat -d rxe0 -x \$g -s 8 -n $lat_iters -p 18602 | sed 's/^/PT /'
timeout 120 ucx_perftest -p 18603 2>&1 | sed 's/^/UCX /' || true
$x --listen \$TFAB_BED_IP:7402 --backend tcp bw --size $MB --iters $((bw_iters * 4)) --window 8
iperf3 -s -1 -B \$TFAB_BED_IP -p 18604 >/dev/null"
client="source \"\$TFAB_BED_LIB\"; g=\$(bed_gid_index)
$x --connect 10.99.0.1:7400 --backend verbs bw --size $MB --iters $bw_iters --window 8
$x --connect 10.99.0.1:7401 --backend verbs lat --size 8 --iters $lat_iters
bed_retry 30 ib_write_bw -d rxe0 -x \$g -s $MB -n $bw_iters -p 18601 10.99.0.1 | sed 's/^/PT /'
bed_retry 30 ib_write_lat -d rxe0 -x \$g -s 8 -n $lat_iters -p 18602 10.99.0.1 | sed 's/^/PT /'
UCX_NET_DEVICES=rxe0:1 UCX_TLS=rc_v,self bed_retry 10 timeout 120 ucx_perftest 10.99.0.1 -p 18603 -t ucp_put_bw -s $MB -n $bw_iters 2>&1 | sed 's/^/UCX /' || true
$x --connect 10.99.0.1:7402 --backend tcp bw --size $MB --iters $((bw_iters * 4)) --window 8
bed_retry 30 iperf3 -c 10.99.0.1 -p 18604 -t 3 -J > /tmp/iperf.json && python3 -c 'import json; print(\"IPERF\", json.load(open(\"/tmp/iperf.json\"))[\"end\"][\"sum_received\"][\"bits_per_second\"]/1e9)'"
out=$(bash "$here/../tests/softroce/bed.sh" --hosts 2 --timeout 600 -- "$server" "$client") ||
    { echo "$out" >&2; echo "transport_softroce.sh: the guest run failed" >&2; exit 1; }
c=$(sed -n '/^=== host 1 /,$p' <<<"$out")
tf_bw=$(grep -o 'client: bw size 1048576 .*: [0-9.]* Gbit/s' <<<"$c" | head -1 | awk '{print $(NF-1)}')
tf_tcp=$(grep -o 'client: bw size 1048576 .*: [0-9.]* Gbit/s' <<<"$c" | sed -n 2p | awk '{print $(NF-1)}')
tf_lat=$(grep -o 'median [0-9.]* us' <<<"$c" | awk '{print $2}')
# perftest: "#bytes #iterations BW peak[MB/sec] BW average[MB/sec] MsgRate[Mpps]" and for latency
# "#bytes #iterations t_min[usec] t_max[usec] t_typical[usec] ..."
pt_bw=$(awk '$1=="PT" && $2=="1048576" && NF>=6 {print $5 * 8 / 1000}' <<<"$c" | head -1)
pt_lat=$(awk '$1=="PT" && $2=="8" && NF>=7 {print $6}' <<<"$c" | head -1)
ucx_bw=$(awk '$1=="UCX" && $2 ~ /^Final:/ {print $(NF-4) * 8 / 1000}' <<<"$c" | head -1)
ip=$(awk '$1=="IPERF" {print $2}' <<<"$c")
for v in tf_bw tf_tcp tf_lat pt_bw pt_lat ip; do
    [ -n "${!v}" ] || { echo "$out" >&2; echo "transport_softroce.sh: could not read $v" >&2; exit 1; }
done
ratio() { [ -n "$2" ] && awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "na"}' || echo na; }
printf '%-44s %10s %10s %8s\n' "2 soft-RoCE guests (TCG), same run" "tfab" "peer" "ratio"
printf '%-44s %10.3f %10.3f %8s\n' "verbs 1 MiB bandwidth, Gbit/s (ib_write_bw)" "$tf_bw" "$pt_bw" "$(ratio "$tf_bw" "$pt_bw")"
printf '%-44s %10.1f %10.1f %8s\n' "verbs 8 B latency, us (ib_write_lat typical)" "$tf_lat" "$pt_lat" "$(ratio "$tf_lat" "$pt_lat")"
printf '%-44s %10.3f %10s %8s\n' "verbs 1 MiB bandwidth, Gbit/s (ucx_perftest)" "$tf_bw" "${ucx_bw:-na}" "$(ratio "$tf_bw" "$ucx_bw")"
printf '%-44s %10.3f %10.3f %8s\n' "tcp 1 MiB bandwidth, Gbit/s (iperf3)" "$tf_tcp" "$ip" "$(ratio "$tf_tcp" "$ip")"
echo "RESULT rdma_bw_ratio=$(ratio "$tf_bw" "$pt_bw") rdma_lat_ratio=$(ratio "$tf_lat" "$pt_lat") ucx_bw_ratio=$(ratio "$tf_bw" "$ucx_bw") tcp_bw_ratio=$(ratio "$tf_tcp" "$ip")"
