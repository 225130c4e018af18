"""make_bench_model.py - writes a random-weight llama GGUF for the decode benchmark (fast: the
quantized blocks are generated directly, not quantized). Usage: make_bench_model.py OUT TYPE
[n_layer] [--vocab GGUF] with TYPE f16 | bf16 | q8_0 | q4_0 | f32. --vocab copies the tokenizer.*
metadata of a vocab-only GGUF with 32000 tokens (e.g. llama.cpp's models/ggml-vocab-llama-spm.gguf)
so that llama.cpp loads the file too."""
import sys

import numpy as np

import gguf_writer as gw

args = sys.argv[1:]
vocab = None
if "--vocab" in args:
    i = args.index("--vocab")
    vocab = args[i + 1]
    del args[i:i + 2]
out, tname = args[0], args[1]
n_layer = int(args[2]) if len(args) > 2 else 4
D, F, H, KV, V = 2048, 5632, 16, 4, 32000
types = {"f32": gw.GGML_F32, "f16": gw.GGML_F16, "bf16": gw.GGML_BF16, "q8_0": gw.GGML_Q8_0,
         "q4_0": gw.GGML_Q4_0}
t = types[tname]
rng = np.random.default_rng(0)


def raw(rows, cols):
    n = rows * cols
    if t == gw.GGML_F32:
        return (rng.standard_normal(n, dtype=np.float32) * 0.02).tobytes()
    if t in (gw.GGML_F16, gw.GGML_BF16):
        x = (rng.standard_normal(n, dtype=np.float32) * 0.02)
        return (x.astype(np.float16) if t == gw.GGML_F16 else gw.bf16_bits(x)).tobytes()
    nb = n // 32
    if t == gw.GGML_Q8_0:
        blk = np.zeros(nb, dtype=[("d", "<f2"), ("q", "i1", 32)])
        blk["q"] = rng.integers(-127, 128, (nb, 32), dtype=np.int8)
    else:
        blk = np.zeros(nb, dtype=[("d", "<f2"), ("q", "u1", 16)])
        blk["q"] = rng.integers(0, 256, (nb, 16), dtype=np.uint8)
    blk["d"] = 0.0002
    return blk.tobytes()


w = gw.GGUFWriter()
w.add_str("general.architecture", "llama")
for k, v in [("context_length", 4096), ("embedding_length", D), ("block_count", n_layer),
             ("feed_forward_length", F), ("attention.head_count", H),
             ("attention.head_count_kv", KV)]:
    w.add_u32("llama." + k, v)
w.add_f32("llama.attention.layer_norm_rms_epsilon", 1e-5)
w.add_u32("llama.rope.dimension_count", D // H)
w.add_u32("general.file_type", {"f32": 0, "f16": 1, "q4_0": 2, "q8_0": 7, "bf16": 32}[tname])
if vocab:
    kvs = [kv for kv in gw.read_kvs(vocab) if kv[0].startswith("tokenizer.")]
    tokens = [kv for kv in kvs if kv[0] == "tokenizer.ggml.tokens"]
    if not tokens or len(tokens[0][2]) != V:
        sys.exit("%s: no tokenizer.ggml.tokens of %d entries" % (vocab, V))
    for kv in kvs:
        w.add(*kv)
hd = D // H
w.add_tensor_raw("token_embd.weight", (V, D), t, raw(V, D))  # tied: also the output matrix
w.add_tensor("output_norm.weight", np.ones(D, np.float32))
for l in range(n_layer):
    b = "blk.%d." % l
    w.add_tensor(b + "attn_norm.weight", np.ones(D, np.float32))
    w.add_tensor(b + "ffn_norm.weight", np.ones(D, np.float32))
    for name, rows, cols in [("attn_q", H * hd, D), ("attn_k", KV * hd, D), ("attn_v", KV * hd, D),
                             ("attn_output", D, H * hd), ("ffn_gate", F, D), ("ffn_up", F, D),
                             ("ffn_down", D, F)]:
        w.add_tensor_raw(b + name + ".weight", (rows, cols), t, raw(rows, cols))
w.write(out)
