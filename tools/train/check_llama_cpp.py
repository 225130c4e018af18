#!/usr/bin/env python3
"""check_llama_cpp.py - checks models/tfab-tiny-f16.gguf against the llama.cpp peer build.

  python3 tools/train/check_llama_cpp.py [BIN_DIR]     (BIN_DIR: default `tools/llama_cpp.sh path`)

1. Tokenization: llama-tokenize's ids (with BOS) for every text in tfab-tiny.ref.json "tokenizer_cases"
   must equal the ids of the HF tokenizer the model was trained with (recorded there).
2. Generation: llama-simple's greedy continuation of the reference prompt is printed next to
   PyTorch's (greedy_64_text); they are expected to agree (f16 weights both ways), at least
   over the first tokens.
3. test-tokenizer-0 on models/tfab-tiny-f16.gguf (+ .inp/.out vectors, no BOS), if built.
4. Logits: tools/train/llama_logits.c, compiled against the build's static libraries, prints
   llama.cpp's last-position logits for the reference tokens; they must be within 2e-2 of
   the PyTorch float32 "logits_last" (seen: max 0.0065).
Exit status 0 when all tokenizations match and the greedy texts agree over their first 120
characters (or all of PyTorch's); 1 otherwise.
"""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODEL = os.path.join(ROOT, "models", "tfab-tiny-f16.gguf")
REF = os.path.join(ROOT, "models", "tfab-tiny.ref.json")


def run(cmd):
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout


def logits_diff(bindir, ref):
    """Builds llama_logits (once, into the build dir) and returns the max abs logit difference;
    None when the static libraries or the source tree are not found."""
    build = os.path.dirname(bindir)
    src = None
    try:
        for line in open(os.path.join(build, "CMakeCache.txt")):
            if line.startswith("CMAKE_HOME_DIRECTORY:"):
                src = line.split("=", 1)[1].strip()
    except OSError:
        return None
    libs = [os.path.join(build, p) for p in ("src/libllama.a", "ggml/src/libggml.a",
                                             "ggml/src/libggml-cpu.a", "ggml/src/libggml-base.a")]
    if not src or not all(map(os.path.exists, libs)):
        return None
    exe = os.path.join(build, "tfab-llama-logits")
    c_src = os.path.join(ROOT, "tools", "train", "llama_logits.c")
    if not os.path.exists(exe) or os.path.getmtime(exe) < os.path.getmtime(c_src):
        obj = exe + ".o"
        run(["cc", "-O1", "-c", c_src, "-o", obj, "-I", os.path.join(src, "include"),
             "-I", os.path.join(src, "ggml", "include")])
        run(["c++", obj, "-o", exe] + libs + ["-fopenmp", "-lpthread", "-ldl", "-lm"])
    out = run([exe, MODEL] + [str(t) for t in ref["tokens"]])
    got = [float(x) for x in out.split()]
    want = ref["logits_last"]
    if len(got) != len(want):
        return float("inf")
    return max(abs(a - b) for a, b in zip(got, want))


def main():
    if len(sys.argv) > 1:
        bindir = sys.argv[1]
    else:
        bindir = run([os.path.join(ROOT, "tools", "llama_cpp.sh"), "path"]).strip().splitlines()[-1]
    ref = json.load(open(REF))
    ok = True
    for case in ref["tokenizer_cases"]:
        if not case["text"]:
            continue  # llama-tokenize refuses an empty prompt (test-tokenizer-0 covers it)
        out = run([os.path.join(bindir, "llama-tokenize"), "-m", MODEL, "-p", case["text"],
                   "--ids", "--log-disable"])
        ids = json.loads(out.strip().splitlines()[-1])
        same = ids == case["ids"]
        ok &= same
        print(f"tokenize {'OK  ' if same else 'DIFF'} {case['text']!r}: llama.cpp {ids}"
              + ("" if same else f" vs HF {case['ids']}"))
    t0 = os.path.join(bindir, "test-tokenizer-0")
    if os.path.exists(t0):
        r = subprocess.run([t0, MODEL], capture_output=True, text=True)
        passed = r.returncode == 0 and "Tests passed" in r.stdout + r.stderr
        n_cases = len(ref["tokenizer_cases"])
        print(f"test-tokenizer-0: {'passed' if passed else 'FAILED'} ({n_cases} vectors in {MODEL}.inp/.out)")
        ok &= passed
    diff = logits_diff(bindir, ref)
    if diff is not None:
        print(f"logits: max |llama.cpp - PyTorch f32| = {diff:.4g} over {len(ref['logits_last'])} logits")
        ok &= diff < 2e-2
    out = run([os.path.join(bindir, "llama-simple"), "-m", MODEL, "-n", "64", ref["prompt"]])
    text = out.split(ref["prompt"], 1)[-1].rstrip("\n")
    want = ref["greedy_64_text"]
    n = 0
    while n < min(len(text), len(want)) and text[n] == want[n]:
        n += 1
    print(f"llama.cpp greedy: {ref['prompt']}{text}")
    print(f"PyTorch   greedy: {ref['prompt']}{want}")
    print(f"common prefix: {n} of {len(want)} characters")
    ok &= n >= min(len(want), 120)
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
