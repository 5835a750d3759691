"""Blocks shared by several methods (append here; keep each block small and cite its source)."""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

# DIV2K training-set RGB mean, subtracted at the input of EDSR-family networks (EDSR, RCAN, IGNN code)
DIV2K_RGB_MEAN = (0.4488, 0.4371, 0.4040)


class PixelShuffleUpsampler(nn.Sequential):
    """EDSR/RCAN sub-pixel upsampler (Lim et al. 2017, Fig. 3; Shi et al. 2016): for a power-of-two
    scale, log2(scale) x [3x3 conv nf -> 4 nf, PixelShuffle(2)], for x3 one [conv nf -> 9 nf,
    PixelShuffle(3)]; no activation (``act``, a module factory, adds one after each shuffle, e.g.
    SRGAN's ``nn.PReLU``)."""

    def __init__(self, nf: int, scale: int, act: Callable[[], nn.Module] | None = None):
        if scale & (scale - 1) == 0:
            factors = [2] * int(math.log2(scale))
        elif scale == 3:
            factors = [3]
        else:
            raise ValueError(f"sub-pixel upsampler supports 2^n and 3, got x{scale}")
        layers: list[nn.Module] = []
        for f in factors:
            layers += [nn.Conv2d(nf, nf * f * f, 3, 1, 1), nn.PixelShuffle(f)]
            if act is not None:
                layers.append(act())
        super().__init__(*layers)


class SelfAttention2d(nn.Module):
    """SAGAN self-attention (Zhang et al., ICML 2019, Sec. 3): 1x1 query/key at C/8, value at C,
    softmax over all positions, output ``x + gamma * o`` with ``gamma`` initialised to 0.

    Hand-written: timm's NonLocalAttn adds a BN-normalised output projection and no learnable gate.
    The attention matrix is (HW)^2, so use it on LR-resolution features only.
    """

    def __init__(self, channels: int, reduction: int = 8):
        super().__init__()
        self.query = nn.Conv2d(channels, max(1, channels // reduction), 1)
        self.key = nn.Conv2d(channels, max(1, channels // reduction), 1)
        self.value = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q = self.query(x).flatten(2).transpose(1, 2)[:, None]   # B, 1, HW, C'
        k = self.key(x).flatten(2).transpose(1, 2)[:, None]     # B, 1, HW, C'
        v = self.value(x).flatten(2).transpose(1, 2)[:, None]   # B, 1, HW, C
        # zero-padding q and k to C leaves q k^T unchanged but lets the fused (flash) kernel run, which
        # never materialises the (HW)^2 matrix; scale=1: SAGAN has no 1/sqrt(d) temperature
        pad = v.shape[-1] - q.shape[-1]
        q, k = F.pad(q, (0, pad)), F.pad(k, (0, pad))
        o = F.scaled_dot_product_attention(q, k, v, scale=1.0)
        return x + self.gamma * o[:, 0].transpose(1, 2).reshape(b, c, h, w)


class ResidualBlock(nn.Module):
    """EDSR residual block (Lim et al., CVPRW 2017, Fig. 2): conv - ReLU - conv without batch norm,
    scaled by ``res_scale`` (0.1 in EDSR's 256-feature model) and added to the input."""

    def __init__(self, nf: int, kernel_size: int = 3, res_scale: float = 1.0):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(nf, nf, kernel_size, 1, kernel_size // 2), nn.ReLU(inplace=True),
                                  nn.Conv2d(nf, nf, kernel_size, 1, kernel_size // 2))
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.res_scale * self.body(x)
