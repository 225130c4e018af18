#!/usr/bin/env bash
# t_serve_dashboard.sh - the dashboard at / rendered by headless Chromium (Debian's chromium):
# after its script ran, the page shows the topology file's nodes and links, one active stream
# (a client holding a paused stream), the stream limit, tokens generated and tokens/s.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
chrome=$(command -v chromium || command -v chromium-browser || true)
[ -n "$chrome" ] || fail "chromium is missing (scripts/setup.sh deps installs it)"
start_server --topology "$src/config/topology.example.yaml" --stream-limit-min 7 --stream-limit-max 7 \
    --ack-timeout-ms 60000 --credits 2 --send-buffer 4096
url=http://127.0.0.1:$port
n=$(curl -sf "$url/v1/completions" -d '{"model":"tfab-tiny-f16","prompt":"Once upon a time","max_tokens":24,"temperature":0}' |
    $py -c 'import json,sys; print(json.load(sys.stdin)["usage"]["completion_tokens"])')
[ "$n" = 24 ] || fail "warm-up completion gave $n tokens"
$py "$src/tests/server/client.py" stall 127.0.0.1 "$port" "$work/drain" >/dev/null &
holder=$!
wait_metric tfab_active_streams 1
dom=$(timeout 90 "$chrome" --headless --no-sandbox --disable-gpu --user-data-dir="$work/chrome" \
      --virtual-time-budget=3000 --dump-dom "$url/" 2>"$work/chrome.log") || fail "chromium failed: $(tail -5 "$work/chrome.log")"
touch "$work/drain"; wait "$holder" 2>/dev/null || true
echo "$dom" >"$work/dom.html"
has() { grep -qF -- "$1" "$work/dom.html" || fail "the page does not show $2: $(grep -F "id=" "$work/dom.html" | head -c 1500)"; }
has '<div class="big" id="active">1</div>' "1 active stream"
has '<div class="big" id="limit">7</div>' "the stream limit 7"
grep -Eq '<div class="big" id="tps">[0-9]+\.[0-9]</div>' "$work/dom.html" || fail "no tokens/s figure"
total=$(sed -n 's|.*<div class="big" id="total">\([0-9]*\)</div>.*|\1|p' "$work/dom.html")
[ -n "$total" ] && [ "$total" -ge 24 ] || fail "tokens generated shows '$total'"
has '<ul id="nodes"><li>node0</li><li>node1</li><li>node2</li></ul>' "the three nodes"
has '<tr><td>node0</td><td>ib0</td><td>verbs</td><td>10.10.0.1</td><td>0</td></tr>' "node0's ib0 link"
has '<tr><td>node2</td><td>eth0</td><td>tcp</td><td>192.168.1.12:7400</td><td>0</td></tr>' "node2's eth0 link"
[ "$(grep -o '<tr><td>node' "$work/dom.html" | wc -l)" = 6 ] || fail "not 6 link rows"
has '<ul id="models"><li>tfab-tiny-f16</li></ul>' "the loaded model"
grep -q '<p id="status">updated 20' "$work/dom.html" || fail "the page never updated"
stop_server
echo "$name: PASS"
