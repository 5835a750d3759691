"""A tiny real SR network and method for runner tests run in subprocesses (interrupt, DDP)."""
from torch import nn

from benchmark.registry import load_task
from benchmark.specs import MethodSpec, TrainPlan
from tasks.sr.module import SRModule


class TinySR(nn.Module):
    def __init__(self, scale):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(8, 3 * scale * scale, 3, padding=1), nn.PixelShuffle(scale))

    def forward(self, x):
        return self.body(x)


def register_tiny(module_cls=SRModule, steps: int = 8):
    def build(ctx):
        return module_cls(TinySR(ctx.scale), ctx.scale, lr=1e-3), TrainPlan(max_steps=steps, batch_size=2, patch_size=32)
    load_task("sr").METHODS["tiny"] = MethodSpec("Tiny", "baseline", build, "none", ("kather_x4",))
