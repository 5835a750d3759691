"""MegaDepth's hourglass depth network (Li & Snavely, "MegaDepth: Learning Single-View Depth Prediction
from Internet Photos", CVPR 2018), the architecture of Chen et al., "Single-Image Depth Perception in
the Wild" (NIPS 2016, Fig. 2): a 7x7 conv + BN + ReLU stem, four nested hourglass levels whose
modules are Inception blocks (a 1x1 branch and 1x1 -> kxk branches, concatenated; BatchNorm without
affine parameters), max/avg-pool down, nearest x2 up, element-wise sum of the pooled and skip paths,
and a 3x3 conv to one channel: log-depth.  DAIN (its ``depthNet``) uses the pretrained
``best_generalization_net_G.pth``.

The reference (baowenbo/DAIN ``MegaDepth/pytorch_DIW_scratch.py``) is a torch7 conversion: one nested
``nn.Sequential``.  :func:`hourglass` rebuilds the same tree from a compact description, so the state
dict's keys ("0.weight", "3.0.0.1.0.0.weight", ...) are the official ones; 5,357,153 parameters.
"""
from __future__ import annotations

import torch
from torch import nn

# Inception configurations: [1x1 out, (k, mid, out), ...]  (input channels given where used)
_A = [32, (3, 32, 32), (5, 32, 32), (7, 32, 32)]        # -> 128
_B = [64, (3, 32, 64), (5, 32, 64), (7, 32, 64)]        # -> 256
_C = [32, (3, 64, 32), (5, 64, 32), (7, 64, 32)]        # -> 128
_D = [16, (3, 32, 16), (7, 32, 16), (11, 32, 16)]       # -> 64
_E = [16, (3, 64, 16), (7, 64, 16), (11, 64, 16)]       # -> 64
_G = [32, (3, 32, 32), (5, 32, 32), (7, 32, 32)]        # 256 -> 128
_H = [32, (3, 64, 32), (7, 64, 32), (11, 64, 32)]       # -> 128
_I = [64, (3, 64, 64), (7, 64, 64), (11, 64, 64)]       # -> 256


class Concat(nn.Sequential):
    """Torch7 ``Concat``: every child on the same input, concatenated on channels."""

    def forward(self, x):
        return torch.cat([m(x) for m in self], 1)


class SumBranches(nn.Module):
    """Torch7 ``ConcatTable`` + ``CAddTable`` as the reference's two children: Sequential(LambdaMap(a, b),
    LambdaReduce(add)).  Kept as ``0`` (the two branches) and ``1`` (parameter-free) for the key names."""

    def __init__(self, first: nn.Module, second: nn.Module):
        super().__init__()
        self.add_module("0", nn.Sequential(first, second))
        self.add_module("1", nn.Identity())

    def forward(self, x):
        a, b = getattr(self, "0")
        return a(x) + b(x)


def _bn(c: int, affine: bool = False) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, 1e-5, 0.1, affine)


def inception(cin: int, cfg) -> Concat:
    branches = [nn.Sequential(nn.Conv2d(cin, cfg[0], 1), _bn(cfg[0]), nn.ReLU())]
    for k, mid, out in cfg[1:]:
        branches.append(nn.Sequential(nn.Conv2d(cin, mid, 1), _bn(mid), nn.ReLU(),
                                      nn.Conv2d(mid, out, k, 1, k // 2), _bn(out), nn.ReLU()))
    return Concat(*branches)


def _up() -> nn.Upsample:
    return nn.Upsample(scale_factor=2, mode="nearest")


def hourglass() -> nn.Sequential:
    h1 = SumBranches(nn.Sequential(inception(256, _B), inception(256, _B)),
                     nn.Sequential(nn.AvgPool2d(2, 2), inception(256, _B), inception(256, _B), inception(256, _B),
                                   _up()))
    h2 = SumBranches(nn.Sequential(inception(256, _B), inception(256, _I)),
                     nn.Sequential(nn.AvgPool2d(2, 2), inception(256, _B), inception(256, _B), h1,
                                   inception(256, _B), inception(256, _I), _up()))
    h3 = SumBranches(nn.Sequential(nn.MaxPool2d(2, 2), inception(128, _A), inception(128, _B), h2,
                                   inception(256, _B), inception(256, _G), _up()),
                     nn.Sequential(inception(128, _A), inception(128, _H)))
    h4 = SumBranches(nn.Sequential(nn.MaxPool2d(2, 2), inception(128, _A), inception(128, _A), h3,
                                   inception(128, _C), inception(128, _D), _up()),
                     nn.Sequential(inception(128, _E)))
    return nn.Sequential(nn.Conv2d(3, 128, 7, 1, 3), _bn(128, affine=True), nn.ReLU(), h4, nn.Conv2d(64, 1, 3, 1, 1))


def load_megadepth(net: nn.Sequential, path) -> None:
    """``best_generalization_net_G.pth`` (saved from DataParallel: keys prefixed 'module.')."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    net.load_state_dict({k[7:] if k.startswith("module.") else k: v for k, v in state.items()})
