#!/usr/bin/env python3
"""PyTorch peer for probe_train: trains the same GPT-2 or Llama shape as each GPU record of an
fp8scope probe_train result (BF16 autocast, SDPA causal attention, fused AdamW, tied or untied
head, the same B, T, V; Llama: RMSNorm, rotary positions, SwiGLU, grouped-query attention
through SDPA's enable_gqa, no biases) in eager mode and with torch.compile, and writes our
result schema.
For an FP8 record it trains the FP8 model a PyTorch user without TransformerEngine would
write: the same linears in FP8 through torch._scaled_mm with tensorwise dynamic scaling (each
operand's own amax at every step), E4M3 forward and E5M2 gradients, saturating casts, the FP8
copies (not the BF16 inputs) saved for backward, the whole step under torch.compile.
The eager record carries the same point key as ours (the compiled one adds
",peer=torch.compile"), so the report puts them side by side.
Timing: wall clock per step after a device synchronize, median after warm-up, as ours."""
import argparse
import datetime
import json
import math
import re
import socket
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


E4M3_MAX, E5M2_MAX = 448.0, 57344.0


def quantize(x, dtype, fmax):
    """Tensorwise dynamic scaling: scale by this tensor's own amax, saturate, cast."""
    amax = x.abs().amax().float().clamp(min=1e-12)
    scale = fmax / amax
    return (x.float() * scale).clamp(-fmax, fmax).to(dtype), scale.reciprocal()


class Fp8Matmul(torch.autograd.Function):
    """y = x w^T (+ b) with x, w in E4M3 and the gradient in E5M2, every GEMM on
    torch._scaled_mm (row-major A, column-major B); backward reads the FP8 copies saved here."""

    @staticmethod
    def forward(ctx, x, w, b):
        x2 = x.reshape(-1, x.shape[-1])
        xq, sx = quantize(x2, torch.float8_e4m3fn, E4M3_MAX)
        wq, sw = quantize(w, torch.float8_e4m3fn, E4M3_MAX)
        y = torch._scaled_mm(xq, wq.t(), scale_a=sx, scale_b=sw, bias=b, out_dtype=torch.bfloat16)
        ctx.save_for_backward(xq, wq, sx, sw)
        ctx.has_bias = b is not None
        return y.reshape(*x.shape[:-1], w.shape[0])

    @staticmethod
    def backward(ctx, gy):
        xq, wq, sx, sw = ctx.saved_tensors
        g2 = gy.reshape(-1, gy.shape[-1])
        gq, sg = quantize(g2, torch.float8_e5m2, E5M2_MAX)
        dx = torch._scaled_mm(gq, wq.t().contiguous().t(), scale_a=sg, scale_b=sw, out_dtype=torch.bfloat16)
        dw = torch._scaled_mm(gq.t().contiguous(), xq.t().contiguous().t(), scale_a=sg, scale_b=sx, out_dtype=torch.float32)
        db = g2.float().sum(0) if ctx.has_bias else None
        return dx.reshape(*gy.shape[:-1], wq.shape[1]), dw, db


class Linear(nn.Linear):
    """nn.Linear whose matmul runs in FP8 when fp8 is set (the bias stays high precision)."""

    fp8 = False

    def forward(self, x):
        if not self.fp8:
            return super().forward(x)
        return Fp8Matmul.apply(x.to(torch.bfloat16), self.weight, None if self.bias is None else self.bias.to(torch.bfloat16))


class Block(nn.Module):
    def __init__(self, d, nh):
        super().__init__()
        self.nh = nh
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = Linear(d, 3 * d), Linear(d, d)
        self.fc, self.fcproj = Linear(d, 4 * d), Linear(4 * d, d)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.nh, C // self.nh).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).contiguous().view(B, T, C)
        x = x + self.proj(y)
        return x + self.fcproj(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))


def rope_cos_sin(T, hs, theta):
    """cos and sin [T, hs / 2] of the angles t * theta^(-2i / hs), computed in double (as ours)."""
    freq = theta ** (-torch.arange(0, hs, 2, dtype=torch.float64) / hs)
    angle = torch.outer(torch.arange(T, dtype=torch.float64), freq)
    return angle.cos().float(), angle.sin().float()


def rotate(x, cos, sin):
    """Rotary positions on x [B, H, T, hs]: channel pairs (2i, 2i + 1) turned by their angle."""
    pairs = x.float().unflatten(-1, (-1, 2))
    x0, x1 = pairs[..., 0], pairs[..., 1]
    return torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), dim=-1).flatten(-2).type_as(x)


