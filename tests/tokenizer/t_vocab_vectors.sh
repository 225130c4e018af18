#!/usr/bin/env bash
# t_vocab_vectors.sh - runs tfab's tokenizer on llama.cpp's vocab test vectors
# (models/ggml-vocab-*.gguf with .inp/.out) for every vocabulary tfab supports. The llama.cpp
# tree comes from tools/llama_src.sh, cached under $TFAB_BUILD/llama-cache.
set -euo pipefail
: "${TFAB_BUILD:?}" "${TFAB_SOURCE:?}"
cache=${TFAB_LLAMA_CACHE:-$TFAB_BUILD/llama-cache}
if ! src=$("$TFAB_SOURCE/tools/llama_src.sh" "$cache" | tail -n 1) || [[ ! -d $src/models ]]; then
    echo "FAIL: could not get llama.cpp's source tree (tools/llama_src.sh above says why); the" \
         "tokenizer test vectors need it" >&2
    exit 1
fi
# Supported: SPM (llama-spm, phi-3) and byte-level BPE with these pre-tokenizers.
vocabs=(llama-spm phi-3 llama-bpe qwen2 qwen35 gpt-2 mpt starcoder refact command-r falcon
        deepseek-llm deepseek-coder)
files=()
for v in "${vocabs[@]}"; do
    f=$src/models/ggml-vocab-$v.gguf
    [[ -f $f && -f $f.inp && -f $f.out ]] || { echo "FAIL: $f (or .inp/.out) missing" >&2; exit 1; }
    files+=("$f")
done
t=$src/models/templates
rc=0
"$TFAB_BUILD/tests/vocab_vectors" --chat chatml "$t/Qwen-Qwen2.5-7B-Instruct.jinja" \
    "$t/Qwen-Qwen3-0.6B.jinja" "$t/Qwen-QwQ-32B.jinja" "$t/HuggingFaceTB-SmolLM3-3B.jinja" \
    "$t/NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use.jinja" || rc=1
"$TFAB_BUILD/tests/vocab_vectors" --chat llama3 "$t/meta-llama-Llama-3.1-8B-Instruct.jinja" \
    "$t/meta-llama-Llama-3.2-3B-Instruct.jinja" "$t/meta-llama-Llama-3.3-70B-Instruct.jinja" || rc=1
"$TFAB_BUILD/tests/vocab_vectors" --chat "?" "$t/mistralai-Mistral-Nemo-Instruct-2407.jinja" \
    "$t/Mistral-Small-3.2-24B-Instruct-2506.jinja" "$t/google-gemma-2-2b-it.jinja" || rc=1
"$TFAB_BUILD/tests/vocab_vectors" --pipeline "$src/models" || rc=1
"$TFAB_BUILD/tests/vocab_vectors" "${files[@]}" || rc=1
exit $rc
