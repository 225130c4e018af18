"""t_model_ref.py - tfab's forward pass (through `tfab logits`) against the PyTorch reference on
random-weight models of every supported architecture and weight type, GGUF and HF safetensors;
decode == prefill; loader errors naming file and tensor. Usage: t_model_ref.py TFAB_BUILD"""
import os
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gguf_writer as gw  # noqa: E402
import ref_llama as R  # noqa: E402

BUILD = sys.argv[1]
TFAB = os.path.join(BUILD, "tfab")
DECODE = os.path.join(BUILD, "tests", "model_decode")
TMP = tempfile.mkdtemp(prefix="tfab_model_ref_")
failures = []
N_TOK = 24


def tokens_for(cfg, seed=1):
    rng = np.random.default_rng(seed)
    return [int(t) for t in rng.integers(0, cfg.n_vocab, N_TOK)]


def run_logits(path, tokens, cfg):
    out = os.path.join(TMP, "logits.bin")
    r = subprocess.run([TFAB, "logits", "--model", path, "--tokens", ",".join(map(str, tokens)),
                        "--out", out, "--threads", "2"], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("tfab logits failed (%d): %s" % (r.returncode, r.stderr))
    return np.fromfile(out, dtype="<f4").reshape(len(tokens), cfg.n_vocab)


def check(name, got, want, tol):
    err = float(np.abs(got.astype(np.float64) - want).max())
    ok = err <= tol
    print("%-44s max abs err %.3g (tolerance %.3g, |logits| <= %.3g) %s"
          % (name, err, tol, float(np.abs(want).max()), "ok" if ok else "FAIL"))
    if not ok:
        failures.append(name)


def check_decode(name, path):
    """decode one token at a time and chunked prefill equal full prefill, over N_TOK tokens"""
    r = subprocess.run([DECODE, path, str(N_TOK)], capture_output=True, text=True)
    print("%-44s %s" % (name + " decode==prefill", r.stdout.strip() or r.stderr.strip()))
    if r.returncode != 0:
        failures.append(name + " decode")


def expect_error(name, path, want, tokens="1,2,3"):
    r = subprocess.run([TFAB, "logits", "--model", path, "--tokens", tokens, "--out",
                        os.path.join(TMP, "x.bin")], capture_output=True, text=True)
    ok = r.returncode != 0 and want in r.stderr
    print("%-44s %s" % (name, "ok" if ok else "FAIL: rc %d, stderr %r" % (r.returncode, r.stderr)))
    if not ok:
        failures.append(name)


L3 = {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
      "original_max_position_embeddings": 16}

# ---- f32 GGUF, every architecture: tolerance 1e-4 --------------------------------------------
cases = [
    ("llama gqa", R.Config("llama", n_head=4, n_head_kv=2)),
    ("llama3 rope scaling (metadata)", R.Config("llama", llama3=L3)),
    ("mistral (mqa)", R.Config("mistral", n_head=4, n_head_kv=1)),
    ("qwen2 biases tied", R.Config("qwen2", n_head=4, n_head_kv=2, tied=True, rope_theta=1e6)),
    ("llama tied", R.Config("llama", tied=True, n_layer=3)),
]
for i, (name, cfg) in enumerate(cases):
    w = R.make_weights(cfg, seed=10 + i)
    path = os.path.join(TMP, "m%d.gguf" % i)
    seen = R.write_gguf(cfg, w, path)
    toks = tokens_for(cfg, i)
    check("gguf f32 " + name, run_logits(path, toks, cfg), R.forward(cfg, seen, toks), 1e-4)
    if i in (0, 3):
        check_decode("gguf f32 " + name, path)

cfg = R.Config("llama", llama3=L3)
w = R.make_weights(cfg, seed=20)
path = os.path.join(TMP, "rf.gguf")
seen = R.write_gguf(cfg, w, path, rope_freqs_tensor=True)
toks = tokens_for(cfg, 5)
check("gguf f32 llama3 rope scaling (rope_freqs)", run_logits(path, toks, cfg),
      R.forward(cfg, seen, toks), 1e-4)

cfg = R.Config("llama", n_head=4, n_head_kv=4)
w = R.make_weights(cfg, seed=21)
path = os.path.join(TMP, "a64.gguf")
seen = R.write_gguf(cfg, w, path, wtype=gw.GGML_F16, alignment=64, version=2)
toks = tokens_for(cfg, 6)
check("gguf v2 f16 general.alignment 64, mha", run_logits(path, toks, cfg),
      R.forward(cfg, seen, toks), 1e-4)

# ---- f16 / bf16 / q8_0 / q4_0 GGUF -----------------------------------------------------------
# Against the reference on the weights as stored (dequantized), with the kernels' activation
# quantization to q8_0 simulated for q8_0/q4_0: 1e-4 for all. Against the original f32 model
# (the quantization error itself): f16 2e-2, bf16 0.15, q8_0 0.15, q4_0 1.2 (|logits| ~4).
cfg = R.Config("llama", n_head=4, n_head_kv=2)
w = R.make_weights(cfg, seed=30)
toks = tokens_for(cfg, 7)
exact = R.forward(cfg, w, toks)
for tname, t, tol, tol_f32 in [("f16", gw.GGML_F16, 1e-4, 2e-2), ("bf16", gw.GGML_BF16, 1e-4, 0.15),
                               ("q8_0", gw.GGML_Q8_0, 1e-4, 0.15), ("q4_0", gw.GGML_Q4_0, 1e-4, 1.2)]:
    path = os.path.join(TMP, "t_%s.gguf" % tname)
    seen = R.write_gguf(cfg, w, path, wtype=t)
    got = run_logits(path, toks, cfg)
    quant = t in (gw.GGML_Q8_0, gw.GGML_Q4_0)
    check("gguf %s vs reference on stored weights" % tname, got,
          R.forward(cfg, seen, toks, quant_act=quant), tol)
    check("gguf %s vs f32 model" % tname, got, exact, tol_f32)
    if t == gw.GGML_Q4_0:
        check_decode("gguf q4_0", path)

# ---- batch invariance of every weight type ---------------------------------------------------
# Shapes that reach every edge of the gemm kernels: 70 tokens (token blocks of 48, tiles of 6 and
# 4), a vocabulary of 301 rows (row groups of 4 and 16), n_ff > 1024 (k panels) with a partial
# 16-element step (float types: 1048) or an odd block count (q8_0/q4_0: 1056 = 33 blocks).
for tname, t in [("f32", gw.GGML_F32), ("f16", gw.GGML_F16), ("bf16", gw.GGML_BF16),
                 ("q8_0", gw.GGML_Q8_0), ("q4_0", gw.GGML_Q4_0)]:
    quant = t in (gw.GGML_Q8_0, gw.GGML_Q4_0)
    cfg = R.Config("llama", n_vocab=301, n_embd=96 if quant else 72, n_head=4, n_head_kv=2,
                   n_ff=1056 if quant else 1048)
    path = os.path.join(TMP, "inv_%s.gguf" % tname)
    R.write_gguf(cfg, R.make_weights(cfg, seed=35), path, wtype=t)
    r = subprocess.run([DECODE, path, "70"], capture_output=True, text=True)
    print("%-44s %s" % ("gguf %s batch invariance" % tname, r.stdout.strip() or r.stderr.strip()))
    if r.returncode != 0:
        failures.append(tname + " batch invariance")

# ---- GGUF loader errors ------------------------------------------------------------------
cfg = R.Config("llama")
w = R.make_weights(cfg, seed=40)
p = os.path.join(TMP, "missing.gguf")
R.write_gguf(cfg, w, p, drop={"blk.1.ffn_up.weight"})
expect_error("missing tensor", p, "missing.gguf: tensor 'blk.1.ffn_up.weight' missing")
p = os.path.join(TMP, "shape.gguf")
R.write_gguf(cfg, w, p, override={"blk.0.attn_k.weight": ((48, 64), gw.GGML_F32,
                                                           np.zeros((48, 64), np.float32).tobytes())})
expect_error("shape mismatch", p, "shape.gguf: tensor 'blk.0.attn_k.weight': shape [64, 48, 1, 1], "
             "expected [64, 32]")
p = os.path.join(TMP, "dtype.gguf")
R.write_gguf(cfg, w, p, override={"blk.0.ffn_down.weight": ((64, 128), 3, b"\0" * (64 * 4 * 20))})
expect_error("unsupported dtype", p, "dtype.gguf: tensor 'blk.0.ffn_down.weight': type q4_1 is not "
             "supported (f32, f16, bf16, q8_0, q4_0 are)")
p = os.path.join(TMP, "trunc.gguf")
R.write_gguf(cfg, w, p)
size = os.path.getsize(p)
with open(p, "r+b") as fh:
    fh.truncate(size - 100)
expect_error("truncated file", p, "trunc.gguf: tensor 'blk.1.ffn_down.weight': data [")
expect_error("truncated file size", p, "beyond end of file (size %d)" % (size - 100))
p = os.path.join(TMP, "ok.gguf")
R.write_gguf(cfg, w, p)
expect_error("token id out of vocabulary", p, "token 1: id 96 is outside the vocabulary (0..95)",
             tokens="5,96")
expect_error("bad token list", p, "--tokens: 'x' (item 2) is not a token id", tokens="5,x")
expect_error("not a model", os.path.join(TMP, "nope.gguf"), "nope.gguf: cannot open: No such file")

if "--hf" in sys.argv:
    # ---- HF safetensors directories: same reference ------------------------------------
    hf_cases = [
        ("hf llama gqa f32", R.Config("llama", n_head=4, n_head_kv=2), "F32", 1, False, 1e-4),
        ("hf llama3 bf16 sharded, rope_parameters", R.Config("llama", llama3=L3), "BF16", 3, True, 1e-4),
        ("hf qwen2 tied f16", R.Config("qwen2", tied=True), "F16", 1, False, 1e-4),
        ("hf mistral f32 sharded", R.Config("mistral", n_head_kv=1), "F32", 2, False, 1e-4),
    ]
    for i, (name, cfg, dt, shards, newform, tol) in enumerate(hf_cases):
        w = R.make_weights(cfg, seed=50 + i)
        d = os.path.join(TMP, "hf%d" % i)
        seen = R.write_hf(cfg, w, d, dt, shards, newform)
        toks = tokens_for(cfg, 9 + i)
        check(name, run_logits(d, toks, cfg), R.forward(cfg, seen, toks), tol)
        if i == 1:
            check_decode(name, d)
    # the same HF llama as GGUF (llama.cpp's q/k permutation) gives the same logits
    cfg = R.Config("llama", n_head=4, n_head_kv=2)
    w = R.make_weights(cfg, seed=60)
    d = os.path.join(TMP, "hfsame")
    R.write_hf(cfg, w, d)
    p = os.path.join(TMP, "hfsame.gguf")
    R.write_gguf(cfg, w, p)
    toks = tokens_for(cfg, 11)
    check("hf dir == converted gguf", run_logits(d, toks, cfg), run_logits(p, toks, cfg), 1e-4)

    # ---- HF loader errors ------------------------------------------------------------------
    cfg = R.Config("llama")
    w = R.make_weights(cfg, seed=70)

    def hf_dir(name, mutate=None, raw=None):
        d = os.path.join(TMP, name)
        R.write_hf(cfg, w, d)
        t = R.hf_tensors(cfg, w)
        st = os.path.join(d, "model.safetensors")
        if mutate:
            mutate(t)
            R.write_safetensors(st, t)
        if raw:
            raw(st)
        return d

    d = hf_dir("hf_missing", lambda t: t.pop("model.layers.1.mlp.up_proj.weight"))
    expect_error("hf missing tensor", d, "hf_missing: tensor 'model.layers.1.mlp.up_proj.weight' missing")
    d = hf_dir("hf_shape", lambda t: t.update({"model.layers.0.self_attn.k_proj.weight":
                                                 np.zeros((48, 64), np.float32)}))
    expect_error("hf shape mismatch", d, "hf_shape/model.safetensors: tensor "
                 "'model.layers.0.self_attn.k_proj.weight': shape [64, 48, 1, 1], expected [64, 32]")

    def trunc(st):
        with open(st, "r+b") as fh:
            fh.truncate(os.path.getsize(st) - 10)
    d = hf_dir("hf_trunc", raw=trunc)
    expect_error("hf truncated", d, "hf_trunc/model.safetensors: tensor '")
    expect_error("hf truncated offsets", d, "beyond end of data")

    d = hf_dir("hf_dtype", lambda t: t.update({"model.layers.0.self_attn.q_proj.weight":
                                                 np.zeros((64, 64), np.int64)}))
    expect_error("hf unsupported dtype", d, "tensor 'model.layers.0.self_attn.q_proj.weight': type "
                 "i64 is not supported")

    def badjson(st):
        with open(st, "r+b") as fh:
            fh.seek(8)
            fh.write(b"{]")
    d = hf_dir("hf_json", raw=badjson)
    expect_error("hf corrupt header", d, "hf_json/model.safetensors: header is not a JSON object")
    d = hf_dir("hf_nohead", lambda t: t.pop("lm_head.weight"))
    expect_error("hf untied without lm_head", d, "hf_nohead: tensor 'lm_head.weight' missing "
                 "(config.json: tie_word_embeddings is false)")
    d = hf_dir("hf_arch")
    with open(os.path.join(d, "config.json"), "w") as fh:
        fh.write('{"model_type": "gpt2"}')
    expect_error("hf unsupported arch", d, "config.json: model_type 'gpt2' is not supported")

if failures:
    print("FAILED:", ", ".join(failures))
    sys.exit(1)
print("all model reference checks passed")
