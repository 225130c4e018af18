#!/usr/bin/env bash
# netns.sh - run commands on N "hosts" made of Linux network namespaces on this machine, joined
# by veth pairs to a bridge that lives in a namespace of its own (the host's network is not
# touched). The TCP counterpart of tests/softroce/bed.sh, with the same interface and output.
#
#   netns.sh [--hosts N] [--nets K] [--timeout SEC] [--mtu BYTES] [--delay MS] [--rate MBIT]
#            [--] CMD [CMD...]
#
# One CMD runs on every host; N CMDs run one per host (CMD i on host i). Each runs as
# `bash -c CMD` in its namespace, in the caller's directory, with:
#   TFAB_NET_HOST=i  TFAB_NET_HOSTS=N  TFAB_NET_IP=10.98.0.(i+1)  TFAB_NET_IFACE=eth0
#   TFAB_NET_PEERS="10.98.0.1 10.98.0.2 ..."
# --nets K (default 1) gives every host K networks: ethk on bridge k, address 10.98.k.(i+1)
# (TFAB_NET_IPk for k >= 1). Inside, `ip link set eth0 down` pulls this host's cable. --rate shapes eth0's egress with tc
# tbf; --delay adds latency with tc netem (where the kernel has it). All hosts start together; a client must retry until its
# server listens.
#
# Prints, per host, "=== host i (IP) exit=RC ===" and its output. Exit 0 when every command
# exited 0, 1 when one failed, 124 when the timeout (default 120 s) passed (the hosts still
# running are named and killed). Needs root (CAP_NET_ADMIN) and iproute2.
set -euo pipefail

hosts=2 nets=1 timeout=120 mtu=1500 delay=0 rate=0
usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
    case "$1" in
        --hosts) hosts=$2; shift 2 ;;
        --nets) nets=$2; shift 2 ;;
        --timeout) timeout=$2; shift 2 ;;
        --mtu) mtu=$2; shift 2 ;;
        --delay) delay=$2; shift 2 ;;
        --rate) rate=$2; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        --) shift; break ;;
        -*) echo "netns.sh: unknown option $1" >&2; exit 2 ;;
        *) break ;;
    esac
done
[ $# -ge 1 ] || { echo "netns.sh: no command given (see --help)" >&2; exit 2; }
[[ "$hosts" =~ ^[0-9]+$ ]] && [ "$hosts" -ge 1 ] && [ "$hosts" -le 32 ] ||
    { echo "netns.sh: --hosts must be 1..32" >&2; exit 2; }
[[ "$nets" =~ ^[1-4]$ ]] || { echo "netns.sh: --nets must be 1..4" >&2; exit 2; }
[ $# -eq 1 ] || [ $# -eq "$hosts" ] ||
    { echo "netns.sh: give one command for all hosts or exactly $hosts commands, got $#" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "netns.sh: needs root for ip netns (run as root)" >&2; exit 2; }
command -v ip >/dev/null || { echo "netns.sh: needs iproute2 (apt-get install iproute2)" >&2; exit 2; }

cmds=("$@")
tag="tf$$"                 # namespace names: tf<pid>s (switch), tf<pid>h<i> (hosts)
sw="${tag}s"
work=$(mktemp -d /tmp/tfab-netns.XXXXXX)
pids=()

cleanup() {
    for p in "${pids[@]:-}"; do [ -n "$p" ] && kill -KILL -- "-$p" 2>/dev/null || true; done
    for ((i = 0; i < hosts; i++)); do ip netns del "${tag}h$i" 2>/dev/null || true; done
    for ((k = 1; k < nets; k++)); do for ((i = 0; i < hosts; i++)); do
        ip link del "${tag}n${k}v$i" 2>/dev/null || true; done; done
    ip netns del "$sw" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ip netns add "$sw"
ip -n "$sw" link add br0 type bridge
ip -n "$sw" link set br0 up
peers=""
for ((i = 0; i < hosts; i++)); do peers+="${peers:+ }10.98.0.$((i + 1))"; done
for ((i = 0; i < hosts; i++)); do
    ns="${tag}h$i"
    ip netns add "$ns"
    ip link add "${tag}v$i" mtu "$mtu" type veth peer name eth0 mtu "$mtu" netns "$ns"
    ip link set "${tag}v$i" netns "$sw"
    ip -n "$sw" link set "${tag}v$i" master br0 up
    ip -n "$ns" addr add "10.98.0.$((i + 1))/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" link set lo up
    for ((k = 1; k < nets; k++)); do
        [ "$i" -eq 0 ] && { ip -n "$sw" link add "br$k" type bridge; ip -n "$sw" link set "br$k" up; }
        ip link add "${tag}n${k}v$i" mtu "$mtu" type veth peer name "eth$k" mtu "$mtu" netns "$ns"
        ip link set "${tag}n${k}v$i" netns "$sw"
        ip -n "$sw" link set "${tag}n${k}v$i" master "br$k" up
        ip -n "$ns" addr add "10.98.$k.$((i + 1))/24" dev "eth$k"
        ip -n "$ns" link set "eth$k" up
    done
    if [ "$delay" != 0 ]; then
        opts=(delay "${delay}ms")
        [ "$rate" != 0 ] && opts+=(rate "${rate}mbit")
        ip netns exec "$ns" tc qdisc add dev eth0 root netem "${opts[@]}" 2>/dev/null ||
            { echo "netns.sh: --delay needs the netem qdisc (sch_netem), which this kernel lacks" >&2; exit 2; }
    elif [ "$rate" != 0 ]; then
        ip netns exec "$ns" tc qdisc add dev eth0 root tbf rate "${rate}mbit" burst 64kbit latency 400ms
    fi
done

start=$(date +%s)
for ((i = 0; i < hosts; i++)); do
    cmd=${cmds[0]}
    [ ${#cmds[@]} -gt 1 ] && cmd=${cmds[$i]}
    # setsid: each host's command gets its own process group, so a timeout kills all of it
    for ((k = 1; k < 4; k++)); do
        if [ "$k" -lt "$nets" ]; then export "TFAB_NET_IP$k=10.98.$k.$((i + 1))"; else unset "TFAB_NET_IP$k"; fi
    done
    TFAB_NET_HOST=$i TFAB_NET_HOSTS=$hosts TFAB_NET_IP="10.98.0.$((i + 1))" TFAB_NET_IFACE=eth0 \
    TFAB_NET_PEERS="$peers" setsid ip netns exec "${tag}h$i" bash -c "$cmd" \
        >"$work/out$i" 2>&1 </dev/null &
    pids[$i]=$!
done

# Wait for every host, or for the deadline.
rcs=() timed_out=()
for ((i = 0; i < hosts; i++)); do
    while kill -0 "${pids[$i]}" 2>/dev/null && [ $(($(date +%s) - start)) -lt "$timeout" ]; do
        sleep 0.1
    done
    if kill -0 "${pids[$i]}" 2>/dev/null; then
        timed_out+=("$i")
        rcs[$i]=124
    else
        set +e; wait "${pids[$i]}"; rcs[$i]=$?; set -e
        pids[$i]=""
    fi
done

status=0
for ((i = 0; i < hosts; i++)); do
    echo "=== host $i (10.98.0.$((i + 1))) exit=${rcs[$i]} ==="
    cat "$work/out$i"
    [ "${rcs[$i]}" -eq 0 ] || status=1
done
if [ ${#timed_out[@]} -gt 0 ]; then
    echo "netns.sh: timed out after ${timeout}s; still running on host(s): ${timed_out[*]}" >&2
    exit 124
fi
exit $status
