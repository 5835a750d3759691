"""Training-free interpolation baselines (nearest, bicubic), as in rVTT Table 1 and SNADN Table 3.

Bicubic is MATLAB ``imresize`` (a = -0.5 cubic), the kernel the papers' tables use; nearest is pixel
replication, which is what MATLAB's 'nearest' does at integer scales.
"""
from __future__ import annotations

import torch
from torch import nn

from benchmark.specs import BuildContext, TrainPlan
from datamodules.imresize import imresize
from tasks.sr.module import SRModule


class Interpolate(nn.Module):
    def __init__(self, scale: int, mode: str):
        super().__init__()
        if mode not in ("nearest", "bicubic"):
            raise ValueError(f"unknown interpolation {mode!r}")
        self.scale, self.mode = scale, mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "nearest":
            return x.repeat_interleave(self.scale, -2).repeat_interleave(self.scale, -1)
        return imresize(x, float(self.scale))


def _builder(mode: str):
    def build(ctx: BuildContext) -> tuple[SRModule, TrainPlan]:
        return SRModule(Interpolate(ctx.scale, mode), ctx.scale), TrainPlan(max_steps=0, batch_size=1)
    build.__name__ = f"build_{mode}"
    return build


build_nearest = _builder("nearest")
build_bicubic = _builder("bicubic")
