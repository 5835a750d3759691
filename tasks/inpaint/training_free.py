"""Training-free inpainting rows: what the corruption protocol alone allows (spec Sec. 1.7).

- ``input``: x_M itself.
- ``scale_inverse``: undo eq. 16's x 0.1 inside the hole (x 10, clipped); only meaningful under the
  ``scale`` protocol.  On the real samples it beats every number MSSA GAN's Table 3 reports.
- ``mean_fill``: the hole filled with the per-image, per-channel mean of the known pixels.
- ``biharmonic``: scikit-image's ``inpaint_biharmonic`` (a well-kept implementation of the
  biharmonic fill), per image on CPU.
All four paste the known pixels back (they never change them).
"""
from __future__ import annotations

import numpy as np
import torch
from skimage.restoration import inpaint_biharmonic
from torch import nn

from benchmark.specs import BuildContext, TrainPlan
from datamodules.kather_inpaint import HOLE_VALUE
from tasks.inpaint.module import InpaintModule, from_net, plan_notes, to_net


class CorruptedInput(nn.Module):
    def forward(self, x_m, mask):
        return x_m


class ScaleInverse(nn.Module):
    """x_M / 0.1 inside the hole, clipped to [0, 1] (8-bit x_M: the error is at most 10 x 0.5 / 255)."""

    def forward(self, x_m, mask):
        x = from_net(x_m)
        return to_net(x * (1 - mask) + (x / HOLE_VALUE).clamp(0, 1) * mask)


class MeanFill(nn.Module):
    def forward(self, x_m, mask):
        known = 1 - mask
        mean = (x_m * known).sum((2, 3), keepdim=True) / known.sum((2, 3), keepdim=True).clamp_min(1)
        return x_m * known + mean * mask


class BiharmonicFill(nn.Module):
    def forward(self, x_m, mask):
        out = []
        for img, m in zip(from_net(x_m).detach().cpu().double().numpy(), mask.detach().cpu().numpy()):
            filled = inpaint_biharmonic(np.moveaxis(img, 0, -1), m[0] > 0.5, channel_axis=-1)
            out.append(torch.from_numpy(np.moveaxis(filled, -1, 0).copy()))
        return to_net(torch.stack(out).to(x_m).clamp(0, 1))


def _build(net: nn.Module, ctx: BuildContext, note: str = ""):
    module = InpaintModule(net, composite=True)
    return module, TrainPlan(max_steps=0, batch_size=8, notes=plan_notes(module, ctx, note))


def build_input(ctx: BuildContext):
    return _build(CorruptedInput(), ctx, "the corrupted input x_M itself")


def build_scale_inverse(ctx: BuildContext):
    return _build(ScaleInverse(), ctx, "x_M / 0.1 in the hole: undoes eq. 16 (scale protocol only)")


def build_mean_fill(ctx: BuildContext):
    return _build(MeanFill(), ctx, "hole = per-image mean colour of the known pixels")


def build_biharmonic(ctx: BuildContext):
    return _build(BiharmonicFill(), ctx, "skimage inpaint_biharmonic")
