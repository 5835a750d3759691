"""MATLAB ``imresize`` (bicubic, antialiased when shrinking) in torch.

Hand-written because no maintained library reproduces MATLAB's resampler: PIL rounds between its
two passes, torch/kornia use the a=-0.75 cubic and no kernel widening.  The SR literature (BasicSR,
IRN, the PIRM NIQE code) makes LR images and computes NIQE's second scale with this exact kernel.
"""
from __future__ import annotations

import functools
import math

import torch


def _cubic(x: torch.Tensor) -> torch.Tensor:
    ax = x.abs()
    ax2, ax3 = ax * ax, ax * ax * ax
    return ((1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1)
            + (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2)))


@functools.lru_cache(maxsize=64)
def _weight_matrix(in_len: int, out_len: int, scale: float, antialias: bool) -> torch.Tensor:
    """(out_len, in_len) float64 matrix M with out = M @ in along one axis (MATLAB contributions);
    cached (read-only): a data loader resizes every crop with the same few matrices."""
    width = 4.0
    shrink = scale < 1 and antialias
    if shrink:
        width /= scale
    x = torch.arange(1, out_len + 1, dtype=torch.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = torch.floor(u - width / 2)
    taps = int(math.ceil(width)) + 2
    idx = left[:, None] + torch.arange(taps, dtype=torch.float64)[None, :]
    dist = u[:, None] - idx
    w = scale * _cubic(dist * scale) if shrink else _cubic(dist)
    w = w / w.sum(dim=1, keepdim=True)
    # symmetric ("mirror") boundary, 1-based as in MATLAB
    idx = idx.long() - 1
    period = 2 * in_len
    idx = torch.remainder(idx, period)
    idx = torch.where(idx >= in_len, period - 1 - idx, idx)
    m = torch.zeros(out_len, in_len, dtype=torch.float64)
    m.scatter_add_(1, idx, w)
    return m


def imresize(img: torch.Tensor, scale: float | None = None, size: tuple[int, int] | None = None,
             antialias: bool = True) -> torch.Tensor:
    """Resize the last two dims of ``img`` like MATLAB ``imresize(img, scale, 'bicubic')``.

    Give ``scale`` (e.g. 0.25) or an explicit output ``size`` (H, W).  Computes in float64 and
    returns the input dtype; values are not clipped or rounded (callers quantise as MATLAB would
    for uint8 input).
    """
    h, w = img.shape[-2:]
    if size is None:
        if scale is None:
            raise ValueError("imresize needs scale or size")
        size = (int(math.ceil(h * scale)), int(math.ceil(w * scale)))
        sh = sw = float(scale)
    else:
        sh, sw = size[0] / h, size[1] / w
    x = img.to(torch.float64)
    # MATLAB resizes the dimension with the smaller scale first (rows first on ties)
    dims = sorted([(sh, -2), (sw, -1)], key=lambda t: t[0])
    for s, d in dims:
        in_len = x.shape[d]
        out_len = size[0] if d == -2 else size[1]
        m = _weight_matrix(in_len, out_len, s, antialias).to(x.device)
        x = torch.matmul(m, x) if d == -2 else torch.matmul(x, m.T)
    return x.to(img.dtype)
