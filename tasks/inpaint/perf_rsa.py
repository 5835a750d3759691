"""RSA speed and memory: one MSSA GAN generator step (forward + backward of 100 L_m) at 128 px.

For each batch size (paper: 1 / 8 / 64) and attention path ('sdpa' = F.scaled_dot_product_attention,
the memory-efficient path; 'math' = explicit softmax(QK^T)V, which materialises the (P x P') scores),
prints the median time per step and the peak memory (CUDA allocator peak on GPU; on CPU the process's
peak RSS growth, a coarse upper bound).  A configuration that runs out of memory is reported as OOM.
Also prints the analytic size of one fp32 branch-1 score tensor, the reason the paper's batch 64
needs the memory-efficient path (12.9 GB at batch 64).

    python -m tasks.inpaint.perf_rsa [--batches 1,8,64] [--nf 64] [--size 128] [--hole 64] [--repeats 3]
"""
from __future__ import annotations

import argparse
import gc
import resource
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from tasks.inpaint.mssa_gan import LAMBDAS, MSSAGenerator


def score_bytes(batch: int, size: int, hole: int) -> int:
    """fp32 bytes of the branch-1 (hole x background) attention scores at the full-resolution RSA."""
    p = hole * hole
    return 4 * batch * p * (size * size - p)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def step_cost(batch: int, attention: str, nf: int = 64, size: int = 128, hole: int = 64, repeats: int = 3,
              device: str = "cpu") -> dict:
    torch.manual_seed(0)
    net = MSSAGenerator(nf, attention=attention).to(device)
    x = torch.rand(batch, 3, size, size, device=device) * 2 - 1
    mask = torch.zeros(batch, 1, size, size, device=device)
    t0 = (size - hole) // 2
    mask[..., t0:t0 + hole, t0:t0 + hole] = 1

    def step():
        outs = net(x * (1 - mask) + 0.1 * x * mask, mask)
        loss = sum(lam * F.l1_loss(o, F.adaptive_avg_pool2d(x, o.shape[-1])) for lam, o in zip(LAMBDAS, outs))
        loss.backward()
        net.zero_grad(set_to_none=True)

    cuda = device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    rss0 = _peak_rss_mb()
    try:
        step()  # warm-up
        sync()
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            step()
            sync()
            times.append(time.perf_counter() - t)
    except torch.OutOfMemoryError:
        return {"batch": batch, "attention": attention, "status": "OOM"}
    finally:
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()
    mem = torch.cuda.max_memory_allocated() / 2 ** 20 if cuda else _peak_rss_mb() - rss0
    return {"batch": batch, "attention": attention, "status": "ok", "s_per_step": statistics.median(times),
            "peak_mb": mem, "memory_kind": "CUDA peak allocated" if cuda else "peak RSS growth (upper bound)"}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="RSA speed / memory per MSSA generator step")
    ap.add_argument("--batches", default="1,8,64")
    ap.add_argument("--nf", type=int, default=64)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--hole", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--attention", default="sdpa,math")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args(argv)
    print(f"MSSA generator nf={args.nf}, {args.size} px, {args.hole}-px hole, device {args.device}")
    for b in [int(v) for v in args.batches.split(",")]:
        print(f"batch {b:3d}: branch-1 scores at {args.size} px = {score_bytes(b, args.size, args.hole) / 1e9:.2f} GB fp32")
        for att in args.attention.split(","):
            r = step_cost(b, att, args.nf, args.size, args.hole, args.repeats, args.device)
            if r["status"] != "ok":
                print(f"    {att:5s}  {r['status']}")
            else:
                print(f"    {att:5s}  {r['s_per_step']:.3f} s/step  peak {r['peak_mb']:.0f} MB ({r['memory_kind']})")
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
