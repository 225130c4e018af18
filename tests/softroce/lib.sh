# lib.sh - helpers for commands run inside soft-RoCE bed guests: source "$TFAB_BED_LIB".
# shellcheck shell=bash
#
# Under TCG emulation guests boot several seconds apart and servers take seconds to start
# listening, so a client must never assume its server is up: wait for a signal from the server
# (bed_signal / bed_wait_signal), and/or retry the client (bed_retry).
#
# All functions return non-zero on failure with a message on stderr; none calls exit.
# Safe to source with or without `set -euo pipefail`.

# bed_log MSG...: a line on stderr prefixed with the host index and guest uptime.
bed_log() {
    local up
    read -r up _ < /proc/uptime
    echo "[bed host ${TFAB_BED_HOST:-?} ${up}s] $*" >&2
}

# bed_retry N CMD [ARG...]: run CMD until it exits 0, at most N times, sleeping
# $BED_RETRY_DELAY seconds (default 2) between tries. Returns 0, or CMD's last exit code.
# For clients that fail fast while their server is not up yet (ibv_rc_pingpong, rping, ...).
bed_retry() {
    local n=$1 i rc=1
    shift
    for ((i = 1; i <= n; i++)); do
        "$@" && return 0
        rc=$?
        if ((i < n)); then
            bed_log "try $i/$n of '$*' exited $rc; retrying in ${BED_RETRY_DELAY:-2}s"
            sleep "${BED_RETRY_DELAY:-2}"
        fi
    done
    bed_log "'$*' failed $n times; last exit code $rc"
    return "$rc"
}

# bed_wait_until TIMEOUT CMD [ARG...]: poll CMD (quietly) every 0.2 s until it succeeds or
# TIMEOUT seconds pass (returns 1).
bed_wait_until() {
    local timeout=$1 end
    shift
    end=$((SECONDS + timeout))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < end)) || return 1
        sleep 0.2
    done
}

# bed_signal NAME: tell the other guests that NAME happened (a file in the shared run folder).
bed_signal() {
    : "${TFAB_BED_SYNC:?not inside a bed guest}"
    echo "${TFAB_BED_HOST:-?}" > "$TFAB_BED_SYNC/$1.tmp.$$" && mv "$TFAB_BED_SYNC/$1.tmp.$$" "$TFAB_BED_SYNC/$1"
}

# bed_wait_signal NAME TIMEOUT: wait until some guest did bed_signal NAME.
bed_wait_signal() {
    : "${TFAB_BED_SYNC:?not inside a bed guest}"
    bed_wait_until "$2" test -e "$TFAB_BED_SYNC/$1" ||
        { bed_log "no signal '$1' within $2 s"; return 1; }
}

# bed_wait_tcp_listen PORT TIMEOUT: wait until a local process listens on TCP PORT.
# (Use this on the server's guest, then bed_signal. Probing a server from the client with a
# connect would consume the single connection that e.g. ibv_rc_pingpong accepts.)
bed_wait_tcp_listen() {
    bed_wait_until "$2" _bed_tcp_listening "$1" ||
        { bed_log "nothing listens on TCP port $1 after $2 s"; return 1; }
}
_bed_tcp_listening() { [[ -n $(ss -Htln "sport = :$1") ]]; }

# bed_wait_tcp IP PORT TIMEOUT: wait until a TCP connect to IP:PORT succeeds. It does open (and
# close) a connection: only for servers that accept more than one.
bed_wait_tcp() {
    bed_wait_until "$3" timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$1" "$2" ||
        { bed_log "no TCP connect to $1:$2 within $3 s"; return 1; }
}

# bed_wait_cm_listen TIMEOUT [PORT]: wait until an rdma_cm id listens locally (e.g. rping -s,
# ib_write_bw -R server), optionally on PORT.
bed_wait_cm_listen() {
    bed_wait_until "$1" _bed_cm_listening "${2:-}" ||
        { bed_log "no rdma_cm LISTEN${2:+ on port $2} after $1 s"; return 1; }
}
_bed_cm_listening() {
    local out
    out=$(rdma res show cm_id 2>/dev/null) || return 1
    if [[ -n $1 ]]; then
        grep -q "state LISTEN.*src-addr [^ ]*:$1\b" <<<"$out"
    else
        grep -q 'state LISTEN' <<<"$out"
    fi
}

# bed_wait_peers TIMEOUT: wait until every peer answers a TCP SYN or ARP, i.e. its eth0 is up.
# Uses ARP through `ip neigh` so it needs no ping binary.
bed_wait_peers() {
    local p
    for p in ${TFAB_BED_PEERS:?not inside a bed guest}; do
        [[ $p == "${TFAB_BED_IP:-}" ]] && continue
        bed_wait_until "$1" _bed_peer_up "$p" || { bed_log "peer $p not reachable after $1 s"; return 1; }
    done
}
_bed_peer_up() {
    # A connect to a closed port gets RST once the peer's stack is up; any answer will do.
    timeout 1 bash -c 'exec 3<>"/dev/tcp/$0/9"' "$1" 2>/dev/null
    ip neigh show "$1" | grep -qE 'REACHABLE|STALE|DELAY|PERMANENT'
}

# bed_gid_hex IP: the GID string sysfs shows for the IPv4-mapped address of IP.
bed_gid_hex() {
    local a b c d
    IFS=. read -r a b c d <<<"$1"
    printf '0000:0000:0000:0000:0000:ffff:%02x%02x:%02x%02x\n' "$a" "$b" "$c" "$d"
}

# bed_gid_index [DEV [PORT [IP]]]: print the GID index of the RoCE v2 GID that maps IP
# (default: this guest's $TFAB_BED_IP) on DEV (rxe0) port PORT (1).
bed_gid_index() {
    local dev=${1:-rxe0} port=${2:-1} ip=${3:-${TFAB_BED_IP:-}} want f idx type
    [[ -n $ip ]] || { bed_log "bed_gid_index: no IP"; return 1; }
    want=$(bed_gid_hex "$ip")
    for f in /sys/class/infiniband/"$dev"/ports/"$port"/gids/*; do
        [[ $(cat "$f" 2>/dev/null) == "$want" ]] || continue
        idx=${f##*/}
        type=$(cat "/sys/class/infiniband/$dev/ports/$port/gid_attrs/types/$idx" 2>/dev/null) || continue
        if [[ $type == "RoCE v2" ]]; then echo "$idx"; return 0; fi
    done
    bed_log "no RoCE v2 GID for $ip on $dev port $port"
    return 1
}
