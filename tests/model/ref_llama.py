"""ref_llama.py - random-weight Llama-family test models (llama with GQA and llama3 rope scaling,
mistral, qwen2 with QKV biases, tied embeddings) written as GGUF and as HF safetensors, and an
independent PyTorch forward pass written from the formulas (no transformers)."""
import json
import math
import os
import struct

import numpy as np
import torch

import gguf_writer as gw


class Config:
    def __init__(self, arch="llama", n_vocab=96, n_embd=64, n_layer=2, n_head=4, n_head_kv=2,
                 n_ff=128, rms_eps=1e-5, rope_theta=10000.0, tied=False, llama3=None,
                 n_ctx=256):
        self.arch, self.n_vocab, self.n_embd, self.n_layer = arch, n_vocab, n_embd, n_layer
        self.n_head, self.n_head_kv, self.n_ff = n_head, n_head_kv, n_ff
        self.head_dim = n_embd // n_head
        self.rms_eps, self.rope_theta, self.tied, self.n_ctx = rms_eps, rope_theta, tied, n_ctx
        # llama3 scaling: dict(factor, low_freq_factor, high_freq_factor, original_max_position_embeddings)
        self.llama3 = llama3


def make_weights(cfg, seed):
    """HF-layout weights (q/k rows in HF order, rotate_half rope), float32 numpy."""
    rng = np.random.default_rng(seed)
    D, H, KV, hd, F = cfg.n_embd, cfg.n_head, cfg.n_head_kv, cfg.head_dim, cfg.n_ff

    def mat(rows, cols):
        return (rng.standard_normal((rows, cols)) / math.sqrt(cols)).astype(np.float32)

    def norm(n):
        return (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32)

    w = {"embed": rng.standard_normal((cfg.n_vocab, D)).astype(np.float32), "norm": norm(D)}
    if not cfg.tied:
        w["lm_head"] = mat(cfg.n_vocab, D)
    for l in range(cfg.n_layer):
        p = "l%d." % l
        w[p + "attn_norm"], w[p + "ffn_norm"] = norm(D), norm(D)
        w[p + "q"], w[p + "k"], w[p + "v"] = mat(H * hd, D), mat(KV * hd, D), mat(KV * hd, D)
        w[p + "o"] = mat(D, H * hd)
        w[p + "gate"], w[p + "up"], w[p + "down"] = mat(F, D), mat(F, D), mat(D, F)
        if cfg.arch == "qwen2":
            w[p + "bq"] = (0.5 * rng.standard_normal(H * hd)).astype(np.float32)
            w[p + "bk"] = (0.5 * rng.standard_normal(KV * hd)).astype(np.float32)
            w[p + "bv"] = (0.5 * rng.standard_normal(KV * hd)).astype(np.float32)
    return w


