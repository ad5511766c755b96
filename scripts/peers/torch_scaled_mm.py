#!/usr/bin/env python3
"""PyTorch peer for probe_gemm: re-measures the GEMMs of an fp8scope result file with
torch._scaled_mm (FP8) and torch.mm (BF16/FP16/FP32) on the same GPU, and writes the same
result schema with the same point keys, so `fp8scope report --peer` shows ours vs PyTorch.

Mapping: our spec is column-major TN, D[m x n] = A^T B with A stored k x m and B stored k x n.
Read as row-major, A is X_a [m x k] and B is X_b [n x k], and D (column-major m x n) is the
row-major [n x m] matrix X_b @ X_a^T. So torch gets mat1 = X_b (row-major), mat2 = X_a.t()
(column-major), the layout _scaled_mm requires.

Scale modes (a_scale / b_scale): per tensor -> scalar scales; per row (outer_vec) -> torch's
row-wise scales ([n, 1] for mat1, [1, m] for mat2); 1x128 and 128x128 blocks -> torch's
block-wise scales, one float per block, as torch documents them (outer-dimension-major); the
microscaling modes are not mapped (recorded as skipped), a pair torch refuses is recorded as
run_rejected with its message. The peer quantises N(0,1) data per block whatever the `inputs` axis says: it measures
speed and its own accuracy, not the outlier experiment.

Timing matches fp8scope: CUDA events, warm-up, L2 flushed before every sample, at least
min_samples samples until IQR/median < noise_target or the time cap; median and spread.
"""
import argparse
import datetime
import json
import math
import os
import platform
import socket
import subprocess
import sys

import torch

SCHEMA_VERSION = 1
DTYPES = {"e4m3": torch.float8_e4m3fn, "e5m2": torch.float8_e5m2, "bf16": torch.bfloat16,
          "fp16": torch.float16, "fp32": torch.float32}
FP8_MAX = {"e4m3": 448.0, "e5m2": 57344.0}


def quantiles(xs):
    s = sorted(xs)
    def q(p):
        pos = p * (len(s) - 1)
        lo = math.floor(pos)
        hi = min(lo + 1, len(s) - 1)
        return s[lo] + (pos - lo) * (s[hi] - s[lo])
    mean = sum(s) / len(s)
    sd = math.sqrt(sum((x - mean) ** 2 for x in s) / (len(s) - 1)) if len(s) > 1 else 0.0
    med = q(0.5)
    return {"n": len(s), "min": s[0], "max": s[-1], "mean": mean, "median": med, "q1": q(0.25),
            "q3": q(0.75), "iqr": q(0.75) - q(0.25), "rel_stdev": sd / mean if mean else 0.0,
            "rel_iqr": (q(0.75) - q(0.25)) / med if med else 0.0, "unit": "ms"}


def time_fn(fn, settings, flush):
    for _ in range(settings.get("warmup", 3)):
        fn()
    torch.cuda.synchronize()
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    ms, t0 = [], datetime.datetime.now()
    while True:
        # Keep the GPU busy while Python enqueues the flush and the GEMM, so the events time
        # the GEMM and not the launch latency of the interpreter (tens of microseconds, as long
        # as the small GEMMs themselves).
        torch.cuda._sleep(200_000)
        flush.zero_()
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        ms.append(start.elapsed_time(stop))
        n = len(ms)
        if n >= settings.get("max_samples", 200):
            break
        if n >= settings.get("min_samples", 10):
            if quantiles(ms)["rel_iqr"] <= settings.get("noise_target", 0.02):
                break
            if (datetime.datetime.now() - t0).total_seconds() > settings.get("time_cap_s", 1.0):
                break
    return quantiles(ms)


def env_block():
    p = torch.cuda.get_device_properties(0)
    try:
        driver = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                capture_output=True, text=True, timeout=30).stdout.strip()
    except Exception:  # noqa: BLE001 - the driver version is informative only
        driver = ""
    return {"host": socket.gethostname(), "python": platform.python_version(), "torch": torch.__version__,
            "torch_cuda": torch.version.cuda, "time_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "gpu": {"name": p.name, "sm_count": p.multi_processor_count,
                    "compute_capability": f"{p.major}.{p.minor}", "memory_mib": p.total_memory >> 20,
                    "driver": driver, "cublaslt_version": None}}


# Block extent (outer rows, inner K columns) of each scale mode torch._scaled_mm offers; None =
# the whole extent.
BLOCK = {"tensor": (None, None), "outer_vec": (1, None), "vec128": (1, 128), "blk128": (128, 128)}


