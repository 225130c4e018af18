"""t_model_tiny.py - tfab on the committed tfab-tiny model (models/tfab-tiny-f16.gguf, written by
the training tools) against its PyTorch float32 reference (models/tfab-tiny.ref.json): last-
position logits, argmax of every position, and the 64-token greedy continuation reproduced
from one prefill. Usage: t_model_tiny.py TFAB_BUILD TFAB_SOURCE"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

build, source = sys.argv[1], sys.argv[2]
model = os.path.join(source, "models", "tfab-tiny-f16.gguf")
ref = json.load(open(os.path.join(source, "models", "tfab-tiny.ref.json")))
vocab = ref["config"]["vocab_size"]
toks = ref["tokens"] + ref["greedy_64"][:-1]
out = os.path.join(tempfile.mkdtemp(prefix="tfab_tiny_"), "logits.bin")
r = subprocess.run([os.path.join(build, "tfab"), "logits", "--model", model, "--tokens",
                    ",".join(map(str, toks)), "--out", out, "--threads", "2"],
                   capture_output=True, text=True)
if r.returncode != 0:
    sys.exit("FAIL: tfab logits: %s" % r.stderr)
logits = np.fromfile(out, dtype="<f4").reshape(len(toks), vocab)
n = len(ref["tokens"])
fail = []
# the f32 reference and tfab (same f16 weights, f32 math, other summation order), logits ~20
err = float(np.abs(logits[n - 1] - np.array(ref["logits_last"], dtype=np.float32)).max())
print("last-position logits: max abs err %.3g (tolerance 1e-4)" % err)
if err > 1e-4:
    fail.append("logits_last")
am = logits[:n].argmax(-1).tolist()
print("argmax per position %s, reference %s" % (am, ref["argmax_per_position"]))
if am != ref["argmax_per_position"]:
    fail.append("argmax_per_position")
greedy = logits[n - 1:].argmax(-1).tolist()
same = sum(a == b for a, b in zip(greedy, ref["greedy_64"]))
print("greedy continuation: %d of %d tokens equal the reference" % (same, len(ref["greedy_64"])))
if greedy != ref["greedy_64"]:
    fail.append("greedy_64")
if fail:
    sys.exit("FAIL: " + ", ".join(fail))
# KV cache: decode step by step, chunked prefill and a prefill on a compute stream equal prefill
r = subprocess.run([os.path.join(build, "tests", "model_decode"), model, "40"], capture_output=True,
                   text=True)
print("tfab-tiny decode==prefill:", r.stdout.strip() or r.stderr.strip())
if r.returncode != 0:
    sys.exit("FAIL: decode/prefill mismatch")
print("tfab-tiny matches its PyTorch reference")
