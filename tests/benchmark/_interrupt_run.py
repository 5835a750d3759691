"""Subprocess body for test_interrupt: train a tiny real SR net, interrupt it (Ctrl-C) once at
iteration 5, then (second invocation) resume.  Lightning's own KeyboardInterrupt path is exercised."""
import sys
from pathlib import Path

from torch import nn

from benchmark.registry import load_task
from benchmark.runner import run_task
from benchmark.specs import MethodSpec, TrainPlan
from tasks.sr.module import SRModule

root, mode = Path(sys.argv[1]), sys.argv[2]


class TinySR(nn.Module):
    def __init__(self, scale):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3 * scale * scale, 3, padding=1),
                                  nn.PixelShuffle(scale))

    def forward(self, x):
        return self.body(x)


class InterruptOnce(SRModule):
    def training_step(self, batch, batch_idx):
        if mode == "interrupt" and self.global_step == 5:
            raise KeyboardInterrupt
        return super().training_step(batch, batch_idx)


def build(ctx):
    return InterruptOnce(TinySR(ctx.scale), ctx.scale, lr=1e-3), TrainPlan(max_steps=8, batch_size=2, patch_size=32)


task = load_task("sr")
task.METHODS["tiny"] = MethodSpec("Tiny", "baseline", build, "none", ("kather_x4",))
recs = run_task("sr", "smoke", ["tiny"], ["kather_x4"], results_dir=root / "results", runs_dir=root / "runs",
                progress=False)
print("RESULT", recs[0].status, recs[0].train.get("resumed_from"), recs[0].train.get("steps"))