def quantize_blocks(x, fmt, mode):
    """x [rows x k] float -> (codes, dequantisation scales per block, dequantised values)."""
    bo, bk = BLOCK[mode]
    rows, k = x.shape
    bo, bk = bo or rows, bk or k
    xp = torch.nn.functional.pad(x, (0, -k % bk, 0, -rows % bo))
    blocks = xp.reshape(xp.shape[0] // bo, bo, xp.shape[1] // bk, bk)
    amax = blocks.abs().amax(dim=(1, 3))
    scale = torch.where(amax > 0, amax / FP8_MAX[fmt], torch.ones_like(amax))
    full = scale.repeat_interleave(bo, 0).repeat_interleave(bk, 1)[:rows, :k]
    codes = (x / full).clamp(-FP8_MAX[fmt], FP8_MAX[fmt]).to(DTYPES[fmt])
    if mode == "tensor":
        scale = scale.reshape(())
    elif mode == "vec128":
        scale = scale.t().contiguous().t()  # outer-dimension-major, as torch wants 1x128 scales
    return codes, scale.float(), codes.float() * full


def measure(rec, settings, flush):
    g = rec["gemm"]
    m, n, k = g["m"], g["n"], g["k"]
    if g["layout"] != "TN" or g["batch"] != 1 or g["epilogue"] != "none" or any(
            g[o] for o in ("a_offset", "b_offset", "d_offset", "scale_offset")):
        return "skipped", "the peer measures plain TN GEMMs only", None
    ta, tb, td = g["a"], g["b"], g["d"]
    need = (m * k + n * k) * 4 + m * n * 8
    if need > 0.9 * torch.cuda.mem_get_info()[0]:
        return "oom", f"needs {need / 2**30:.1f} GiB of device memory", None
    gen = torch.Generator(device="cuda").manual_seed(1)
    xa = torch.randn(m, k, device="cuda", generator=gen)
    xb = torch.randn(n, k, device="cuda", generator=gen)
    fp8 = ta in FP8_MAX or tb in FP8_MAX
    modes = (g.get("a_scale", "tensor"), g.get("b_scale", "tensor"))
    if any(md not in BLOCK for md in modes):
        return "skipped", "the peer maps tensor, outer_vec, vec128 and blk128 scales only, not " + "/".join(
            md for md in modes if md not in BLOCK), None
    try:
        if fp8 and modes != ("tensor", "tensor"):
            # mat1 = X_b [n x k] with our B's mode, mat2 = X_a^T with our A's mode.
            b8, sb, db = quantize_blocks(xb, tb, modes[1])
            a8, sa, da = quantize_blocks(xa, ta, modes[0])
            fast = bool(g["fast_accum"])
            sa_t = sa.t() if modes[0] != "tensor" else sa  # mat2's scales, outer (m) last
            fn = lambda: torch._scaled_mm(b8, a8.t(), scale_a=sb, scale_b=sa_t, out_dtype=DTYPES[td], use_fast_accum=fast)
            ref = db @ da.t()
        elif fp8:
            qa, qb = FP8_MAX[ta] / 8, FP8_MAX[tb] / 8
            a8 = (xa * qa).to(DTYPES[ta])
            b8 = (xb * qb).to(DTYPES[tb])
            sa = torch.tensor(1.0 / qa, device="cuda")
            sb = torch.tensor(1.0 / qb, device="cuda")
            fast = bool(g["fast_accum"])
            fn = lambda: torch._scaled_mm(b8, a8.t(), scale_a=sb, scale_b=sa, out_dtype=DTYPES[td], use_fast_accum=fast)
            ref = b8.float() @ a8.float().t() / (qa * qb)
        else:
            a = xa.to(DTYPES[ta])
            b = xb.to(DTYPES[tb])
            fn = lambda: torch.mm(b, a.t())
            ref = b.float() @ a.float().t()
        out = fn().float()
        rel = (torch.linalg.norm(out - ref) / torch.linalg.norm(ref)).item()
    except torch.OutOfMemoryError as e:
        return "oom", str(e).splitlines()[0][:300], None
    except (RuntimeError, TypeError, ValueError) as e:
        return "run_rejected", str(e).splitlines()[0][:300], None
    t = time_fn(fn, settings, flush)
    del ref, out
    flops = 2.0 * m * n * k
    data = {"timing": t, "accuracy": {"rel_error": rel},
            "metrics": {"ms": t["median"], "tflops": flops / (t["median"] * 1e-3) / 1e12}}
    return "ok", "", data


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("ours", help="an fp8scope probe_gemm result (.json)")
    ap.add_argument("--out", required=True, help="output .json")
    args = ap.parse_args()
    with open(args.ours) as f:
        ours = json.load(f)
    settings = dict(ours.get("meta", {}).get("settings", {}))
    l2 = torch.cuda.get_device_properties(0).L2_cache_size
    flush = torch.empty(2 * l2 // 4, dtype=torch.float32, device="cuda")
    records = []
    for rec in ours["records"]:
        out = {"key": rec["key"], "params": rec["params"]}
        if "gemm" not in rec:
            out.update(outcome="skipped", reason="no GEMM in our record")
        else:
            outcome, reason, data = measure(rec, settings, flush)
            out["outcome"] = outcome
            if reason:
                out["reason"] = reason
            if data:
                out.update(data)
                out["headline"] = f"{data['metrics']['tflops']:.1f} TFLOP/s"
        records.append(out)
        print(f"[{len(records)}/{len(ours['records'])}] {out['outcome']:<12} {rec['key']}  {out.get('headline', out.get('reason', ''))}",
              flush=True)
    meta = {"probe": ours.get("meta", {}).get("probe", "gemm"), "sweep": ours.get("meta", {}).get("sweep", ""),
            "peer": "torch._scaled_mm / torch.mm", "peer_of": os.path.basename(args.ours),
            "peer_of_started_utc": ours.get("meta", {}).get("started_utc", ""), "argv": sys.argv,
            "settings": settings}
    with open(args.out, "w") as f:
        json.dump({"schema_version": SCHEMA_VERSION, "meta": meta, "env": env_block(), "records": records}, f, indent=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
