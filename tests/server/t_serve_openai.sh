#!/usr/bin/env bash
# t_serve_openai.sh - the official `openai` npm package (installed once into the build tree,
# pinned to major 4) talks to tfab serve: chat and completions, whole and streamed, equal to
# `tfab run --temp 0`; an unknown model raises its NotFoundError.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
command -v node >/dev/null || fail "node is missing (scripts/setup.sh deps installs it)"
nm=$TFAB_BUILD/npm-openai
if [ ! -f "$nm/node_modules/openai/package.json" ]; then
    mkdir -p "$nm"
    (cd "$nm" && npm install --no-audit --no-fund --loglevel=error openai@4 >/dev/null 2>"$work/npm.log") ||
        fail "npm install openai@4 failed: $(cat "$work/npm.log")"
fi
prompt="Once upon a time"
ref=$("$tfab" run -n 16 --temp 0 "$prompt" 2>/dev/null; printf x)
ref=${ref%$'\nx'}
start_server
node "$src/tests/server/openai_client.mjs" "$nm/node_modules" "http://127.0.0.1:$port/v1" "$prompt" \
    "${ref#"$prompt"}" 16 || fail "the openai client failed"
stop_server
echo "$name: PASS ($(node -e "console.log('openai ' + require('$nm/node_modules/openai/package.json').version)"))"
