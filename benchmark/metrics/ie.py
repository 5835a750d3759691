"""Interpolation error (IE) of the frame-interpolation literature, as the SSAN authors compute it.

IE = mean |I_pred - I_gt| over the pixels of one image on the 0..255 scale of 8-bit outputs (the
prediction is clamped to [0, 1], scaled and rounded first, as a saved PNG would be), then averaged
over the test images.  This is DAIN's ``demo_MiddleBury.py`` and the SSAN authors' sister code
(zejinwang/TSADR ``test.py``); Middlebury's official IE is an RMS error instead, which the SSAN paper's
own numbers rule out (PSNR 16.46 dB implies RMSE >= 38.3 but its IE is 28.38).
"""
from __future__ import annotations

import torch

from benchmark.metrics.psnr_ssim import _SpaceMetric


class IE(_SpaceMetric):
    """Mean absolute error on the 0..255 scale per image, averaged over the set (lower is better)."""

    higher_is_better = False

    def __init__(self, space: str = "gray", crop: int = 0, **kwargs) -> None:
        super().__init__(space, crop, **kwargs)

    def score(self, preds, target):
        p, t = self._prep(preds, target)
        return (p - t).abs().flatten(1).mean(1)
