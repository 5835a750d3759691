"""PSNR, SSIM and RMSE with the conventions of the SR / restoration papers, plus region variants.

Inputs are [0, 1] images; they are rounded to 8 bits (as the saved PNGs the papers evaluate),
converted to the evaluation space (Y of MATLAB rgb2ycbcr, RGB or gray; 0..255 scale) and shaved by
``crop`` pixels.  Scores are per image; the set score is their mean (RMSE: sqrt of mean MSE, as PIRM).
SSIM: Gaussian window 11 / sigma 1.5, K1 0.01, K2 0.03, averaged over the 'valid' window positions
only, as Wang et al.'s ssim.m, basicsr and scikit-image do (matches scikit-image to 1e-12).
"""
from __future__ import annotations

import kornia
import torch

from benchmark.metrics.base import PerImageMetric
from benchmark.metrics.color import shave, to_eval_space


class _SpaceMetric(PerImageMetric):
    def __init__(self, space: str = "y", crop: int = 0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.space, self.crop = space, crop

    def _prep(self, preds: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return (shave(to_eval_space(preds, self.space), self.crop),
                shave(to_eval_space(target, self.space), self.crop))


def _mse(p: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return ((p - t) ** 2).flatten(1).mean(1)


def _psnr_from_mse(mse: torch.Tensor) -> torch.Tensor:
    return 10.0 * torch.log10(255.0 ** 2 / mse)  # mse == 0 -> inf, as basicsr / MATLAB


_HALF = 5  # (11 - 1) / 2: the rim whose window would reach outside the image
_C1, _C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2


def _ssim_map(p: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) SSIM map (Wang et al. 2004, eq. 13) with kornia's separable 11x11 / 1.5 Gaussian.

    Its 5-px rim sees reflect padding and is excluded by callers.  Written out over kornia's filter
    rather than torchmetrics' SSIM: that one runs a dense 11x11 float64 convolution (0.7 s per
    500x500 image on CPU, 5x slower) for the same values.
    """
    blur = lambda x: kornia.filters.gaussian_blur2d(x, (11, 11), (1.5, 1.5), border_type="reflect")  # noqa: E731
    mu_p, mu_t = blur(p), blur(t)
    var_p = (blur(p * p) - mu_p ** 2).clamp_min(0)
    var_t = (blur(t * t) - mu_t ** 2).clamp_min(0)
    cov = blur(p * t) - mu_p * mu_t
    return ((2 * mu_p * mu_t + _C1) * (2 * cov + _C2)) / ((mu_p ** 2 + mu_t ** 2 + _C1) * (var_p + var_t + _C2))


class PSNR(_SpaceMetric):
    """Peak signal-to-noise ratio (dB) per image, averaged over the set."""

    higher_is_better = True

    def score(self, preds, target):
        return _psnr_from_mse(_mse(*self._prep(preds, target)))


class SSIM(_SpaceMetric):
    """Structural similarity (Wang et al. 2004), Gaussian window 11 / sigma 1.5, per image."""

    higher_is_better = True

    def score(self, preds, target):
        smap = _ssim_map(*self._prep(preds, target))
        return smap[..., _HALF:-_HALF, _HALF:-_HALF].flatten(1).mean(1)


class RMSE(_SpaceMetric):
    """Root mean squared error on the 0..255 scale: sqrt(mean over images of per-image MSE)."""

    higher_is_better = False

    def score(self, preds, target):
        return _mse(*self._prep(preds, target))

    def compute(self):
        return super().compute().sqrt()


def _prep_mask(mask: torch.Tensor, crop: int) -> torch.Tensor:
    return shave(mask.to(torch.float64).clamp(0, 1), crop)


class _RegionMetric(_SpaceMetric):
    """An image with an empty region (no pixel to score) scores NaN and is left out of the mean."""

    def compute(self):
        _, val = self.per_image()
        val = val[~torch.isnan(val)]
        return val.mean() if val.numel() else torch.tensor(float("nan"), dtype=torch.float64)


class RegionPSNR(_RegionMetric):
    """PSNR over the pixels where ``mask`` is 1 (e.g. the corrupted region of an inpainting task)."""

    higher_is_better = True

    def score(self, preds, target, mask=None):
        if mask is None:
            raise ValueError("RegionPSNR needs a mask")
        p, t = self._prep(preds, target)
        m = _prep_mask(mask, self.crop).expand_as(p)
        area = m.flatten(1).sum(1)
        mse = (((p - t) ** 2) * m).flatten(1).sum(1) / area.clamp_min(1)
        return _psnr_from_mse(mse).masked_fill(area == 0, float("nan"))


class RegionSSIM(_RegionMetric):
    """Mean of the SSIM map over the mask pixels whose 11x11 window lies inside the image."""

    higher_is_better = True

    def score(self, preds, target, mask=None):
        if mask is None:
            raise ValueError("RegionSSIM needs a mask")
        p, t = self._prep(preds, target)
        smap = _ssim_map(p, t)
        m = _prep_mask(mask, self.crop).expand_as(smap)
        valid = torch.zeros_like(m)
        valid[..., _HALF:-_HALF, _HALF:-_HALF] = 1
        w = m * valid
        area = w.flatten(1).sum(1)
        return ((smap * w).flatten(1).sum(1) / area.clamp_min(1)).masked_fill(area == 0, float("nan"))
