"""Bicubic (SNADN Table 3, training-free): MATLAB ``imresize`` x s of the bicubic LR (the kernel that made
the LR), via the SR task's ``Interpolate``.  Faithful: the paper's row is this operation; its exact
resampler is not stated (spec Sec. 1: PIL / torch / MATLAB bicubic differ by up to 1 dB)."""
from __future__ import annotations

from benchmark.specs import BuildContext, TrainPlan
from tasks.dualsr.module import PlainSRModule
from tasks.sr.interpolation import Interpolate


def build_bicubic(ctx: BuildContext) -> tuple[PlainSRModule, TrainPlan]:
    return PlainSRModule(Interpolate(ctx.scale, "bicubic"), ctx.scale), TrainPlan(max_steps=0, batch_size=1)
