"""Colour conventions of the SR / restoration literature.

The papers evaluate on the Y channel of MATLAB's ``rgb2ycbcr`` (ITU-R BT.601, *limited* range
16..235).  kornia's ``rgb_to_y`` is the full-range Y (0.299, 0.587, 0.114): using it would shift
PSNR by 20*log10(255/219) = 1.32 dB, so the limited-range transform is written out here (one matrix
row; kornia has no limited-range variant).
"""
from __future__ import annotations

import torch

_BT601_LIMITED_Y = (65.481, 128.553, 24.966)


def quantize_uint8(img: torch.Tensor) -> torch.Tensor:
    """Round a [0, 1] image to the 256 levels a saved PNG would hold, as float64 in [0, 255]."""
    return (img.detach().to(torch.float64).clamp(0, 1) * 255.0).round()


def rgb_to_y_bt601(img255: torch.Tensor) -> torch.Tensor:
    """MATLAB ``rgb2ycbcr`` Y channel for an (..., 3, H, W) RGB tensor on the 0..255 scale.

    Returns (..., 1, H, W) on the 0..255 scale (values in 16..235), not rounded, as basicsr computes
    PSNR/SSIM (``Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255``).  MATLAB's rgb2ycbcr on uint8
    input rounds Y; the PIRM NIQE / Ma code inherits that, and benchmark.metrics.niqe rounds there.
    """
    if img255.shape[-3] != 3:
        raise ValueError(f"rgb_to_y_bt601 expects 3 channels, got shape {tuple(img255.shape)}")
    w = img255.new_tensor(_BT601_LIMITED_Y).view(3, 1, 1)
    return 16.0 + (img255 * w).sum(dim=-3, keepdim=True) / 255.0


def to_eval_space(img: torch.Tensor, space: str) -> torch.Tensor:
    """[0, 1] image -> float64 0..255 image in the evaluation colour space ('rgb', 'y' or 'gray')."""
    q = quantize_uint8(img)
    if space == "y":
        return rgb_to_y_bt601(q) if q.shape[-3] == 3 else q
    if space in ("rgb", "gray"):
        return q
    raise ValueError(f"unknown colour space {space!r}: expected 'rgb', 'y' or 'gray'")


def shave(img: torch.Tensor, border: int) -> torch.Tensor:
    """Crop ``border`` pixels from every side (the SR convention: border = scale)."""
    if border <= 0:
        return img
    if img.shape[-1] <= 2 * border or img.shape[-2] <= 2 * border:
        raise ValueError(f"border crop {border} leaves nothing of a {tuple(img.shape[-2:])} image")
    return img[..., border:-border, border:-border]