def permute_qk(x, n_head):
    """llama.cpp's converter permutation of HF q/k rows: per head, the rotate_half halves are
    interleaved into adjacent pairs, so GGUF llama files use the 'normal' (adjacent) rope."""
    return (x.reshape(n_head, 2, x.shape[0] // n_head // 2, *x.shape[1:])
            .swapaxes(1, 2).reshape(x.shape))


MATRICES = ["q", "k", "v", "o", "gate", "up", "down"]


def write_gguf(cfg, w, path, wtype=gw.GGML_F32, rope_freqs_tensor=False, drop=None,
               override=None, alignment=32, version=3, extra_kvs=()):
    """Write w as a llama.cpp-convention GGUF; returns the weights as the reader sees them
    (dequantized, HF layout). drop: tensor names to leave out; override: {name: (shape, type,
    raw)} to write instead; extra_kvs: (key, type, value, elem_type) metadata to add (e.g. a
    vocabulary's tokenizer.* keys from gguf_writer.read_kvs)."""
    drop, override = drop or set(), override or {}
    arch = "llama" if cfg.arch == "llama" else cfg.arch
    f = gw.GGUFWriter(alignment=alignment, version=version)
    f.add_str("general.architecture", arch)
    f.add_u32(arch + ".context_length", cfg.n_ctx)
    f.add_u32(arch + ".embedding_length", cfg.n_embd)
    f.add_u32(arch + ".block_count", cfg.n_layer)
    f.add_u32(arch + ".feed_forward_length", cfg.n_ff)
    f.add_u32(arch + ".attention.head_count", cfg.n_head)
    f.add_u32(arch + ".attention.head_count_kv", cfg.n_head_kv)
    f.add_f32(arch + ".attention.layer_norm_rms_epsilon", cfg.rms_eps)
    f.add_f32(arch + ".rope.freq_base", cfg.rope_theta)
    f.add_u32(arch + ".rope.dimension_count", cfg.head_dim)
    if cfg.llama3 and not rope_freqs_tensor:
        s = cfg.llama3
        f.add_str(arch + ".rope.scaling.type", "llama3")
        f.add_f32(arch + ".rope.scaling.factor", s["factor"])
        f.add_f32(arch + ".rope.scaling.low_freq_factor", s["low_freq_factor"])
        f.add_f32(arch + ".rope.scaling.high_freq_factor", s["high_freq_factor"])
        f.add_u32(arch + ".rope.scaling.original_context_length",
                  s["original_max_position_embeddings"])
    for kv in extra_kvs:
        f.add(*kv)
    seen = {}
    permute = cfg.arch in ("llama", "mistral")

    def put(name, x, t, key, post=None):
        if name in drop:
            return
        if name in override:
            shape, ot, raw = override[name]
            f.add_tensor_raw(name, shape, ot, raw)
            return
        got = f.add_tensor(name, x, t)
        seen[key] = post(got) if post else got

    put("token_embd.weight", w["embed"], wtype, "embed")
    put("output_norm.weight", w["norm"], gw.GGML_F32, "norm")
    if not cfg.tied:
        put("output.weight", w["lm_head"], wtype, "lm_head")
    if rope_freqs_tensor:
        put("rope_freqs.weight", llama3_factors(cfg), gw.GGML_F32, "rope_freqs")
    names = {"q": "attn_q", "k": "attn_k", "v": "attn_v", "o": "attn_output", "gate": "ffn_gate",
             "up": "ffn_up", "down": "ffn_down"}
    for l in range(cfg.n_layer):
        p = "l%d." % l
        b = "blk.%d." % l
        put(b + "attn_norm.weight", w[p + "attn_norm"], gw.GGML_F32, p + "attn_norm")
        put(b + "ffn_norm.weight", w[p + "ffn_norm"], gw.GGML_F32, p + "ffn_norm")
        for m in MATRICES:
            x, post = w[p + m], None
            if permute and m in ("q", "k"):
                nh = cfg.n_head if m == "q" else cfg.n_head_kv
                x = permute_qk(x, nh)
                # un-permute what the reader sees back to HF layout for the reference
                post = (lambda y, nh=nh: unpermute_qk(y, nh))
            put(b + names[m] + ".weight", x, wtype, p + m, post)
        if cfg.arch == "qwen2":
            for m in ("q", "k", "v"):
                put(b + "attn_%s.bias" % m, w[p + "b" + m], gw.GGML_F32, p + "b" + m)
    f.write(path)
    return seen


def unpermute_qk(x, n_head):
    return (x.reshape(n_head, x.shape[0] // n_head // 2, 2, *x.shape[1:])
            .swapaxes(1, 2).reshape(x.shape))


# ---- safetensors (HF) ----------------------------------------------------------------------
HF_NAMES = {"q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj",
            "o": "self_attn.o_proj", "gate": "mlp.gate_proj", "up": "mlp.up_proj",
            "down": "mlp.down_proj"}


def hf_tensors(cfg, w):
    t = {"model.embed_tokens.weight": w["embed"], "model.norm.weight": w["norm"]}
    if not cfg.tied:
        t["lm_head.weight"] = w["lm_head"]
    for l in range(cfg.n_layer):
        p, h = "l%d." % l, "model.layers.%d." % l
        t[h + "input_layernorm.weight"] = w[p + "attn_norm"]
        t[h + "post_attention_layernorm.weight"] = w[p + "ffn_norm"]
        for m in MATRICES:
            t[h + HF_NAMES[m] + ".weight"] = w[p + m]
        if cfg.arch == "qwen2":
            for m in ("q", "k", "v"):
                t[h + "self_attn.%s_proj.bias" % m] = w[p + "b" + m]
    return t


def write_safetensors(path, tensors, dtype="F32", header_extra=None):
    """tensors: name -> float32 array. dtype F32, F16 or BF16. Returns name -> values seen."""
    header, blobs, off, seen = {}, [], 0, {}
    for name, x in tensors.items():
        if np.asarray(x).dtype == np.int64:  # for loader error tests
            raw = np.asarray(x).tobytes()
            header[name] = {"dtype": "I64", "shape": list(np.shape(x)),
                            "data_offsets": [off, off + len(raw)]}
            blobs.append(raw)
            off += len(raw)
            continue
        x = np.asarray(x, dtype=np.float32)
        if dtype == "F32":
            raw, s = x.tobytes(), x
        elif dtype == "F16":
            h = x.astype(np.float16)
            raw, s = h.tobytes(), h.astype(np.float32)
        else:
            b = gw.bf16_bits(x.reshape(-1))
            raw, s = b.tobytes(), gw.bf16_to_f32(b).reshape(x.shape)
        header[name] = {"dtype": dtype, "shape": list(x.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
        seen[name] = s
    if header_extra:
        header.update(header_extra)
    hj = json.dumps(header).encode()
    hj += b" " * ((-len(hj)) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(hj)) + hj + b"".join(blobs))
    return seen


def write_hf(cfg, w, d, dtype="F32", shards=1, new_rope_form=False):
    """config.json + model.safetensors (or sharded with an index). Returns weights as seen."""
    os.makedirs(d, exist_ok=True)
    arch_cls = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM",
                "qwen2": "Qwen2ForCausalLM"}[cfg.arch]
    conf = {"architectures": [arch_cls], "model_type": cfg.arch, "vocab_size": cfg.n_vocab,
            "hidden_size": cfg.n_embd, "intermediate_size": cfg.n_ff,
            "num_hidden_layers": cfg.n_layer, "num_attention_heads": cfg.n_head,
            "num_key_value_heads": cfg.n_head_kv, "rms_norm_eps": cfg.rms_eps,
            "max_position_embeddings": cfg.n_ctx, "tie_word_embeddings": cfg.tied,
            "torch_dtype": {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}[dtype]}
    scaling = dict(cfg.llama3, rope_type="llama3") if cfg.llama3 else None
    if new_rope_form:
        conf["rope_parameters"] = dict(scaling or {"rope_type": "default"},
                                       rope_theta=cfg.rope_theta)
    else:
        conf["rope_theta"] = cfg.rope_theta
        if scaling:
            conf["rope_scaling"] = scaling
    with open(os.path.join(d, "config.json"), "w") as fh:
        json.dump(conf, fh)
    t = hf_tensors(cfg, w)
    names = list(t)
    seen = {}
    if shards == 1:
        seen.update(write_safetensors(os.path.join(d, "model.safetensors"), t, dtype))
    else:
        wmap = {}
        for s in range(shards):
            fn = "model-%05d-of-%05d.safetensors" % (s + 1, shards)
            part = {n: t[n] for n in names[s::shards]}
            seen.update(write_safetensors(os.path.join(d, fn), part, dtype))
            wmap.update({n: fn for n in part})
        with open(os.path.join(d, "model.safetensors.index.json"), "w") as fh:
            json.dump({"metadata": {}, "weight_map": wmap}, fh)
    # back to the internal names
    out = {"embed": seen["model.embed_tokens.weight"], "norm": seen["model.norm.weight"]}
    if not cfg.tied:
        out["lm_head"] = seen["lm_head.weight"]
    for l in range(cfg.n_layer):
        p, h = "l%d." % l, "model.layers.%d." % l
        out[p + "attn_norm"] = seen[h + "input_layernorm.weight"]
        out[p + "ffn_norm"] = seen[h + "post_attention_layernorm.weight"]
        for m in MATRICES:
            out[p + m] = seen[h + HF_NAMES[m] + ".weight"]
        if cfg.arch == "qwen2":
            for m in ("q", "k", "v"):
                out[p + "b" + m] = seen[h + "self_attn.%s_proj.bias" % m]
    return out


# ---- reference forward ---------------------------------------------------------------------
def llama3_factors(cfg):
    """Per-pair divisor of the rotation frequency (Meta's llama3 scaling)."""
    s, hd = cfg.llama3, cfg.head_dim
    freqs = cfg.rope_theta ** (-np.arange(0, hd, 2, dtype=np.float64) / hd)
    lo_wl = s["original_max_position_embeddings"] / s["low_freq_factor"]
    hi_wl = s["original_max_position_embeddings"] / s["high_freq_factor"]
    out = []
    for f in freqs:
        wl = 2 * math.pi / f
        if wl < hi_wl:
            nf = f
        elif wl > lo_wl:
            nf = f / s["factor"]
        else:
            sm = (s["original_max_position_embeddings"] / wl - s["low_freq_factor"]) / (
                s["high_freq_factor"] - s["low_freq_factor"])
            nf = (1 - sm) * f / s["factor"] + sm * f
        out.append(f / nf)
    return np.array(out, dtype=np.float32)


def q8_act(x):
    """Activation quantization of the q8_0/q4_0 kernels in f32 (llama.cpp's x86 rule:
    q = round-half-even(x * (127 / amax)), d = amax / 127 as f16)."""
    a = x.detach().to(torch.float32).numpy().reshape(-1, 32)
    amax = np.abs(a).max(axis=1).astype(np.float32)
    d = (amax / np.float32(127)).astype(np.float32)
    inv = np.where(amax != 0, np.float32(127) / np.where(amax != 0, amax, np.float32(1)),
                   0).astype(np.float32)
    v = (a * inv[:, None]).astype(np.float32)
    q = np.rint(v)
    deq = q * d.astype(np.float16).astype(np.float32)[:, None]
    return torch.from_numpy(deq.reshape(x.shape).astype(np.float64))


def forward(cfg, w, tokens, quant_act=False):
    """HF-style forward in float64: rotate_half rope on HF-layout q/k. Returns [n, vocab]."""
    T = lambda a: torch.from_numpy(np.asarray(a, dtype=np.float64))
    n, D, H, KV, hd = len(tokens), cfg.n_embd, cfg.n_head, cfg.n_head_kv, cfg.head_dim
    act = q8_act if quant_act else (lambda x: x)

    def lin(x, name):
        return act(x) @ T(w[name]).T

    def rms(x, g):
        return x / torch.sqrt((x * x).mean(-1, keepdim=True) + cfg.rms_eps) * T(g)

    inv = cfg.rope_theta ** (-torch.arange(0, hd, 2, dtype=torch.float64) / hd)
    if cfg.llama3:
        inv = inv / T(llama3_factors(cfg))
    ang = torch.arange(n, dtype=torch.float64)[:, None] * inv[None, :]
    cos, sin = torch.cat([ang.cos()] * 2, -1), torch.cat([ang.sin()] * 2, -1)

    def rope(x):  # x [n, heads, hd]
        x1, x2 = x[..., : hd // 2], x[..., hd // 2:]
        rot = torch.cat([-x2, x1], -1)
        return x * cos[:, None, :] + rot * sin[:, None, :]

    x = T(w["embed"])[torch.tensor(tokens)]
    mask = torch.full((n, n), float("-inf"), dtype=torch.float64).triu(1)
    for l in range(cfg.n_layer):
        p = "l%d." % l
        h = rms(x, w[p + "attn_norm"])
        q, k, v = lin(h, p + "q"), lin(h, p + "k"), lin(h, p + "v")
        if cfg.arch == "qwen2":
            q, k, v = q + T(w[p + "bq"]), k + T(w[p + "bk"]), v + T(w[p + "bv"])
        q, k, v = q.view(n, H, hd), k.view(n, KV, hd), v.view(n, KV, hd)
        q, k = rope(q), rope(k)
        rep = H // KV
        k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
        s = torch.einsum("ihd,jhd->hij", q, k) / math.sqrt(hd) + mask
        o = torch.einsum("hij,jhd->ihd", torch.softmax(s, -1), v).reshape(n, H * hd)
        x = x + lin(o, p + "o")
        h = rms(x, w[p + "ffn_norm"])
        g, u = lin(h, p + "gate"), lin(h, p + "up")
        x = x + lin(torch.nn.functional.silu(g) * u, p + "down")
    x = rms(x, w["norm"])
    return lin(x, "embed" if cfg.tied else "lm_head").numpy()
