#!/usr/bin/env python3
"""train_tiny.py - trains tfab-tiny (a ~12M-parameter Llama) and its byte-level BPE tokenizer,
samples from it, and exports models/tfab-tiny-f16.gguf plus float32 reference data for tests.

Self-contained: tokenizer training (HF `tokenizers`), model definition, training loop, sampling,
GGUF export (through gguf_export.py beside this file) and reference outputs.

  python3 tools/train/train_tiny.py --corpus CORPUS.txt --out DIR [--steps 3000] [--smoke]

CORPUS.txt comes from tools/train/prepare_corpus.sh: documents separated by an empty line.
DIR receives tokenizer.json, tfab-tiny-f16.gguf (+ .inp/.out tokenizer vectors),
tfab-tiny.ref.json, train_log.json and tfab-tiny.pt (f32 checkpoint of the exported weights).

Architecture = llama.cpp's `llama` with "normal" RoPE: each head's vector is rotated in
ADJACENT pairs (x[2i], x[2i+1]) by angle pos * freq_base^(-2i/head_dim), as Meta's original
Llama code does, so the exported Q/K weights need no permutation. GQA: query head h uses kv head
h // (n_head / n_kv_head). RMSNorm (eps 1e-5), SwiGLU (down(silu(gate(x)) * up(x))), untied
output matrix, no biases. Every sequence a document starts with BOS and ends with EOS.
"""
import argparse
import json
import math
import os
import random
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gguf_export as G  # noqa: E402
import tokenizer_cases  # noqa: E402

BOS, EOS = "<s>", "</s>"
SEED = 1234

CONFIG = dict(vocab_size=4096, dim=384, n_layers=6, n_heads=6, n_kv_heads=2, ffn_dim=1024,
              ctx=256, rope_base=10000.0, norm_eps=1e-5)
TRAIN = dict(batch=64, lr=1e-3, min_lr=1e-4, warmup=100, weight_decay=0.1, dropout=0.1,
             grad_clip=1.0, betas=(0.9, 0.95), val_frac=0.02, eval_every=250, eval_batches=20)

REF_PROMPT = "Once upon a time"


# ----------------------------------------------------------------------------- tokenizer
def train_tokenizer(docs, vocab_size):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    tok = Tokenizer(models.BPE())
    # GPT-2 pre-tokenizer regex, byte-level alphabet, no prefix space (= llama.cpp pre "gpt-2")
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, show_progress=False,
                                  special_tokens=[BOS, EOS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(docs, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B",
        special_tokens=[(BOS, tok.token_to_id(BOS)), (EOS, tok.token_to_id(EOS))])
    return tok


def tokenizer_gguf_fields(tok):
    """tokens, token types and merges ("a b" strings) as llama.cpp's gpt2 vocab wants them."""
    j = json.loads(tok.to_str())
    vocab = j["model"]["vocab"]
    n = len(vocab)
    tokens = [None] * n
    for t, i in vocab.items():
        tokens[i] = t
    assert all(t is not None for t in tokens), "vocab ids are not contiguous"
    special = {a["id"] for a in j.get("added_tokens", []) if a.get("special")}
    types = [3 if i in special else 1 for i in range(n)]  # 3 = CONTROL, 1 = NORMAL
    merges = [m if isinstance(m, str) else " ".join(m) for m in j["model"]["merges"]]
    return tokens, types, merges


# ----------------------------------------------------------------------------- model
class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x) * self.weight


def rope_tables(head_dim, ctx, base, device):
    inv = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64, device=device) / head_dim)
    ang = torch.arange(ctx, dtype=torch.float64, device=device)[:, None] * inv[None, :]
    return ang.cos().float(), ang.sin().float()  # [ctx, head_dim/2]


