#!/usr/bin/env python3
"""PyTorch peer for probe_train: trains the same GPT-2 shape as each GPU record of an
fp8scope probe_train result (BF16 autocast, SDPA causal attention, fused AdamW, tied or untied
head, the same B, T, V) in eager mode and with torch.compile, and writes our result schema.
The eager record carries the same point key as ours, so the report puts them side by side.
Timing: wall clock per step after a device synchronize, median after warm-up, as ours."""
import argparse
import datetime
import json
import math
import socket
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, d, nh):
        super().__init__()
        self.nh = nh
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc, self.fcproj = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.nh, C // self.nh).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).contiguous().view(B, T, C)
        x = x + self.proj(y)
        return x + self.fcproj(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))


class GPT(nn.Module):
    def __init__(self, p):
        super().__init__()
        V = (p["vocab"] + p["pad_vocab_to"] - 1) // p["pad_vocab_to"] * p["pad_vocab_to"]
        d = p["d_model"]
        self.vocab = p["vocab"]
        self.wte, self.wpe = nn.Embedding(V, d), nn.Embedding(p["max_seq"], d)
        self.blocks = nn.ModuleList(Block(d, p["n_head"]) for _ in range(p["n_layer"]))
        self.lnf = nn.LayerNorm(d)
        self.head = nn.Linear(d, V, bias=False)
        if p["tied"]:
            self.head.weight = self.wte.weight
        for name, w in self.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(w)
            elif w.dim() == 2:
                std = 0.02 / math.sqrt(2 * p["n_layer"]) if ("proj" in name) else 0.02
                nn.init.normal_(w, 0.0, std)

    def forward(self, idx, targets):
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1], device=idx.device))
        for b in self.blocks:
            x = b(x)
        logits = self.head(self.lnf(x))[..., : self.vocab]  # padded logits excluded
        return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1))


def run(p, compile_mode, steps, warmup):
    torch.manual_seed(p["seed"])
    model = GPT(p).cuda()
    opt = torch.optim.AdamW(model.parameters(), lr=p["lr"], betas=(0.9, 0.95), eps=1e-8,
                            weight_decay=p["weight_decay"], fused=True)
    fwd = torch.compile(model) if compile_mode else model
    B, T = p["batch"], p["seq_len"]
    gen = torch.Generator(device="cuda").manual_seed(1)
    losses, ms = [], []
    torch.cuda.reset_peak_memory_stats()
    for _ in range(steps):
        idx = torch.randint(0, p["vocab"], (B, T + 1), device="cuda", generator=gen)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = fwd(idx[:, :-1], idx[:, 1:])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), p["grad_clip"])
        opt.step()
        opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        ms.append((time.perf_counter() - t0) * 1e3)
        losses.append(loss.item())
    timed = sorted(ms[warmup:])
    med = timed[len(timed) // 2]
    q1, q3 = timed[len(timed) // 4], timed[(3 * len(timed)) // 4]
    return {"train": {"loss": losses, "step_ms": ms},
            "timing": {"median": med, "q1": q1, "q3": q3, "iqr": q3 - q1, "rel_iqr": (q3 - q1) / med, "n": len(timed), "unit": "ms"},
            "metrics": {"ms_per_step": med, "tokens_per_s": B * T / (med * 1e-3),
                        "peak_memory_mib": torch.cuda.max_memory_allocated() / 2**20},
            "headline": f"{B * T / (med * 1e-3):.0f} tokens/s, {med:.2f} ms/step"}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("ours", help="an fp8scope probe_train result (.json)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=8)
    ap.add_argument("--no-compile", action="store_true", help="eager only")
    ap.add_argument("--compile-first", action="store_true", help="torch.compile only for the first record (compiling takes minutes)")
    args = ap.parse_args()
    ours = json.load(open(args.ours))
    records = []
    first = True
    for rec in ours["records"]:
        p = rec["params"]
        if p.get("backend") != "gpu" or p.get("precision", "bf16") != "bf16":
            continue  # the peer trains in BF16 only (an FP8 peer needs TransformerEngine)
        compile_this = not args.no_compile and (first or not args.compile_first)
        first = False
        for mode in ([False, True] if compile_this else [False]):
            key = rec["key"] + (",peer=torch.compile" if mode else "")
            try:
                data = run(p, mode, args.steps, args.warmup)
                out = {"key": key, "params": dict(p, peer="torch.compile" if mode else "torch eager"), "outcome": "ok", **data}
            except torch.OutOfMemoryError as e:
                out = {"key": key, "params": p, "outcome": "oom", "reason": str(e).splitlines()[0]}
            records.append(out)
            print(f"{out['outcome']:<6} {'compile' if mode else 'eager  '} {out.get('headline', out.get('reason', ''))}", flush=True)
            torch.cuda.empty_cache()
    pr = torch.cuda.get_device_properties(0)
    env = {"host": socket.gethostname(), "torch": torch.__version__, "torch_cuda": torch.version.cuda,
           "time_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
           "gpu": {"name": pr.name, "sm_count": pr.multi_processor_count, "memory_mib": pr.total_memory >> 20}}
    meta = {"probe": "train", "sweep": ours["meta"].get("sweep", ""), "peer": "PyTorch GPT-2 (BF16 autocast, SDPA, fused AdamW)",
            "peer_of": args.ours.split("/")[-1], "peer_of_started_utc": ours["meta"].get("started_utc", ""), "argv": sys.argv}
    json.dump({"schema_version": 1, "meta": meta, "env": env, "records": records}, open(args.out, "w"), indent=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
