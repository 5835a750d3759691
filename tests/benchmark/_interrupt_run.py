"""Subprocess body for test_interrupt: train a tiny real SR net, interrupt it (Ctrl-C) once at
iteration 5, then (second invocation) resume.  Lightning's own KeyboardInterrupt path is exercised."""
import sys
from pathlib import Path

from benchmark.runner import run_task
from tasks.sr.module import SRModule
from tests.benchmark._tiny import register_tiny

root, mode = Path(sys.argv[1]), sys.argv[2]


class InterruptOnce(SRModule):
    def training_step(self, batch, batch_idx):
        if mode == "interrupt" and self.global_step == 5:
            raise KeyboardInterrupt
        return super().training_step(batch, batch_idx)


register_tiny(InterruptOnce, steps=8)
recs = run_task("sr", "smoke", ["tiny"], ["kather_x4"], results_dir=root / "results", runs_dir=root / "runs",
                progress=False)
print("RESULT", recs[0].status, recs[0].train.get("resumed_from"), recs[0].train.get("steps"))