class LlamaBlock(nn.Module):
    """Our arch llama block: RMSNorm, q/k/v fused (k and v of the kv heads), rotary positions,
    grouped-query SDPA, gate and up fused (gate first), SwiGLU, no biases."""

    def __init__(self, d, nh, nkv, ffn):
        super().__init__()
        self.nh, self.nkv, self.hs, self.ffn = nh, nkv, d // nh, ffn
        self.ln1, self.ln2 = nn.RMSNorm(d, eps=1e-5), nn.RMSNorm(d, eps=1e-5)
        self.qkv, self.proj = Linear(d, (nh + 2 * nkv) * self.hs, bias=False), Linear(d, d, bias=False)
        self.fc, self.fcproj = Linear(d, 2 * ffn, bias=False), Linear(ffn, d, bias=False)

    def forward(self, x, cos, sin):
        B, T, C = x.shape
        q, k, v = self.qkv(self.ln1(x)).split([self.nh * self.hs, self.nkv * self.hs, self.nkv * self.hs], dim=2)
        q = rotate(q.view(B, T, self.nh, self.hs).transpose(1, 2), cos, sin)
        k = rotate(k.view(B, T, self.nkv, self.hs).transpose(1, 2), cos, sin)
        v = v.view(B, T, self.nkv, self.hs).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=self.nkv != self.nh)
        x = x + self.proj(y.transpose(1, 2).contiguous().view(B, T, C))
        gate, up = self.fc(self.ln2(x)).split(self.ffn, dim=2)
        return x + self.fcproj(F.silu(gate) * up)


class GPT(nn.Module):
    def __init__(self, p):
        super().__init__()
        V = (p["vocab"] + p["pad_vocab_to"] - 1) // p["pad_vocab_to"] * p["pad_vocab_to"]
        d = p["d_model"]
        self.vocab = p["vocab"]
        self.llama = p.get("arch", "gpt2") == "llama"
        self.wte = nn.Embedding(V, d)
        if self.llama:
            nh = p["n_head"]
            nkv = p.get("n_kv_head", 0) or nh
            ffn = p.get("ffn", 0) or (8 * d // 3 + 63) // 64 * 64  # GptConfig::ffn_width
            self.blocks = nn.ModuleList(LlamaBlock(d, nh, nkv, ffn) for _ in range(p["n_layer"]))
            cos, sin = rope_cos_sin(p["max_seq"], d // nh, p.get("rope_theta", 10000.0))
            self.register_buffer("cos", cos, persistent=False)
            self.register_buffer("sin", sin, persistent=False)
            self.lnf = nn.RMSNorm(d, eps=1e-5)
        else:
            self.wpe = nn.Embedding(p["max_seq"], d)
            self.blocks = nn.ModuleList(Block(d, p["n_head"]) for _ in range(p["n_layer"]))
            self.lnf = nn.LayerNorm(d)
        self.head = Linear(d, V, bias=False)
        if p["tied"]:
            self.head.weight = self.wte.weight
        for name, w in self.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(w)
            elif w.dim() == 2:
                std = 0.02 / math.sqrt(2 * p["n_layer"]) if ("proj" in name) else 0.02
                nn.init.normal_(w, 0.0, std)

    def forward(self, idx, targets):
        T = idx.shape[1]
        if self.llama:
            x = self.wte(idx)
            for b in self.blocks:
                x = b(x, self.cos[:T], self.sin[:T])
        else:
            x = self.wte(idx) + self.wpe(torch.arange(T, device=idx.device))
            for b in self.blocks:
                x = b(x)
        logits = self.head(self.lnf(x))[..., : self.vocab]  # padded logits excluded
        return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1))


def set_fp8(model, p):
    """The linears our FP8 record runs in FP8 (its fp8_linears), as ours."""
    names = p.get("fp8_linears", "all")
    wanted = {"qkv", "proj", "fc1", "fc2", "lm_head"} if names == "all" else set() if names == "none" else set(names.split(","))
    for b in model.blocks:
        b.qkv.fp8, b.proj.fp8, b.fc.fp8, b.fcproj.fp8 = "qkv" in wanted, "proj" in wanted, "fc1" in wanted, "fc2" in wanted
    model.head.fp8 = "lm_head" in wanted  # a tied head casts the shared weight like any other