def apply_rope(x, cos, sin):
    """x [B, T, H, hd]; rotates adjacent pairs (x[2i], x[2i+1]) (llama.cpp rope mode 0)."""
    T = x.shape[1]
    c, s = cos[:T][None, :, None, :], sin[:T][None, :, None, :]
    x0, x1 = x[..., 0::2].float(), x[..., 1::2].float()
    return torch.stack([x0 * c - x1 * s, x0 * s + x1 * c], dim=-1).flatten(-2).type_as(x)


class Block(nn.Module):
    def __init__(self, c, dropout):
        super().__init__()
        self.nh, self.nkv = c["n_heads"], c["n_kv_heads"]
        self.hd = c["dim"] // self.nh
        self.attn_norm = RMSNorm(c["dim"], c["norm_eps"])
        self.wq = nn.Linear(c["dim"], self.nh * self.hd, bias=False)
        self.wk = nn.Linear(c["dim"], self.nkv * self.hd, bias=False)
        self.wv = nn.Linear(c["dim"], self.nkv * self.hd, bias=False)
        self.wo = nn.Linear(self.nh * self.hd, c["dim"], bias=False)
        self.ffn_norm = RMSNorm(c["dim"], c["norm_eps"])
        self.w1 = nn.Linear(c["dim"], c["ffn_dim"], bias=False)  # gate
        self.w3 = nn.Linear(c["dim"], c["ffn_dim"], bias=False)  # up
        self.w2 = nn.Linear(c["ffn_dim"], c["dim"], bias=False)  # down
        self.dropout = dropout

    def forward(self, x, cos, sin):
        B, T, _ = x.shape
        h = self.attn_norm(x)
        q = apply_rope(self.wq(h).view(B, T, self.nh, self.hd), cos, sin).transpose(1, 2)
        k = apply_rope(self.wk(h).view(B, T, self.nkv, self.hd), cos, sin).transpose(1, 2)
        v = self.wv(h).view(B, T, self.nkv, self.hd).transpose(1, 2)
        rep = self.nh // self.nkv
        k = k.repeat_interleave(rep, dim=1)  # q head h -> kv head h // rep
        v = v.repeat_interleave(rep, dim=1)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                           dropout_p=self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).reshape(B, T, self.nh * self.hd)
        x = x + F.dropout(self.wo(y), self.dropout, self.training)
        h = self.ffn_norm(x)
        x = x + F.dropout(self.w2(F.silu(self.w1(h)) * self.w3(h)), self.dropout, self.training)
        return x


