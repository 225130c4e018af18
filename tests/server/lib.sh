# lib.sh - shared by the tfab serve tests: start a server on a free TCP port and a Unix socket in
# a temporary directory, query its metrics, stop it (checking it exits cleanly).
tfab=${TFAB_BUILD:?}/tfab
src=${TFAB_SOURCE:?}
py=/usr/bin/python3   # the system python: pyenv shims cost ~0.5 s per call
name=${0##*/}
name=${name%.sh}
fail() { echo "$name: FAIL: $*" >&2; [ -n "${work:-}" ] && [ -f "$work/server.log" ] && tail -20 "$work/server.log" >&2; exit 1; }
work=$(mktemp -d /tmp/tfab-serve.XXXXXX)
srv_pid=""
cleanup() {
    [ -n "$srv_pid" ] && kill "$srv_pid" 2>/dev/null && wait "$srv_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

# start_server [flags...]: sets port, sock, srv_pid; waits for /health.
start_server() {
    sock=$work/serve.sock
    "$tfab" --log-level info serve --env test --listen 127.0.0.1:0 --socket "$sock" "$@" \
        >"$work/server.log" 2>&1 &
    srv_pid=$!
    for _ in $(seq 1 200); do
        port=$(sed -n 's|^tfab serve: listening on http://[^:]*:\([0-9]*\)$|\1|p' "$work/server.log")
        [ -n "$port" ] && curl -sf "http://127.0.0.1:$port/health" >/dev/null && return 0
        kill -0 "$srv_pid" 2>/dev/null || fail "the server exited: $(cat "$work/server.log")"
        sleep 0.05
    done
    fail "the server did not answer /health"
}

# stop_server: SIGTERM, and it must exit 0 within 10 s
stop_server() {
    kill -TERM "$srv_pid"
    for _ in $(seq 1 200); do
        kill -0 "$srv_pid" 2>/dev/null || break
        sleep 0.05
    done
    kill -0 "$srv_pid" 2>/dev/null && fail "the server did not stop on SIGTERM"
    wait "$srv_pid" || fail "the server exited with $? on SIGTERM"
    srv_pid=""
}

# metric NAME_WITH_LABELS: its value from /metrics
metric() {
    curl -s "http://127.0.0.1:$port/metrics" | awk -v k="$1" '$1 == k { print $2 }'
}

# sanitizer builds (-O0 + ASan) decode ~10x slower: tests ask for fewer tokens there
slow=0
grep -q '^TFAB_SANITIZE_ADDRESS:BOOL=ON' "$TFAB_BUILD/CMakeCache.txt" 2>/dev/null && slow=1

# wait_metric NAME VALUE: poll until /metrics shows it (30 s of wall time, however slow the box)
wait_metric() {
    local end=$((SECONDS + 30))
    while [ $SECONDS -lt $end ]; do
        [ "$(metric "$1")" = "$2" ] && return 0
        sleep 0.05
    done
    fail "metric $1 is '$(metric "$1")', expected $2"
}

# wait_log TEXT: poll until the server log has the fixed string (30 s)
wait_log() {
    local end=$((SECONDS + 30))
    while [ $SECONDS -lt $end ]; do
        grep -qF -- "$1" "$work/server.log" && return 0
        sleep 0.05
    done
    fail "the server log never said '$1'"
}