def run(p, compile_mode, steps, warmup, fp8=False):
    torch.manual_seed(p["seed"])
    model = GPT(p).cuda()
    if fp8:
        set_fp8(model, p)
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


def resumed_records(out_path, ours):
    """The records of an earlier peer run at out_path, when it was made beside this very result
    (same file name and start time); [] when there is none. A record the time limit cut off was
    never written, so every record present is complete."""
    try:
        prev = json.load(open(out_path))
    except FileNotFoundError:
        return []
    meta = prev.get("meta", {})
    if meta.get("peer_of_started_utc") != ours["meta"].get("started_utc", ""):
        sys.exit(f"{out_path}: a peer of another run (started {meta.get('peer_of_started_utc')!r}, this result "
                 f"{ours['meta'].get('started_utc', '')!r}); not resuming it")
    return list(prev.get("records", []))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("ours", help="an fp8scope probe_train result (.json)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=8)
    ap.add_argument("--no-compile", action="store_true", help="eager only")
    ap.add_argument("--compile-first", action="store_true", help="torch.compile only for the first record (compiling takes minutes)")
    ap.add_argument("--compile-only", action="store_true", help="BF16 records: torch.compile only, no eager run")
    ap.add_argument("--no-fp8", action="store_true", help="no FP8 peer for the FP8 records")
    ap.add_argument("--resume", action="store_true",
                    help="keep the records an earlier run of this command wrote to --out (beside the same result) and run only the rest: "
                         "a peer too long for one time limit finishes over several runs")
    ap.add_argument("--skip", metavar="REGEX", default=None,
                    help="no peer for the records whose key matches (e.g. 'precision=fp8.*variant=custom': one FP8 peer for two variants)")
    args = ap.parse_args()
    skip = re.compile(args.skip) if args.skip else None
    ours = json.load(open(args.ours))
    records = resumed_records(args.out, ours) if args.resume else []
    done = {r["key"] for r in records}
    if records:
        print(f"resuming: {len(records)} peer records of {args.out} kept", flush=True)
    first = True

    def save(recs):
        pr = torch.cuda.get_device_properties(0)
        env = {"host": socket.gethostname(), "torch": torch.__version__, "torch_cuda": torch.version.cuda,
               "time_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
               "gpu": {"name": pr.name, "sm_count": pr.multi_processor_count, "memory_mib": pr.total_memory >> 20}}
        meta = {"probe": "train", "sweep": ours["meta"].get("sweep", ""),
                "peer": "PyTorch GPT-2 / Llama (BF16 autocast, SDPA, fused AdamW; FP8 records: torch._scaled_mm tensorwise, compiled)",
                "peer_of": args.ours.split("/")[-1], "peer_of_started_utc": ours["meta"].get("started_utc", ""), "argv": sys.argv}
        json.dump({"schema_version": 1, "meta": meta, "env": env, "records": recs}, open(args.out, "w"), indent=1)

    save(records)
    for rec in ours["records"]:
        p = rec["params"]
        if p.get("backend") != "gpu" or rec.get("outcome") != "ok":
            continue
        fp8 = p.get("precision", "bf16") == "fp8"
        if (fp8 and args.no_fp8) or (skip and skip.search(rec["key"])):
            continue
        compile_this = not args.no_compile and (first or not args.compile_first)
        first = False
        # FP8 is measured compiled only: eager runs every cast as its own kernels.
        modes = ([True] if compile_this else []) if fp8 else ([False, True] if compile_this else [False])
        if args.compile_only and not fp8:
            modes = [True] if compile_this else []
        for mode in modes:
            key = rec["key"] + (",peer=torch.compile" if mode else "")
            if key in done:
                continue
            what = ("torch.compile" if mode else "torch eager") + (" FP8 tensorwise" if fp8 else "")
            try:
                data = run(p, mode, args.steps, args.warmup, fp8)
                out = {"key": key, "params": dict(p, peer=what), "outcome": "ok", **data}
            except torch.OutOfMemoryError as e:
                out = {"key": key, "params": p, "outcome": "oom", "reason": str(e).splitlines()[0]}
            except Exception as e:  # noqa: BLE001 - a peer that cannot run is recorded, the others still run
                out = {"key": key, "params": dict(p, peer=what), "outcome": "crashed", "reason": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
            records.append(out)
            save(records)  # after every record: a time limit loses nothing measured
            print(f"{out['outcome']:<6} {what:<30} {out.get('headline', out.get('reason', ''))}", flush=True)
            torch.cuda.empty_cache()
            torch._dynamo.reset()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
