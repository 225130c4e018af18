#!/usr/bin/env python3
"""tokenizer_cases.py - tokenizer test vectors for tfab-tiny, computed with the HF tokenizer.

  python3 tools/train/tokenizer_cases.py TOKENIZER_JSON GGUF_PATH [REF_JSON]

Writes GGUF_PATH.inp / GGUF_PATH.out in the layout llama.cpp's test-tokenizer-0 reads (texts
each followed by "\\n__ggml_vocab_test__\\n"; one line of " id id ..." per text, no BOS), so
`test-tokenizer-0 models/tfab-tiny-f16.gguf` checks llama.cpp against the trainer's tokenizer.
With REF_JSON, also stores the cases (ids WITH the BOS that add_bos_token adds) under
"tokenizer_cases" in it. Needs the `tokenizers` package (the GPU machine has it).
The texts are our own, chosen for the GPT-2 pre-tokenizer's corners: whitespace runs, digits,
contractions, punctuation runs, non-ASCII letters, emoji, CR/LF.
"""
import json
import sys

SEP = "\n__ggml_vocab_test__\n"

CASES = [
    "Once upon a time",
    "Hello world! It's 2026, isn't it?",
    "The quick brown fox jumps over the lazy dog.",
    "  leading spaces,\ttabs and\nnew lines\n\n",
    "don't re-run the 123456 tests; they'll pass",
    "Unicode: na\u00efve caf\u00e9, \u2603 and \u65e5\u672c\u8a9e",
    "A fool and his money are soon parted.",
    "",
    " ",
    "  ",
    "    ",
    "\t",
    "\n",
    "\n\n\n",
    " \n \n",
    "a",
    " a",
    "word",
    " word",
    "WORD",
    "7",
    "42",
    "1999",
    "3.14159265",
    "1,000,000 dollars",
    "I'M SURE YOU'LL SEE; WE'VE DONE IT",
    "she's, we're, I've, I'm, you'd",
    "'tis 'twas",
    "Wait... what?!? (really) [yes] {no}",
    "x+=y*2; if (a->b != c) return -1;",
    "e-mail: someone at example dot org",
    "tab\tseparated\tvalues",
    "trailing spaces   ",
    "   leading and trailing   ",
    "CRLF line\r\nnext line\r\n",
    "\u00c4rger \u00fcber \u00d6l und Stra\u00dfe",
    "\u0417\u0434\u0440\u0430\u0432\u0441\u0442\u0432\u0443\u0439, \u043c\u0438\u0440",
    "\u03b1\u03b2\u03b3 \u03b4\u03b5\u03b6",
    "\U0001f600 smile \U0001f431\U0001f436",
    "\u4f60\u597d\uff0c\u4e16\u754c",
    "The meaning of life is",
    "A programmer is a person who passes as an exacting expert.",
]


def compute(tokenizer_json, cases=CASES):
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(tokenizer_json)
    out = []
    for t in cases:
        out.append({"text": t,
                    "ids": tok.encode(t).ids,  # with BOS (post-processor)
                    "ids_no_bos": tok.encode(t, add_special_tokens=False).ids})
    return out


def write_llama_vectors(cases, gguf_path):
    with open(gguf_path + ".inp", "w", encoding="utf-8", newline="") as f:
        for c in cases:
            f.write(c["text"] + SEP)
    with open(gguf_path + ".out", "w", encoding="utf-8", newline="") as f:
        for c in cases:
            f.write("".join(f" {i}" for i in c["ids_no_bos"]) + "\n")


def main():
    if len(sys.argv) not in (3, 4):
        print(__doc__)
        return 2
    cases = compute(sys.argv[1])
    write_llama_vectors(cases, sys.argv[2])
    if len(sys.argv) == 4:
        ref = json.load(open(sys.argv[3]))
        ref["tokenizer_cases"] = [{"text": c["text"], "ids": c["ids"]} for c in cases]
        with open(sys.argv[3], "w") as f:
            json.dump(ref, f, indent=1)
    print(f"{len(cases)} cases -> {sys.argv[2]}.inp/.out")
    return 0


if __name__ == "__main__":
    sys.exit(main())
