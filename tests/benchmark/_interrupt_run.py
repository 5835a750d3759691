"""Subprocess body for test_interrupt: train a tiny real SR net (``sr``) or GAN (``gan``), interrupt it
(Ctrl-C) once at iteration 5 (mode ``interrupt``), or run it through (``resume`` / ``full``).
Lightning's own KeyboardInterrupt path is exercised."""
import json
import sys
from pathlib import Path

from benchmark.runner import run_task
from tasks.sr.module import SRGANModule, SRModule
from tests.benchmark._tiny import register_tiny, register_tiny_gan

root, mode, kind = Path(sys.argv[1]), sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else "sr"
force = "--force" in sys.argv


def interrupting(base):
    class InterruptOnce(base):
        def training_step(self, batch, batch_idx):
            if mode == "interrupt" and self.global_step == 5 * getattr(self, "optimizer_steps_per_batch", 1):
                raise KeyboardInterrupt
            return super().training_step(batch, batch_idx)
    return InterruptOnce


if kind == "gan":
    register_tiny_gan(interrupting(SRGANModule), steps=8, pretrain=2)
    method = "tiny_gan"
else:
    register_tiny(interrupting(SRModule), steps=8)
    method = "tiny"
recs = run_task("sr", "smoke", [method], ["kather_x4"], results_dir=root / "results", runs_dir=root / "runs",
                progress=False, force=force)
r = recs[0] if recs else None
print("RESULT", json.dumps(None if r is None else {"status": r.status, "error": r.error, "metrics": r.metrics,
                                                    "per_image": r.per_image, "train": r.train}))
