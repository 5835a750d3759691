"""Subprocess body for test_ddp: train + test with N CPU processes (Lightning re-launches this script
once per extra rank) a tiny GAN (manual optimisation, pixel then adversarial phase) on Kather and
rVTT T1+T2 (four optimizer steps per batch, ROI tester) on CRCH, a few iterations each."""
import dataclasses
import json
import sys
from pathlib import Path

from lightning.pytorch.utilities.rank_zero import rank_zero_only

from benchmark.registry import load_task
from benchmark.runner import run_task
from tests.benchmark._tiny import register_tiny_gan

root, devices = Path(sys.argv[1]), int(sys.argv[2])
register_tiny_gan(steps=4, pretrain=1)
methods = load_task("sr").METHODS
rvtt = methods["rvtt_t1_t2"]


def short_rvtt(ctx):
    module, plan = rvtt.build(ctx)
    return module, dataclasses.replace(plan, max_steps=2, batch_size=2)


methods["rvtt_t1_t2"] = dataclasses.replace(rvtt, build=short_rvtt)
recs = run_task("sr", "smoke", ["tiny_gan"], ["kather_x4"], devices=devices, results_dir=root / "results",
                runs_dir=root / "runs", progress=False)
recs += run_task("sr", "smoke", ["rvtt_t1_t2"], ["crchisto_x4"], devices=devices, results_dir=root / "results",
                 runs_dir=root / "runs", progress=False)
if rank_zero_only.rank == 0:
    for r in recs:
        print("RESULT", json.dumps({"method": r.method, "status": r.status, "error": r.error, "train": r.train,
                                    "env": r.env, "per_image": r.per_image, "n_images": r.metrics.get("n_images")},
                                   default=str))
