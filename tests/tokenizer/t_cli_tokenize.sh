#!/usr/bin/env bash
# t_cli_tokenize.sh - `tfab tokenize` / `tfab detokenize` on the small GGUF vocabularies of the
# fuzz seeds (a byte-level BPE with chatml tokens, a SentencePiece vocab): exact ids and text.
set -euo pipefail
: "${TFAB_BUILD:?}" "${TFAB_SOURCE:?}"
tfab=$TFAB_BUILD/tfab
seeds=$TFAB_SOURCE/tests/fuzz/corpus/tokenizer
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
tail -c +3 "$seeds/gguf_bpe" >"$tmp/bpe.gguf" # the seeds carry a 2-byte mode prefix
tail -c +3 "$seeds/gguf_spm" >"$tmp/spm.gguf"
fail=0
check() { # name, expected, command...
    local name=$1 want=$2 got
    shift 2
    if got=$("$@" 2>&1) && [[ $got == "$want" ]]; then
        echo "ok   $name"
    else
        echo "FAIL $name: got '$got', want '$want'"
        fail=$((fail + 1))
    fi
}
# bpe.gguf: 0..255 bytes, 256 he, 257 ll, 258 hell, 259 hello, 260 Ġw, 261 <|im_start|> (bos),
# 262 <|im_end|> (eos); add_bos_token true
check bpe-tokenize "261 259 260 111 114 108 100" "$tfab" tokenize --model "$tmp/bpe.gguf" "hello world"
check bpe-no-bos "259 260" "$tfab" tokenize --model "$tmp/bpe.gguf" --no-bos "hello w"
check bpe-special "261 262 259" "$tfab" tokenize --model "$tmp/bpe.gguf" --parse-special "<|im_end|>hello"
check bpe-stdin "261 258 10" bash -c "printf 'hell\n' | '$tfab' tokenize --model '$tmp/bpe.gguf' -"
check bpe-detok "hello world" "$tfab" detokenize --model "$tmp/bpe.gguf" 261 259 260 111 114 108 100
check bpe-detok-special "<|im_start|>hello" "$tfab" detokenize --model "$tmp/bpe.gguf" --special 261 259
# spm.gguf: <unk> <s> </s>, <0x20> <0x41> <0xE2> <0xFF>, ▁ (-1), a (-2), b (-3), ▁a (-4), ab (-5)
check spm-tokenize "1 10 11 7 4" "$tfab" tokenize --model "$tmp/spm.gguf" "aab A"
check spm-pieces "$(printf "1:'<s>'\n10:' a'")" "$tfab" tokenize --model "$tmp/spm.gguf" --pieces "a"
check spm-detok "aab A" "$tfab" detokenize --model "$tmp/spm.gguf" 1 10 11 7 4
# errors
if "$tfab" tokenize --model "$tmp/missing.gguf" "x" 2>/dev/null; then
    echo "FAIL missing model accepted"; fail=$((fail + 1))
else
    echo "ok   missing-model"
fi
if "$tfab" detokenize --model "$tmp/bpe.gguf" 99999 2>/dev/null; then
    echo "FAIL out-of-range id accepted"; fail=$((fail + 1))
else
    echo "ok   bad-id"
fi
echo "$((11 - fail)) passed, $fail failed"
[[ $fail -eq 0 ]]
