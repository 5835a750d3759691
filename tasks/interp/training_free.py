"""Training-free slice interpolation baselines: the average of the two neighbours and a copy of the
previous slice.  Not in the SSAN paper; they anchor its tables (spec §0.4): on the real CREMI C
sample the plain average already scores ~19.7 dB, above every CREMI C number the paper reports.
"""
from __future__ import annotations

import torch
from torch import nn

from benchmark.specs import BuildContext, TrainPlan
from tasks.interp.module import InterpModule


class Average(nn.Module):
    """0.5 * (I_{t-1} + I_{t+1}): linear interpolation along z."""

    def forward(self, prev: torch.Tensor, nxt: torch.Tensor) -> torch.Tensor:
        return 0.5 * (prev + nxt)


class CopyPrevious(nn.Module):
    """I_{t-1}: what a viewer shows in place of a missing section."""

    def forward(self, prev: torch.Tensor, nxt: torch.Tensor) -> torch.Tensor:
        return prev.clone()


def build_average(ctx: BuildContext) -> tuple[InterpModule, TrainPlan]:
    return InterpModule(Average()), TrainPlan(max_steps=0, batch_size=1, notes="training-free")


def build_copy_previous(ctx: BuildContext) -> tuple[InterpModule, TrainPlan]:
    return InterpModule(CopyPrevious()), TrainPlan(max_steps=0, batch_size=1, notes="training-free")
