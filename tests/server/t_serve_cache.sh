#!/usr/bin/env bash
# t_serve_cache.sh - the model cache and the adaptive stream limit: models named by file stem
# from --models-dir load on demand (progress logged), at most --max-models stay loaded and the
# least recently used idle one is evicted; the limit rises by 5 under load with a fast first
# token (not with a slow one) and falls by 2 when idle, within its bounds.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
mkdir "$work/models"
for m in alpha beta gamma; do ln -s "$src/models/tfab-tiny-f16.gguf" "$work/models/$m.gguf"; done
touch "$work/models/not-a-model.txt"
start_server --models-dir "$work/models" --max-models 2 --limit-interval-ms 400 \
    --stream-limit-min 2 --stream-limit-initial 2 --stream-limit-max 9 --stream-limit-up 5 --stream-limit-down 2 \
    --send-buffer 4096 --credits 2 --ack-timeout-ms 60000 --ttft-target-ms 30000   # holders: paused streams; sanitizer builds have slow TTFTs
url=http://127.0.0.1:$port
ids=$(curl -sf "$url/v1/models" | $py -c 'import json,sys; print(" ".join(m["id"] for m in json.load(sys.stdin)["data"]))')
[ "$ids" = "tfab-tiny-f16 alpha beta gamma" ] || fail "models listed: $ids"
ask() { curl -sf "$url/v1/completions" -d '{"model":"'"$1"'","prompt":"Once upon a time","max_tokens":4,"temperature":0}' |
        $py -c 'import json,sys; d=json.load(sys.stdin); print(d["model"], d["choices"][0]["text"])'; }
want=$(ask tfab-tiny-f16)
[ "$(ask alpha)" = "alpha ${want#tfab-tiny-f16 }" ] || fail "alpha answers differently"
[ "$(metric tfab_models_loaded)" = 2 ] || fail "2 models should be loaded"
ask beta >/dev/null   # evicts tfab-tiny-f16, the least recently used
[ "$(metric tfab_models_loaded)" = 2 ] || fail "more than --max-models loaded"
grep -q "model cache full (2): evicting 'tfab-tiny-f16', least recently used" "$work/server.log" || fail "no eviction of the LRU model"
ask alpha >/dev/null  # alpha becomes the most recent
ask gamma >/dev/null  # so beta goes
grep -q "evicting 'beta', least recently used" "$work/server.log" || fail "beta was not the one evicted"
grep -q "loading model 'gamma' from $work/models/gamma.gguf: mapping weights" "$work/server.log" || fail "no load progress"
grep -q "model 'gamma' ready in" "$work/server.log" || fail "no ready line"
loaded=$(curl -sf "$url/v1/models" | $py -c 'import json,sys; print(" ".join(m["id"] for m in json.load(sys.stdin)["data"] if m["loaded"]))')
[ "$loaded" = "alpha gamma" ] || fail "loaded: $loaded"
[ "$(ask tfab-tiny-f16)" = "$want" ] || fail "the default model reloads with the same answer"
code=$(curl -s -o /dev/null -w '%{http_code}' "$url/v1/completions" -d '{"model":"not-a-model","prompt":"x"}')
[ "$code" = 404 ] || fail "a non-.gguf file was served as a model ($code)"

# ---- adaptive limit: 2 long streams keep utilisation at 100 %: 2 -> 7; 5 more: up to 9, the
# ceiling
[ "$(metric tfab_stream_limit)" = 2 ] || fail "initial limit $(metric tfab_stream_limit)"
hold() { $py "$src/tests/server/client.py" stall 127.0.0.1 "$port" "$work/drain" >/dev/null & }
hold; h1=$!; hold; h2=$!
wait_log "stream limit 2 -> 7 (utilisation "   # (2 of 7 then is under 30 %: it may fall to 5)
hold; h3=$!; hold; h4=$!; hold; h5=$!; hold; h6=$!; hold; h7=$!
wait_metric tfab_stream_limit 9   # 7 of 9 (or 5 of 5, then 9): stable there
kill $h1 $h2 $h3 $h4 $h5 $h6 $h7 2>/dev/null   # hang up: canceled at once
wait $h1 $h2 $h3 $h4 $h5 $h6 $h7 2>/dev/null || true
# idle: down by 2 per interval to the floor
wait_metric tfab_stream_limit 2
grep -q "stream limit 9 -> 7 (utilisation [0-9]*%" "$work/server.log" || fail "no log of the fall"
stop_server

# ---- a slow first token holds the limit: the same load with a 1 ms TTFT target never raises it
start_server --limit-interval-ms 300 --stream-limit-min 2 --stream-limit-initial 2 --stream-limit-max 9 \
    --send-buffer 4096 --credits 2 --ack-timeout-ms 60000 --ttft-target-ms 1
hold; h1=$!; hold; h2=$!
wait_metric tfab_active_streams 2
sleep 1.5   # five evaluations at 100 % utilisation
[ "$(metric tfab_stream_limit)" = 2 ] || fail "the limit rose with a mean TTFT over the target"
kill $h1 $h2 2>/dev/null; wait $h1 $h2 2>/dev/null || true
stop_server
echo "$name: PASS"
