#!/usr/bin/env bash
# t_serve_load.sh - tfab serve under pressure: twice the stream limit of concurrent clients gets
# 503 + Retry-After for the excess and no crash; a client hanging up mid-stream (or mid-answer)
# cancels its generation and frees its slot; a client that stops reading is paused, then
# canceled as a slow consumer after the ack timeout; the registry ends empty every time.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
limit=4
start_server --stream-limit-min $limit --stream-limit-max $limit --credits 4 --ack-timeout-ms 600 \
    --send-buffer 4096
url=http://127.0.0.1:$port

# ---- 2x the limit at once
n_tok=120; [ $slow = 1 ] && n_tok=30   # still long enough to overlap
body='{"model":"tfab-tiny-f16","prompt":"Once upon a time","max_tokens":'$n_tok',"temperature":0,"stream":true}'
pids=()
for i in $(seq 1 $((2 * limit))); do
    curl -s -N -D "$work/h$i" -o "$work/b$i" -w '%{http_code}' "$url/v1/completions" -d "$body" >"$work/c$i" &
    pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || true; done
n200=0 n503=0
for i in $(seq 1 $((2 * limit))); do
    case $(cat "$work/c$i") in
        200) n200=$((n200 + 1)); [ "$(tail -c 14 "$work/b$i")" = "data: [DONE]" ] || fail "client $i: stream cut: $(tail -c 200 "$work/b$i")" ;;
        503) n503=$((n503 + 1))
             grep -qi '^Retry-After: 1' "$work/h$i" || fail "503 without Retry-After: $(cat "$work/h$i")"
             grep -q '"code":"too_many_streams"' "$work/b$i" || fail "503 body: $(cat "$work/b$i")" ;;
        *) fail "client $i got HTTP $(cat "$work/c$i")" ;;
    esac
done
[ $n503 -ge 1 ] && [ $n200 -ge $limit ] || fail "$n200 x 200 and $n503 x 503 for $((2 * limit)) clients at limit $limit"
[ "$(metric tfab_rejections_total)" = $n503 ] || fail "rejections metric $(metric tfab_rejections_total), saw $n503"
wait_metric tfab_active_streams 0
echo "$name: $n200 served, $n503 refused with 503"

# ---- hang up mid-stream: canceled at once, slot freed
$py "$src/tests/server/client.py" disconnect 127.0.0.1 "$port" >/dev/null || fail "disconnect client"
wait_metric 'tfab_cancellations_total{reason="disconnect"}' 1
wait_metric tfab_active_streams 0
wait_metric 'tfab_kv_slots_used{model="tfab-tiny-f16"}' 0
# ... and mid-answer (no streaming): the client hangs up 20 ms into a long generation
$py "$src/tests/server/client.py" hangup 127.0.0.1 "$port" || fail "hangup client"
wait_metric 'tfab_cancellations_total{reason="disconnect"}' 2
wait_metric tfab_active_streams 0
gen=$(metric tfab_generated_tokens_total)

# ---- a reader that stalls: paused at 4 unacknowledged chunks, canceled after 600 ms
$py "$src/tests/server/client.py" stall 127.0.0.1 "$port" "$work/drain" >"$work/stall.out" &
staller=$!
wait_metric 'tfab_cancellations_total{reason="stall"}' 1
touch "$work/drain"
wait $staller || fail "stall client"
[[ "$(cat "$work/stall.out")" == cut* ]] || fail "the stalled stream was not cut: $(cat "$work/stall.out")"
wait_metric tfab_slow_consumers_total 1
wait_metric tfab_active_streams 0
grep -q 'slow consumer: stream [0-9]* (model .tfab-tiny-f16.) took no chunk for 600 ms with 4 unacknowledged; canceled' "$work/server.log" ||
    fail "no slow-consumer line in the log"
[ $(( $(metric tfab_generated_tokens_total) - gen )) -lt 240 ] || fail "the stalled stream ran to its end"

# still serving
curl -sf "$url/v1/completions" -d '{"model":"tfab-tiny-f16","prompt":"hi","max_tokens":2}' >/dev/null || fail "not serving afterwards"
stop_server
echo "$name: PASS"
