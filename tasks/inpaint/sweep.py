"""Mask-size sweep (MSSA GAN Fig. 7, §5.3): square holes 64-96 px, stride 8, in the 128-px test patches.

"we averaged PSNR and SSIM score 6 times under each mask after removing the highest and lowest
evaluation indicator": for each size, 8 evaluations of the whole test set with hole positions seeded
by the run number (seeds 0-7; the same boxes for every method), the highest and lowest set mean
dropped per metric, the other 6 averaged.  Models are the ones `python -m benchmark run --task
inpaint` trained (their last checkpoint under runs/); they were trained with 64-px holes only.

    python -m tasks.inpaint.sweep [--profile smoke] [--methods input,scale_inverse,mssa_gan]
                                  [--dataset kather_inpaint] [--runs-dir runs] [--out leaderboards]

Writes <out>/inpaint[.<profile>]_sweep.{csv,json} (smoke: inpaint_sweep.*) and
<out>/plots/inpaint[.<profile>]_sweep.png (PSNR and SSIM, whole image and hole, vs mask size).
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path

import torch

from benchmark.leaderboard import save_figure, stem
from benchmark.profiles import get_profile
from benchmark.results import atomic_write_text
from benchmark.specs import BuildContext, TrainPlan
from datamodules.base import weights_root
from tasks.inpaint import registry
from tasks.inpaint.module import build_inpaint_metrics

SIZES = (64, 72, 80, 88, 96)
RUNS = 8
METRICS = ("psnr", "ssim", "psnr_region", "ssim_region")
DEFAULT_METHODS = ("input", "scale_inverse", "mean_fill", "mssa_gan")


def trimmed_mean(values: list[float]) -> float:
    """Mean after dropping the single highest and lowest value (Fig. 7: 6 of 8)."""
    if len(values) < 3:
        raise ValueError("a trimmed mean needs at least 3 values")
    kept = sorted(values)[1:-1]
    return sum(kept) / len(kept)


def load_method(method: str, dataset: str, profile: str, runs_dir: Path, seed: int = 0):
    spec = registry.METHODS[method]
    ctx = BuildContext("inpaint", dataset, profile, None, 3, weights_root(), seed)
    module, plan = spec.build(ctx)
    if plan.max_steps > 0:
        ckpt = runs_dir / profile / "inpaint" / dataset / method / "checkpoints" / "last.ckpt"
        if not ckpt.is_file():
            raise FileNotFoundError(f"{method}: no trained model at {ckpt}; train it first with "
                                    f"`python -m benchmark run --task inpaint --profile {profile} --methods {method}`")
        checkpoint = torch.load(ckpt, map_location="cpu", weights_only=False)
        module.on_load_checkpoint(checkpoint)  # puts back the frozen VGG that checkpoints leave out
        module.load_state_dict(checkpoint["state_dict"])
    return module.eval()


@torch.no_grad()
def evaluate(module, batches: list[dict], conv) -> dict[str, float]:
    metrics = build_inpaint_metrics(conv)
    for batch in batches:
        pred, target, mask, _ = module.restore(batch)
        for name in METRICS:
            metrics[name].update(pred.clamp(0, 1), target, batch["index"], mask=mask if "region" in name else None)
    return {name: float(metrics[name].compute()) for name in METRICS}


def sweep(methods, dataset: str = "kather_inpaint", profile: str = "smoke", runs_dir: Path = Path("runs"),
          sizes=SIZES, runs: int = RUNS, batch_size: int = 8) -> list[dict]:
    spec = registry.DATASETS[dataset]
    prof = get_profile(profile)
    modules = {m: load_method(m, dataset, profile, runs_dir) for m in methods}
    rows = []
    for size in sizes:
        dm = spec.datamodule(BuildContext("inpaint", dataset, profile, None, 3, weights_root(), 0),
                             TrainPlan(batch_size=batch_size))
        dm.hole, dm.test_limit = size, prof.test_limit
        dm.setup("test")
        per_run = {m: {k: [] for k in METRICS} for m in methods}
        for r in range(runs):
            dm.test_set.seed = r  # the box positions of run r (InpaintDataset.eval_box seeds by (seed, index))
            batches = [torch.utils.data.default_collate([dm.test_set[i] for i in range(s, min(s + batch_size, len(dm.test_set)))])
                       for s in range(0, len(dm.test_set), batch_size)]
            for m, module in modules.items():
                for k, v in evaluate(module, batches, spec.eval).items():
                    per_run[m][k].append(v)
        for m in methods:
            rows.append({"method": m, "label": registry.METHODS[m].label, "mask_size": size, "runs": runs,
                         "n_images": len(dm.test_set), **{k: trimmed_mean(per_run[m][k]) for k in METRICS},
                         **{f"{k}_runs": per_run[m][k] for k in METRICS}})
    return rows


def plot(rows: list[dict], path: Path, title: str) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
    for ax, metric in zip(axes, ("psnr", "ssim")):
        for m in dict.fromkeys(r["method"] for r in rows):
            pts = [r for r in rows if r["method"] == m]
            label = pts[0]["label"]
            ax.plot([r["mask_size"] for r in pts], [r[metric] for r in pts], "o-", label=f"{label} (image)")
            ax.plot([r["mask_size"] for r in pts], [r[f"{metric}_region"] for r in pts], "x--", label=f"{label} (hole)")
        ax.set_xlabel("mask size (px, in 128 px patches)")
        ax.set_ylabel(f"{metric.upper()} (mean of 6 of 8 runs)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=6)
    fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)


def write(rows: list[dict], out: Path, profile: str, dataset: str) -> dict[str, Path]:
    s = f"{stem('inpaint', profile)}_sweep"
    flat = [{k: v for k, v in r.items() if not k.endswith("_runs")} for r in rows]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(flat[0]), lineterminator="\n")
    w.writeheader()
    w.writerows(flat)
    paths = {"csv": out / f"{s}.csv", "json": out / f"{s}.json"}
    atomic_write_text(paths["csv"], buf.getvalue())
    atomic_write_text(paths["json"], json.dumps({"task": "inpaint", "profile": profile, "dataset": dataset,
                                                 "protocol": "Fig. 7: 8 seeded runs per size, mean of 6 "
                                                             "(highest and lowest dropped)", "rows": rows},
                                                indent=1) + "\n")
    paths["plot"] = plot(rows, out / "plots" / f"{s}.png",
                         f"inpaint mask-size sweep ({profile}, {dataset}); trained at 64 px holes")
    return paths


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profile", default="smoke")
    ap.add_argument("--methods", default=",".join(DEFAULT_METHODS))
    ap.add_argument("--dataset", default="kather_inpaint")
    ap.add_argument("--runs-dir", type=Path, default=Path("runs"))
    ap.add_argument("--out", type=Path, default=Path("leaderboards"))
    args = ap.parse_args(argv)
    methods = [m for m in args.methods.split(",") if m]
    unknown = [m for m in methods if m not in registry.METHODS]
    if unknown:
        print(f"unknown method(s) {unknown}: known are {sorted(registry.METHODS)}", file=sys.stderr)
        return 2
    rows = sweep(methods, args.dataset, args.profile, args.runs_dir)
    for r in rows:
        print(f"{r['label']:>32s}  mask {r['mask_size']:3d}  PSNR {r['psnr']:.2f}  SSIM {r['ssim']:.4f}  "
              f"hole PSNR {r['psnr_region']:.2f}  hole SSIM {r['ssim_region']:.4f}")
    paths = write(rows, args.out, args.profile, args.dataset)
    print("wrote " + ", ".join(map(str, paths.values())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
