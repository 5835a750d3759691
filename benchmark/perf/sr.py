"""Forward+backward speed of our RCAN and RRDBNet (ESRGAN) against spandrel's, side by side.

    python -m benchmark.perf.sr [--device cpu|cuda] [--size 24] [--batch 2] [--repeats 10]

Both libraries' networks are built at the papers' settings (RCAN: 10 groups x 20 RCAB, 64 features,
reduction 16; RRDBNet: 23 RRDB, 64 features, growth 32; x4), ours' weights are copied into theirs
and both must give the same output (checked on CPU, reported as max|diff|), and the same input goes
through both in one process.  One timed step = zero grads, forward, L1 loss to a fixed target,
backward, device sync.  Steps of ours and theirs alternate (so load on a shared machine hits both
alike); after ``--warmup`` steps each, the median of ``--repeats`` is reported with the ratio
ours / spandrel (target <= 1.0), and the minimum (the least disturbed step on a shared machine).
spandrel is an optional dependency (``pip install .[bench]``).
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from tasks.sr.esrgan import RRDBNet
from tasks.sr.rcan import RCAN


def _spandrel():
    try:
        from spandrel.architectures.ESRGAN import ESRGAN
        from spandrel.architectures.RCAN import RCAN as SpandrelRCAN
    except ImportError as exc:
        raise SystemExit(f"benchmark.perf.sr needs spandrel (the 'bench' extra: pip install spandrel): {exc}")
    return SpandrelRCAN, ESRGAN


def copy_weights(src: nn.Module, dst: nn.Module) -> None:
    """Copy ``src``'s trainable tensors into ``dst``'s, in definition order (shapes must match)."""
    theirs = [p for p in dst.parameters() if p.requires_grad]
    ours = list(src.parameters())
    if len(ours) != len(theirs):
        raise ValueError(f"{len(ours)} parameter tensors vs {len(theirs)}: not the same architecture")
    with torch.no_grad():
        for a, b in zip(ours, theirs):
            if a.shape != b.shape:
                raise ValueError(f"parameter shape {tuple(a.shape)} vs {tuple(b.shape)}")
            b.copy_(a)


def pairs(scale: int = 4) -> dict[str, tuple[nn.Module, nn.Module, float]]:
    """{name: (ours, spandrel's, max |output difference|)} at paper settings, with identical weights;
    the difference is measured on CPU in float32 on a small random input and must be at rounding level."""
    SpandrelRCAN, ESRGAN = _spandrel()
    theirs_rcan = SpandrelRCAN(scale=scale, n_resgroups=10, n_resblocks=20, n_feats=64, reduction=16)
    for shift in (theirs_rcan.sub_mean, theirs_rcan.add_mean):  # frozen in the official code too
        shift.requires_grad_(False)
    out = {"RCAN": (RCAN(nf=64, n_groups=10, n_blocks=20, reduction=16, scale=scale), theirs_rcan),
           "RRDBNet": (RRDBNet(nf=64, nb=23, gc=32, scale=scale),
                       ESRGAN(in_nc=3, out_nc=3, num_filters=64, num_blocks=23, scale=scale))}
    x = torch.rand(1, 3, 12, 12)
    for name, (ours, theirs) in out.items():
        copy_weights(ours, theirs)
        with torch.no_grad():
            diff = float((ours(x.clone()) - theirs(x.clone())).abs().max())
        if diff > 1e-4:
            raise SystemExit(f"{name}: ours and spandrel's differ by {diff:.2e} with the same weights")
        out[name] = (ours, theirs, diff)
    return out


def _step(net: nn.Module, x: torch.Tensor, target: torch.Tensor, sync: Callable[[], None]) -> float:
    net.zero_grad(set_to_none=True)
    inp = x.clone()  # spandrel's RCAN scales its input in place
    sync()
    t0 = time.perf_counter()
    F.l1_loss(net(inp), target).backward()
    sync()
    return time.perf_counter() - t0


def bench(ours: nn.Module, theirs: nn.Module, x: torch.Tensor, scale: int, warmup: int, repeats: int,
          sync: Callable[[], None]) -> tuple[list[float], list[float]]:
    """-> (timed seconds of ours, of theirs)."""
    target = torch.rand(x.shape[0], x.shape[1], x.shape[2] * scale, x.shape[3] * scale, device=x.device)
    times: dict[int, list[float]] = {0: [], 1: []}
    for i in range(warmup + repeats):
        order = (0, 1) if i % 2 == 0 else (1, 0)
        for j in order:
            t = _step((ours, theirs)[j], x, target, sync)
            if i >= warmup:
                times[j].append(t)
    return times[0], times[1]


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(prog="python -m benchmark.perf.sr", description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--size", type=int, default=None, help="LR input side (default 64 on GPU, 24 on CPU)")
    ap.add_argument("--batch", type=int, default=None, help="batch (default 16 on GPU, 2 on CPU)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--models", default="RCAN,RRDBNet")
    ap.add_argument("--channels-last", action="store_true", help="run both in channels_last memory format")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    size = args.size or (64 if cuda else 24)
    batch = args.batch or (16 if cuda else 2)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.benchmark = True
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    x = torch.rand(batch, 3, size, size, device=dev).contiguous(memory_format=fmt)
    rows = []
    print(f"device {dev} ({torch.cuda.get_device_name(dev) if cuda else f'{torch.get_num_threads()} threads'}), "
          f"torch {torch.__version__}, input {tuple(x.shape)}, x4, {args.repeats} timed steps after "
          f"{args.warmup} warm-up, median; channels_last={args.channels_last}")
    print(f"{'model':<9}{'params':>12}{'ours ms':>10}{'spandrel ms':>13}{'ratio':>7}"
          f"{'ours min':>10}{'spandrel min':>14}{'ratio':>7}{'max|diff|':>11}")
    for name, (ours, theirs, diff) in pairs().items():
        if name not in args.models.split(","):
            continue
        ours, theirs = (m.to(dev, memory_format=fmt).train() for m in (ours, theirs))
        t_ours, t_theirs = bench(ours, theirs, x, 4, args.warmup, args.repeats, sync)
        n = sum(p.numel() for p in ours.parameters())
        med, low = (statistics.median(t_ours), statistics.median(t_theirs)), (min(t_ours), min(t_theirs))
        rows.append({"model": name, "params": n, "ours_s": med[0], "spandrel_s": med[1], "ratio": med[0] / med[1],
                     "ours_min_s": low[0], "spandrel_min_s": low[1], "max_abs_diff": diff})
        print(f"{name:<9}{n:>12,}{med[0] * 1e3:>10.1f}{med[1] * 1e3:>13.1f}{med[0] / med[1]:>7.3f}"
              f"{low[0] * 1e3:>10.1f}{low[1] * 1e3:>14.1f}{low[0] / low[1]:>7.3f}{diff:>11.2e}")
        del ours, theirs
    return rows


if __name__ == "__main__":
    main()
