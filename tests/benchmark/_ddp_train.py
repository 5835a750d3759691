"""Subprocess body for test_ddp: train + test a tiny real SR net with N CPU processes (Lightning
re-launches this script once per extra rank)."""
import sys
from pathlib import Path

from lightning.pytorch.utilities.rank_zero import rank_zero_only

from benchmark.runner import run_task
from tests.benchmark._tiny import register_tiny

root, devices = Path(sys.argv[1]), int(sys.argv[2])
register_tiny(steps=6)
recs = run_task("sr", "smoke", ["tiny"], ["kather_x4"], devices=devices, results_dir=root / "results",
                runs_dir=root / "runs", progress=False)
if rank_zero_only.rank == 0:
    r = recs[0]
    print("RESULT", r.status, r.train.get("steps"), r.env["devices"], r.metrics.get("n_images"), r.error)
