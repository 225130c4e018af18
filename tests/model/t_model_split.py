"""t_model_split.py - the batch API, pipeline stages and tensor parallelism (tests/model_split)
bit-identical to one whole model, on random-weight models in f32, f16 and q8_0 (llama with
grouped-query attention, qwen2 with biases and tied embeddings, an HF safetensors directory)
and on the committed tfab-tiny model; a stage loads only its own layers (a file missing a later
layer's tensor still serves the earlier stage). Usage: t_model_split.py TFAB_BUILD TFAB_SOURCE"""
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gguf_writer as gw  # noqa: E402
import ref_llama as R  # noqa: E402

BUILD, SOURCE = sys.argv[1], sys.argv[2]
SPLIT = os.path.join(BUILD, "tests", "model_split")
TFAB = os.path.join(BUILD, "tfab")
TMP = tempfile.mkdtemp(prefix="tfab_model_split_")
failures = []


def run(name, args, want_rc=0, want_err=None):
    r = subprocess.run([SPLIT] + args, capture_output=True, text=True)
    out = (r.stdout + r.stderr).strip()
    ok = r.returncode == want_rc and (want_err is None or want_err in r.stderr)
    print("== %s: %s" % (name, "ok" if ok else "FAIL (rc %d)" % r.returncode))
    if not ok or want_rc == 0:
        print("\n".join("   " + l for l in out.splitlines() if "info" not in l[:40]))
    if not ok:
        failures.append(name)


# n_head_kv 6: tensor parallel over 2 and 3 ranks; n_ff 160 and vocab 101 do not split evenly
# over 3 (and the vocabulary not over 2); every width a multiple of 32 for q8_0
gqa = R.Config("llama", n_vocab=101, n_embd=96, n_layer=3, n_head=12, n_head_kv=6, n_ff=160)
qwen = R.Config("qwen2", n_vocab=101, n_embd=96, n_layer=3, n_head=12, n_head_kv=6, n_ff=160,
                tied=True, rope_theta=1e6)
for name, cfg, seed in [("llama-gqa", gqa, 1), ("qwen2", qwen, 2)]:
    w = R.make_weights(cfg, seed=seed)
    for tname, t in [("f32", gw.GGML_F32), ("f16", gw.GGML_F16), ("q8_0", gw.GGML_Q8_0)]:
        p = os.path.join(TMP, "%s-%s.gguf" % (name, tname))
        R.write_gguf(cfg, w, p, wtype=t)
        run("%s %s" % (name, tname), [p, "2,3"])
    if name == "llama-gqa":
        d = os.path.join(TMP, "hf-" + name)
        os.makedirs(d)
        R.write_hf(cfg, w, d, dtype="BF16")
        run("%s hf bf16" % name, [d, "2,3"])
        # a stage maps only its own layers: drop a tensor of layer 2
        p = os.path.join(TMP, "missing-l2.gguf")
        R.write_gguf(cfg, w, p, drop={"blk.2.ffn_up.weight"})
        run("stage [0,2) without layer 2's tensors", [p, "--stage", "0", "2"])
        run("stage [1,3) needs layer 2", [p, "--stage", "1", "3"], 1,
            "tensor 'blk.2.ffn_up.weight' missing")

tiny = os.path.join(SOURCE, "models", "tfab-tiny-f16.gguf")
run("tfab-tiny f16", [tiny, "2"])
if failures:
    sys.exit("FAIL: " + ", ".join(failures))
print("batch, stages and tensor parallel are bit-identical to the whole model")