class Llama(nn.Module):
    def __init__(self, c, dropout=0.0):
        super().__init__()
        self.c = c
        self.tok_emb = nn.Embedding(c["vocab_size"], c["dim"])
        self.layers = nn.ModuleList(Block(c, dropout) for _ in range(c["n_layers"]))
        self.norm = RMSNorm(c["dim"], c["norm_eps"])
        self.out = nn.Linear(c["dim"], c["vocab_size"], bias=False)
        cos, sin = rope_tables(c["dim"] // c["n_heads"], c["ctx"], c["rope_base"], "cpu")
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        for n, p in self.named_parameters():
            if p.dim() == 2:
                std = 0.02 / math.sqrt(2 * c["n_layers"]) if n.endswith(("wo.weight", "w2.weight")) else 0.02
                nn.init.normal_(p, 0.0, std)

    def forward(self, idx):
        x = self.tok_emb(idx)
        for layer in self.layers:
            x = layer(x, self.cos, self.sin)
        return self.out(self.norm(x))


# ----------------------------------------------------------------------------- sampling
@torch.no_grad()
def generate(model, ids, n, temperature=0.0, top_k=40, eos=None, gen=None):
    ids = list(ids)
    out = []
    dev = next(model.parameters()).device
    for _ in range(n):
        ctx = torch.tensor([ids[-model.c["ctx"]:]], device=dev)
        logits = model(ctx)[0, -1].float()
        if temperature <= 0:
            nxt = int(torch.argmax(logits))
        else:
            v, ix = torch.topk(logits / temperature, top_k)
            nxt = int(ix[torch.multinomial(F.softmax(v, -1), 1, generator=gen)])
        ids.append(nxt)
        out.append(nxt)
        if eos is not None and nxt == eos:
            break
    return out


# ----------------------------------------------------------------------------- export
GGUF_NAMES = {"attn_norm.weight": "attn_norm.weight", "wq.weight": "attn_q.weight",
              "wk.weight": "attn_k.weight", "wv.weight": "attn_v.weight",
              "wo.weight": "attn_output.weight", "ffn_norm.weight": "ffn_norm.weight",
              "w1.weight": "ffn_gate.weight", "w3.weight": "ffn_up.weight",
              "w2.weight": "ffn_down.weight"}


def gguf_name(n):
    if n == "tok_emb.weight":
        return "token_embd.weight"
    if n == "norm.weight":
        return "output_norm.weight"
    if n == "out.weight":
        return "output.weight"
    _, i, rest = n.split(".", 2)
    return f"blk.{i}.{GGUF_NAMES[rest]}"


def export_gguf(model, tok, path, name="tfab-tiny"):
    c = model.c
    tokens, types, merges = tokenizer_gguf_fields(tok)
    w = G.GGUFWriter()
    w.add("general.architecture", G.STRING, "llama")
    w.add("general.name", G.STRING, name)
    w.add("general.description", G.STRING,
          "tfab built-in test model: a tiny Llama trained on the Debian 'fortunes' cookies")
    w.add("general.file_type", G.UINT32, 1)  # LLAMA_FTYPE_MOSTLY_F16
    w.add("llama.vocab_size", G.UINT32, c["vocab_size"])
    w.add("llama.context_length", G.UINT32, c["ctx"])
    w.add("llama.embedding_length", G.UINT32, c["dim"])
    w.add("llama.block_count", G.UINT32, c["n_layers"])
    w.add("llama.feed_forward_length", G.UINT32, c["ffn_dim"])
    w.add("llama.attention.head_count", G.UINT32, c["n_heads"])
    w.add("llama.attention.head_count_kv", G.UINT32, c["n_kv_heads"])
    w.add("llama.rope.freq_base", G.FLOAT32, c["rope_base"])
    w.add("llama.rope.dimension_count", G.UINT32, c["dim"] // c["n_heads"])
    w.add("llama.attention.layer_norm_rms_epsilon", G.FLOAT32, c["norm_eps"])
    w.add("tokenizer.ggml.model", G.STRING, "gpt2")
    w.add("tokenizer.ggml.pre", G.STRING, "gpt-2")
    w.add("tokenizer.ggml.tokens", G.ARRAY, tokens, elem_type=G.STRING)
    w.add("tokenizer.ggml.token_type", G.ARRAY, types, elem_type=G.INT32)
    w.add("tokenizer.ggml.merges", G.ARRAY, merges, elem_type=G.STRING)
    w.add("tokenizer.ggml.bos_token_id", G.UINT32, tok.token_to_id(BOS))
    w.add("tokenizer.ggml.eos_token_id", G.UINT32, tok.token_to_id(EOS))
    w.add("tokenizer.ggml.add_bos_token", G.BOOL, True)
    w.add("tokenizer.ggml.add_eos_token", G.BOOL, False)
    sd = model.state_dict()
    order = ["tok_emb.weight"] + [k for k in sd if k.startswith("layers.")] + ["norm.weight", "out.weight"]
    for k in order:
        t = sd[k].detach().cpu().float().contiguous()
        ne = list(reversed(t.shape))  # ggml ne[0] is the contiguous (last PyTorch) dim
        if t.dim() == 1:
            w.add_tensor(gguf_name(k), ne, G.GGML_F32, t.numpy().tobytes())
        else:
            w.add_tensor(gguf_name(k), ne, G.GGML_F16, t.half().numpy().tobytes())
    w.write(path)


# ----------------------------------------------------------------------------- main
def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--max-minutes", type=float, default=6.0)
    ap.add_argument("--smoke", action="store_true", help="tiny run to check the pipeline")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    random.seed(SEED)
    torch.manual_seed(SEED)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    cfg, hp = dict(CONFIG), dict(TRAIN)
    if args.smoke:
        cfg.update(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=128, vocab_size=512)
        hp.update(batch=8, eval_every=10, eval_batches=2, warmup=5)
    print(f"torch {torch.__version__} device {dev} "
          f"{torch.cuda.get_device_name() if dev == 'cuda' else ''}", flush=True)

    # --- data and tokenizer
    t0 = time.time()
    docs = [d.strip() for d in open(args.corpus, encoding="utf-8").read().split("\n\n") if d.strip()]
    tok = train_tokenizer(docs, cfg["vocab_size"])
    cfg["vocab_size"] = tok.get_vocab_size()
    tok.save(os.path.join(args.out, "tokenizer.json"))
    bos, eos = tok.token_to_id(BOS), tok.token_to_id(EOS)
    random.shuffle(docs)
    n_val = int(len(docs) * hp["val_frac"])
    enc = tok.encode_batch(docs)  # post-processor prepends BOS

    def stream(encs):
        ids = []
        for e in encs:
            ids += e.ids + [eos]
        return torch.tensor(ids, dtype=torch.long)
    val, train = stream(enc[:n_val]), stream(enc[n_val:])
    print(f"corpus: {len(docs)} docs, {sum(map(len, docs))} chars; vocab {cfg['vocab_size']}; "
          f"tokens train {len(train)} val {len(val)} ({sum(map(len, docs)) / (len(train) + len(val)):.2f} "
          f"chars/token); tokenizer {time.time() - t0:.1f}s", flush=True)
    train, val = train.to(dev), val.to(dev)

    # --- model
    model = Llama(cfg, hp["dropout"]).to(dev)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"config {json.dumps(cfg)}\ntrain {json.dumps(hp)}\nparams {n_params} ({n_params / 1e6:.2f} M)",
          flush=True)
    decay = [p for p in model.parameters() if p.dim() == 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": hp["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=hp["lr"], betas=hp["betas"], fused=(dev == "cuda"))
    steps = 30 if args.smoke else args.steps
    T, Bsz = cfg["ctx"], hp["batch"]
    gen = torch.Generator(device=dev)
    gen.manual_seed(SEED)

    def batch(data):
        ix = torch.randint(0, len(data) - T - 1, (Bsz,), device=dev, generator=gen)
        off = torch.arange(T + 1, device=dev)
        chunk = data[ix[:, None] + off[None, :]]
        return chunk[:, :-1], chunk[:, 1:]

    @torch.no_grad()
    def evaluate(data):
        model.eval()
        losses = []
        for _ in range(hp["eval_batches"]):
            x, y = batch(data)
            with torch.autocast(dev, dtype=torch.bfloat16, enabled=(dev == "cuda")):
                logits = model(x)
            losses.append(F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), y.reshape(-1)).item())
        model.train()
        return sum(losses) / len(losses)

    def lr_at(s):
        if s < hp["warmup"]:
            return hp["lr"] * (s + 1) / hp["warmup"]
        p = (s - hp["warmup"]) / max(1, steps - hp["warmup"])
        return hp["min_lr"] + 0.5 * (hp["lr"] - hp["min_lr"]) * (1 + math.cos(math.pi * p))

    log = {"config": cfg, "train": hp, "seed": SEED, "params": n_params, "curve": []}
    t_train = time.time()
    model.train()
    for s in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(s)
        x, y = batch(train)
        with torch.autocast(dev, dtype=torch.bfloat16, enabled=(dev == "cuda")):
            logits = model(x)
        loss = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), hp["grad_clip"])
        opt.step()
        if (s + 1) % hp["eval_every"] == 0 or s == steps - 1:
            tl, vl = evaluate(train), evaluate(val)
            el = time.time() - t_train
            log["curve"].append({"step": s + 1, "train_loss": round(tl, 4), "val_loss": round(vl, 4),
                                 "lr": lr_at(s), "seconds": round(el, 1)})
            print(f"step {s + 1:5d}  train {tl:.4f}  val {vl:.4f}  lr {lr_at(s):.2e}  {el:.0f}s", flush=True)
            if el > args.max_minutes * 60:
                print("time budget reached, stopping", flush=True)
                break
    log["train_seconds"] = round(time.time() - t_train, 1)
    log["steps_done"] = s + 1
    log["tokens_seen"] = (s + 1) * Bsz * T

    # --- freeze to what the GGUF holds: 2-D weights rounded to f16, everything then in f32
    model.eval()
    model = model.float().cpu()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.copy_(p.half().float())
    torch.save({"config": cfg, "state_dict": model.state_dict()}, os.path.join(args.out, "tfab-tiny.pt"))
    gguf_path = os.path.join(args.out, "tfab-tiny-f16.gguf")
    export_gguf(model, tok, gguf_path)
    print(f"wrote {gguf_path} ({os.path.getsize(gguf_path)} bytes)", flush=True)

    # --- samples (f32 on the CPU, the exported weights)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_num_threads(min(8, os.cpu_count() or 1))
    samples = []
    sg = torch.Generator().manual_seed(SEED)
    for prompt in ["Once upon a time", "The meaning of life is", "A programmer", "Love is"]:
        ids = tok.encode(prompt).ids
        g_ids = generate(model, ids, 48, eos=eos)
        t_ids = generate(model, ids, 48, temperature=0.8, eos=eos, gen=sg)
        samples.append({"prompt": prompt, "greedy": tok.decode(g_ids), "t0.8": tok.decode(t_ids)})
        print(f"--- {prompt!r}\n  greedy: {prompt}{tok.decode(g_ids)}\n  t=0.8 : {prompt}{tok.decode(t_ids)}",
              flush=True)
    log["samples"] = samples

    # --- reference data for tests (float32, CPU, f16-rounded weights = the GGUF's values)
    cases = tokenizer_cases.compute(os.path.join(args.out, "tokenizer.json"))
    tokenizer_cases.write_llama_vectors(cases, gguf_path)  # for llama.cpp's test-tokenizer-0
    ids = tok.encode(REF_PROMPT).ids
    with torch.no_grad():
        logits = model(torch.tensor([ids]))[0].double()
    last = logits[-1]
    top = torch.topk(last, 10)
    greedy = generate(model, ids, 64)
    ref = {
        "model": "tfab-tiny-f16.gguf",
        "note": "PyTorch float32 on CPU with the f16-rounded weights of the GGUF (norms f32). "
                "tokens include BOS (add_bos_token=true). greedy_64 = argmax continuation, "
                "no EOS stop, full recompute per step.",
        "prompt": REF_PROMPT,
        "tokens": ids,
        "top10_last": [[int(i), float(v)] for v, i in zip(top.values, top.indices)],
        "argmax_per_position": [int(i) for i in logits.argmax(-1)],
        "logits_last": [round(float(v), 6) for v in last],
        "greedy_64": greedy,
        "greedy_64_text": tok.decode(greedy),
        "tokenizer_cases": [{"text": c["text"], "ids": c["ids"]} for c in cases],
        "config": cfg,
    }
    with open(os.path.join(args.out, "tfab-tiny.ref.json"), "w") as f:
        json.dump(ref, f, indent=1)
    with open(os.path.join(args.out, "train_log.json"), "w") as f:
        json.dump(log, f, indent=1)
    print(f"ref: top10 {ref['top10_last'][:3]}... greedy: {REF_PROMPT}{ref['greedy_64_text']!r}")
    print(f"final: train {log['curve'][-1]['train_loss']} val {log['curve'][-1]['val_loss']} "
          f"after {log['steps_done']} steps, {log['train_seconds']} s, {log['tokens_seen']} tokens", flush=True)


if __name__ == "__main__":
    main()
