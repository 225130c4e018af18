#!/usr/bin/env bash
# t_serve_api.sh - tfab serve with curl over TCP and the Unix socket: greedy completions, chat and
# Ollama answers (whole and streamed) equal `tfab run --temp 0` of the same prompt; SSE ends with
# [DONE] and usage counts; stop strings, seeds, /v1/models, /api/tags, /metrics; malformed JSON,
# wrong types, missing fields, unknown model or path, wrong method, huge bodies get exact errors.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
json() { $py -c "import json,sys; d=json.load(sys.stdin); print($1, end='')"; }

prompt="Once upon a time"
N=24; [ $slow = 1 ] && N=8
ref=$("$tfab" run -n $N --temp 0 "$prompt" 2>/dev/null; printf x)
ref=${ref%$'\nx'}
want=${ref#"$prompt"}
[ -n "$want" ] || fail "tfab run gave no reference text"

start_server --max-models 2
url=http://127.0.0.1:$port
body='{"model":"tfab-tiny-f16","prompt":"'"$prompt"'","max_tokens":'$N',"temperature":0}'

# ---- OpenAI, whole answers, TCP and Unix socket
out=$(curl -sf "$url/v1/completions" -d "$body")
[ "$(json 'd["choices"][0]["text"]' <<<"$out")" = "$want" ] || fail "completion text: $out (want '$want')"
[ "$(json 'd["usage"]["prompt_tokens"], d["usage"]["completion_tokens"], d["usage"]["total_tokens"]' <<<"$out")" = "5 $N $((N + 5))" ] ||
    fail "completion usage: $out"
[ "$(json 'd["object"], d["choices"][0]["finish_reason"], d["model"]' <<<"$out")" = "text_completion length tfab-tiny-f16" ] ||
    fail "completion fields: $out"
out=$(curl -sf --unix-socket "$sock" http://tfab/v1/completions -d "$body")
[ "$(json 'd["choices"][0]["text"]' <<<"$out")" = "$want" ] || fail "completion over the Unix socket: $out"
chat='{"model":"tfab-tiny-f16","messages":[{"role":"user","content":"'"$prompt"'"}],"max_tokens":'$N',"temperature":0'
out=$(curl -sf "$url/v1/chat/completions" -d "$chat}")
[ "$(json 'd["choices"][0]["message"]["content"]' <<<"$out")" = "$want" ] || fail "chat content: $out"
[ "$(json 'd["object"], d["choices"][0]["message"]["role"]' <<<"$out")" = "chat.completion assistant" ] ||
    fail "chat fields: $out"

# ---- OpenAI streaming: deltas add up to the same text, usage in the last chunk, then [DONE]
sse=$(curl -sfN --unix-socket "$sock" http://tfab/v1/chat/completions -d "$chat,\"stream\":true}")
[ "$(tail -n 1 <<<"$sse")" = "data: [DONE]" ] || fail "SSE does not end with [DONE]: $sse"
text=$(grep '^data: {' <<<"$sse" | sed 's/^data: //' |
       $py -c 'import json,sys; print("".join(json.loads(l)["choices"][0]["delta"].get("content","") for l in sys.stdin), end="")')
[ "$text" = "$want" ] || fail "streamed chat text '$text', want '$want'"
first=$(grep '^data: {' <<<"$sse" | sed -n 1p)   # (head would SIGPIPE grep under pipefail)
grep -q '"delta":{"role":"assistant","content":""}' <<<"$first" || fail "first chunk names no role: $first"
grep '^data: {' <<<"$sse" | tail -1 | grep -q '"finish_reason":"length"}\],"usage":{"prompt_tokens":5,"completion_tokens":'$N',"total_tokens":'$((N + 5))'}' ||
    fail "last chunk: $(grep '^data: {' <<<"$sse" | tail -1)"
sse=$(curl -sfN "$url/v1/completions" -d "${body%\}},\"stream\":true}")
text=$(grep '^data: {' <<<"$sse" | sed 's/^data: //' |
       $py -c 'import json,sys; print("".join(json.loads(l)["choices"][0]["text"] for l in sys.stdin), end="")')
[ "$text" = "$want" ] || fail "streamed completion '$text'"

# ---- Ollama: NDJSON stream, whole answers, tags
nd=$(curl -sfN --unix-socket "$sock" http://tfab/api/generate \
     -d '{"model":"tfab-tiny-f16","prompt":"'"$prompt"'","options":{"num_predict":'$N',"temperature":0}}')
text=$($py -c 'import json,sys; print("".join(json.loads(l)["response"] for l in sys.stdin), end="")' <<<"$nd")
[ "$text" = "$want" ] || fail "Ollama generate stream '$text'"
tail -1 <<<"$nd" | grep -q '"done":true,"done_reason":"length","total_duration":[0-9]*,"load_duration":0,"prompt_eval_count":5,' ||
    fail "Ollama last line: $(tail -1 <<<"$nd")"
[ "$(grep -c '"done":false' <<<"$nd")" -ge 1 ] || fail "Ollama stream has no partial line"
out=$(curl -sf "$url/api/chat" -d '{"model":"tfab-tiny-f16:latest","stream":false,"messages":[{"role":"user","content":"'"$prompt"'"}],"options":{"num_predict":'$N',"temperature":0}}')
[ "$(json 'd["message"]["content"], d["done"], d["eval_count"]' <<<"$out")" = "$want True $N" ] || fail "Ollama chat: $out"
out=$(curl -sf "$url/api/tags")
[ "$(json 'd["models"][0]["name"], d["models"][0]["details"]["format"], d["models"][0]["size"]' <<<"$out")" = \
  "tfab-tiny-f16:latest gguf $(stat -c %s "$src/models/tfab-tiny-f16.gguf")" ] || fail "tags: $out"
out=$(curl -sf "$url/v1/models")
[ "$(json 'd["object"], d["data"][0]["id"], d["data"][0]["object"]' <<<"$out")" = "list tfab-tiny-f16 model" ] ||
    fail "models: $out"

# ---- stop strings cut the text before the match; seeds reproduce
stop=$(awk '{print $3}' <<<"$want")   # the third word of the greedy text
out=$(curl -sf "$url/v1/completions" -d "${body%\}},\"stop\":[\"$stop\"]}")
[ "$(json 'd["choices"][0]["text"], d["choices"][0]["finish_reason"]' <<<"$out")" = "${want%%"$stop"*} stop" ] ||
    fail "stop '$stop': $out"
s7='{"model":"tfab-tiny-f16","prompt":"The meaning of life is","max_tokens":'$N',"temperature":1.2,"seed":7}'
a=$(curl -sf "$url/v1/completions" -d "$s7" | json 'd["choices"][0]["text"]')
b=$(curl -sf "$url/v1/completions" -d "$s7" | json 'd["choices"][0]["text"]')
c=$(curl -sf "$url/v1/completions" -d "${s7/\"seed\":7/\"seed\":8}" | json 'd["choices"][0]["text"]')
[ "$a" = "$b" ] || fail "seed 7 twice: '$a' vs '$b'"
[ "$a" != "$c" ] || fail "seeds 7 and 8 gave the same text '$a'"

# ---- errors: status and exact body
expect() { # expect STATUS BODY curl-args...
    local st=$1 want_body=$2; shift 2
    local got
    got=$(curl -s -o "$work/body" -w '%{http_code}' "$@")
    [ "$got" = "$st" ] || fail "$* -> HTTP $got, want $st: $(cat "$work/body")"
    [ "$(cat "$work/body")" = "$want_body" ] || fail "$* -> body $(cat "$work/body"), want $want_body"
}
e() { printf '{"error":{"message":"%s","type":"%s","param":%s,"code":%s}}' "$@"; }
expect 400 "$(e 'the request body is not valid JSON' invalid_request_error null null)" "$url/v1/completions" -d '{"model":'
expect 400 "$(e 'the request body must be a JSON object' invalid_request_error null null)" "$url/v1/chat/completions" -d '[1,2]'
expect 400 "$(e "'model' is required" invalid_request_error '"model"' null)" "$url/v1/completions" -d '{"prompt":"hi"}'
expect 400 "$(e "'prompt' must be a string" invalid_request_error '"prompt"' null)" "$url/v1/completions" -d '{"model":"tfab-tiny-f16","prompt":5}'
expect 400 "$(e "'messages' is required" invalid_request_error '"messages"' null)" "$url/v1/chat/completions" -d '{"model":"tfab-tiny-f16"}'
expect 400 "$(e "'temperature' must be a number" invalid_request_error '"temperature"' null)" "$url/v1/completions" -d '{"model":"tfab-tiny-f16","prompt":"a","temperature":"hot"}'
expect 400 "$(e "'max_tokens' must be an integer" invalid_request_error '"max_tokens"' null)" "$url/v1/completions" -d '{"model":"tfab-tiny-f16","prompt":"a","max_tokens":1.5}'
expect 400 "$(e "'max_tokens' must be from 1 to 1e+07, got 0" invalid_request_error '"max_tokens"' null)" "$url/v1/completions" -d '{"model":"tfab-tiny-f16","prompt":"a","max_tokens":0}'
expect 400 "$(e "'stream' must be a boolean" invalid_request_error '"stream"' null)" "$url/api/generate" -d '{"model":"tfab-tiny-f16","prompt":"a","stream":"yes"}'
expect 400 "$(e 'messages[0].role must be a string' invalid_request_error '"messages"' null)" "$url/v1/chat/completions" -d '{"model":"tfab-tiny-f16","messages":[{"content":"x"}]}'
expect 404 "$(e "The model 'gpt-4' does not exist" invalid_request_error '"model"' '"model_not_found"')" "$url/v1/chat/completions" -d '{"model":"gpt-4","messages":[{"role":"user","content":"x"}]}'
expect 404 "$(e "The model '../etc/passwd' does not exist" invalid_request_error '"model"' '"model_not_found"')" "$url/api/generate" -d '{"model":"../etc/passwd","prompt":"x"}'
expect 404 "$(e 'no such endpoint: GET /v2/nothing' invalid_request_error null '"not_found"')" "$url/v2/nothing"
expect 405 "$(e 'GET is not allowed on /v1/completions (use POST)' invalid_request_error null '"method_not_allowed"')" "$url/v1/completions"
expect 405 "$(e 'POST is not allowed on /health (use GET)' invalid_request_error null '"method_not_allowed"')" "$url/health" -d x
head -c 2000000 /dev/zero | tr '\0' ' ' >"$work/huge"
expect 413 "$(e 'the request body is larger than 1048576 bytes' invalid_request_error null '"request_too_large"')" "$url/v1/completions" --data-binary @"$work/huge"
expect 413 "$(e 'the request body is larger than 1048576 bytes' invalid_request_error null '"request_too_large"')" "$url/v1/completions" -H 'Transfer-Encoding: chunked' --data-binary @"$work/huge"
curl -sf "$url/health" >/dev/null || fail "the server died on bad input"

# ---- metrics after all that
m=$(curl -sf "$url/metrics")
for k in tfab_ttft_seconds_count tfab_inter_token_seconds_count tfab_queue_seconds_count \
         tfab_generated_tokens_total tfab_active_streams tfab_stream_limit tfab_rejections_total \
         'tfab_cancellations_total{reason="disconnect"}' tfab_chunk_pool_reuse_ratio \
         'tfab_kv_slots_used{model="tfab-tiny-f16"}' tfab_tokens_per_second; do
    grep -q "^$k " <<<"$m" || fail "/metrics lacks $k"
done
[ "$(awk '$1=="tfab_generated_tokens_total"{print $2}' <<<"$m")" -ge $((7 * N)) ] || fail "tokens counted: $(grep generated <<<"$m")"
[ "$(awk '$1=="tfab_active_streams"{print $2}' <<<"$m")" = 0 ] || fail "streams left active"
[ "$(awk '$1=="tfab_http_errors_total{class=\"4xx\"}"{print $2}' <<<"$m")" = 17 ] || fail "4xx count: $(grep 4xx <<<"$m")"
awk '$1=="tfab_chunk_pool_reuse_ratio"{exit !($2 > 0)}' <<<"$m" || fail "chunks never reused"
stop_server
echo "$name: PASS"
