"""Is the data pipeline fast enough?  PathImgSR builder pairs/s, DataModule samples/s and the training
step rate of a method on the same batches, side by side.

    python -m benchmark.perf.data [--method rcan] [--profile smoke|paper] [--batches 20] [--paper-sizes]

1. Builder: the smoke PathImgSR (or, with ``--paper-sizes``, the paper's 256 -> 1024 pairs in a 1050
   window, a few per slide) built from the shared real slides into a fresh temporary folder.
2. DataModule: samples/s of the PathImgSR training loader with the profile's workers.
3. Training: samples/s the method consumes (forward + backward + optimizer step) on those batches.
The data side must outpace training (ratio > 1) or the GPU waits for it.
"""
from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import lightning as L
import torch

from benchmark.specs import BuildContext
from datamodules.base import data_root, weights_root
from datamodules.pathimgsr import SMOKE, PathImgSRDataModule
from datamodules.pathimgsr_builder import build, find_slides, slide_name
from datamodules.wsi_pyramid import pyramid_from_slide
from tasks.sr.registry import METHODS


def builder_rate(tmp: Path, paper_sizes: bool) -> tuple[float, int, Path]:
    for p in find_slides(data_root() / "wsi"):
        pyramid_from_slide(p, tmp / "slides" / f"{slide_name(p)}.tif")
    settings = SMOKE if not paper_sizes else dataclasses.replace(
        SMOKE, lr_size=256, window=1050, n_train=(1, 1), n_test=(1, 1))
    report = build(tmp / "slides", tmp / "data", settings=settings, workers=0, log=lambda m: None)
    return report.pairs_per_second, report.new_pairs, tmp / "data"


def loader_rate(loader, batches: int) -> tuple[float, list[dict]]:
    kept, n, t0 = [], 0, time.perf_counter()
    while n < batches:
        for batch in loader:
            kept.append(batch)
            n += 1
            if n == batches:
                break
    return sum(b["lr"].shape[0] for b in kept) / (time.perf_counter() - t0), kept


def training_rate(module: L.LightningModule, batches: list[dict], device: torch.device) -> float:
    opt = module.configure_optimizers()
    opt = opt["optimizer"] if isinstance(opt, dict) else opt[0][0]
    net = module.inference_net().to(device).train()
    batches = [{k: v.to(device) for k, v in b.items() if torch.is_tensor(v)} for b in batches]
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for b in batches[:2]:  # warm-up
        torch.nn.functional.l1_loss(net(b["lr"]), b["hr"]).backward()
    sync()
    t0 = time.perf_counter()
    for b in batches:
        opt.zero_grad()
        torch.nn.functional.l1_loss(net(b["lr"]), b["hr"]).backward()
        opt.step()
    sync()
    return sum(b["lr"].shape[0] for b in batches) / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmark.perf.data", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--method", default="rcan")
    p.add_argument("--profile", default="smoke", choices=["smoke", "paper"])
    p.add_argument("--batches", type=int, default=20)
    p.add_argument("--paper-sizes", action="store_true", help="time the builder at 256 -> 1024 pairs")
    args = p.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with tempfile.TemporaryDirectory() as tmp:
        pairs_s, n_pairs, root = builder_rate(Path(tmp), args.paper_sizes)
        print(f"builder:    {pairs_s:8.2f} pairs/s  ({n_pairs} pairs, 1 process)")
        ctx = BuildContext("sr", "pathimgsr_x4", args.profile, 4, 3, weights_root())
        module, plan = METHODS[args.method].build(ctx)
        for cache in (None, Path(tmp) / "decoded"):
            dm = PathImgSRDataModule(root, scale=4, patch=plan.patch_size, batch_size=plan.batch_size,
                                     decoded_cache=cache)
            dm.setup("fit")
            loader_rate(dm.train_dataloader(), 1 if cache is None else args.batches)  # fills the cache
            data_s, batches = loader_rate(dm.train_dataloader(), args.batches)
            print(f"datamodule: {data_s:8.1f} samples/s (batch {plan.batch_size}, HR patch {plan.patch_size}, "
                  f"{'memory-mapped decoded cache' if cache else 'PNG decode per sample'})")
        train_s = training_rate(module, batches, device)
        print(f"training:   {train_s:8.1f} samples/s ({args.method}, {args.profile} size, {device})")
        print(f"data / training = {data_s / train_s:.2f}  ({'ok' if data_s > train_s else 'DATA-BOUND'})")


if __name__ == "__main__":
    main()
