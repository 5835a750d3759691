"""Inpainting region metric: SSIM of the hole's bounding box, cropped (MSSA GAN Table 4 "corrupted").

The paper does not say how the corrupted-region SSIM is computed; the hole is a box, so the field's
usual reading is SSIM of the cropped box (``RegionSSIM``, the SSIM map restricted to the mask, is
logged beside it and is ~0.0015 higher on the real samples).
"""
from __future__ import annotations

import torch

from benchmark.metrics.psnr_ssim import _HALF, _SpaceMetric, _ssim_map


def mask_bbox(mask: torch.Tensor) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) (exclusive ends) of the nonzero pixels of one (1, H, W) mask."""
    m = mask.reshape(-1, *mask.shape[-2:]).amax(0) > 0
    rows, cols = torch.nonzero(m.any(1)).flatten(), torch.nonzero(m.any(0)).flatten()
    if rows.numel() == 0:
        raise ValueError("empty mask: no region to score")
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


class BoxSSIM(_SpaceMetric):
    """SSIM (Gaussian 11 / 1.5, valid windows) of the crop at the bounding box of ``mask`` (needs >= 11 px)."""

    higher_is_better = True

    def score(self, preds, target, mask=None):
        if mask is None:
            raise ValueError("BoxSSIM needs a mask")
        p, t = self._prep(preds, target)
        out = []
        for j in range(p.shape[0]):
            y0, y1, x0, x1 = mask_bbox(mask[j])
            if min(y1 - y0, x1 - x0) < 2 * _HALF + 1:
                raise ValueError(f"hole box {y1 - y0}x{x1 - x0} smaller than the 11x11 SSIM window")
            smap = _ssim_map(p[j:j + 1, :, y0:y1, x0:x1], t[j:j + 1, :, y0:y1, x0:x1])
            out.append(smap[..., _HALF:-_HALF, _HALF:-_HALF].mean())
        return torch.stack(out)
