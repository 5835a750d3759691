"""NIQE, the Natural Image Quality Evaluator, as the PIRM 2018 Perceptual Index computes it.

Mittal, Soundararajan & Bovik, "Making a 'completely blind' image quality analyzer", IEEE Signal
Processing Letters 20(3), 2013.  This reproduces the official MATLAB release (``computequality.m``,
``computefeature.m``, ``estimateaggdparam.m``) called as in the PIRM-SR self-validation code
(Blau et al. 2018): ``computequality(Y, 96, 96, 0, 0, mu_prisparam, cov_prisparam)`` on the uint8 Y
channel of MATLAB ``rgb2ycbcr`` with 4 pixels shaved from every border.

* 7x7 Gaussian (sigma 7/6) local mean / deviation with replicated borders, MSCN coefficients
  ``(I - mu) / (sigma + 1)``;
* per 96x96 block (48x48 at the second scale, no overlap) 18 features: an AGGD fit of the MSCN
  values (shape, mean of the two scales -- the symmetric GGD fit of the paper) and AGGD fits of the
  products with the 4 neighbours (shape, mean, left and right scale), moment matching on the grid
  0.2:0.001:10;
* two scales, the second a MATLAB ``imresize(im, 0.5)`` (bicubic, antialiased);
* all blocks are used: the official ``computequality`` computes the block sharpness but never uses
  it (the sharpness threshold only selects pristine patches in ``estimatemodelparam.m``, when the
  model was fitted), and so does not basicsr's ``calculate_niqe``;
* ``sqrt((mu_p - mu_d) pinv((C_p + C_d) / 2) (mu_p - mu_d)')`` with ``nanmean`` / ``nancov`` over
  blocks.

Lower is better.  Validated against pyiqa 0.1.16 (see tests/benchmark/metrics/test_niqe.py).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io
import torch
from scipy.ndimage import correlate, maximum_filter, minimum_filter
from scipy.special import gamma as _gamma

from benchmark.metrics.base import PerImageMetric
from benchmark.metrics.color import quantize_uint8, rgb_to_y_bt601, shave
from datamodules.imresize import imresize

DEFAULT_PARAMS = Path(__file__).resolve().parent / "data" / "niqe_pris_params.npz"


# --------------------------------------------------------------------------- MATLAB building blocks
def _matlab_colon(start: float, step: float, stop: float) -> np.ndarray:
    """``start:step:stop`` as MATLAB builds it (from both ends, so the last element is ``stop``)."""
    n = int(round((stop - start) / step))
    k = np.arange(n // 2 + 1, dtype=np.float64)
    out = np.empty(n + 1)
    out[:n // 2 + 1] = start + k * step
    out[n - np.arange(n // 2 + 1)] = stop - k * step
    if n % 2 == 0:
        out[n // 2] = (start + stop) / 2
    return out


def _nearest_in_table(table: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Index of the table entry nearest to each value, as MATLAB ``min(abs(table - v))`` picks it.

    ``table`` must be strictly monotone.  The nearest entry is one of the two that bracket ``v``;
    ties go to the lower index (MATLAB's first minimum) and NaN gives index 0 (MATLAB ignores NaN
    in ``min``, so an all-NaN difference returns the first position).
    """
    flip = table[0] > table[-1]
    asc = table[::-1] if flip else table
    v = np.asarray(values, dtype=np.float64)
    hi = np.clip(np.searchsorted(asc, v), 0, len(asc) - 1)
    lo = np.clip(hi - 1, 0, len(asc) - 1)
    if flip:  # back to indices of the original (descending) table: the lower index is the higher one
        hi, lo = len(asc) - 1 - hi, len(asc) - 1 - lo
        lo, hi = hi, lo
    d_lo, d_hi = np.abs(table[lo] - v), np.abs(table[hi] - v)
    idx = np.where(d_hi < d_lo, hi, lo)
    return np.where(np.isnan(v), 0, idx)


def _matlab_imresize(img: np.ndarray, scale: float | None = None,
                     out_shape: tuple[int, int] | None = None, antialias: bool = True) -> np.ndarray:
    """MATLAB ``imresize(img, scale)`` / ``imresize(img, [h w])``, bicubic, for a 2-D float64 array
    (the project's one MATLAB resampler, datamodules.imresize, on a numpy view)."""
    out = imresize(torch.from_numpy(np.asarray(img, dtype=np.float64)), scale=scale, size=out_shape,
                   antialias=antialias)
    return out.numpy()


def _matlab_gaussian(size: int, sigma: float) -> np.ndarray:
    """``fspecial('gaussian', size, sigma)``."""
    r = (size - 1) / 2.0
    y, x = np.mgrid[-r:r + 1, -r:r + 1]
    h = np.exp(-(x * x + y * y) / (2.0 * sigma * sigma))
    h[h < np.finfo(np.float64).eps * h.max()] = 0
    return h / h.sum()


def _matlab_pinv(a: np.ndarray) -> np.ndarray:
    """MATLAB ``pinv``: singular values below ``max(size) * eps(max(s))`` are dropped."""
    u, s, vt = np.linalg.svd(a)
    tol = max(a.shape) * np.spacing(s.max()) if s.size else 0.0
    keep = s > tol
    return (vt[keep].T / s[keep]) @ u[:, keep].T


# --------------------------------------------------------------------------- NIQE proper
_GAM = _matlab_colon(0.2, 0.001, 10.0)
_R_GAM = _gamma(2.0 / _GAM) ** 2 / (_gamma(1.0 / _GAM) * _gamma(3.0 / _GAM))
_WINDOW = _matlab_gaussian(7, 7.0 / 6.0)
_WINDOW = _WINDOW / _WINDOW.sum()  # computequality normalises fspecial's window once more
_SHIFTS = ((0, 1), (1, 0), (1, 1), (1, -1))


def _aggd_fit(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``estimateaggdparam`` on every row of ``x`` (n, m): (alpha, beta_left, beta_right)."""
    x2 = x * x
    neg, pos = x < 0, x > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        left = np.sqrt((x2 * neg).sum(1) / neg.sum(1))
        right = np.sqrt((x2 * pos).sum(1) / pos.sum(1))
        g = left / right
        rhat = np.abs(x).mean(1) ** 2 / x2.mean(1)
        rhatnorm = rhat * (g ** 3 + 1) * (g + 1) / (g ** 2 + 1) ** 2
    alpha = _GAM[_nearest_in_table(_R_GAM, rhatnorm)]
    c = np.sqrt(_gamma(1.0 / alpha) / _gamma(3.0 / alpha))
    return alpha, left * c, right * c


def _block_features(mscn: np.ndarray, bs: int) -> np.ndarray:
    """``blkproc(mscn, [bs bs], @computefeature)``: (n_blocks, 18), blocks in MATLAB column order."""
    nbh, nbw = mscn.shape[0] // bs, mscn.shape[1] // bs
    blocks = mscn[:nbh * bs, :nbw * bs].reshape(nbh, bs, nbw, bs).transpose(2, 0, 1, 3)
    blocks = blocks.reshape(nbh * nbw, bs, bs)
    nb = blocks.shape[0]
    rows = [blocks.reshape(nb, -1)]
    rows += [(blocks * np.roll(blocks, s, axis=(1, 2))).reshape(nb, -1) for s in _SHIFTS]
    alpha, bl, br = (a.reshape(5, nb) for a in _aggd_fit(np.concatenate(rows)))
    feats = [alpha[0], (bl[0] + br[0]) / 2]
    for i in range(1, 5):
        mean = (br[i] - bl[i]) * (_gamma(2.0 / alpha[i]) / _gamma(1.0 / alpha[i]))
        feats += [alpha[i], mean, bl[i], br[i]]
    return np.stack(feats, axis=1)


def _mscn(img: np.ndarray) -> np.ndarray:
    """MSCN coefficients ``(I - mu) / (sigma + 1)``, 7x7 Gaussian, replicated borders.

    Where the whole 7x7 neighbourhood is flat (range <= 1e-8 on the 0..255 scale: saturated or
    empty background, common in microscopy) the coefficient is set to exactly 0.  Computed
    literally, it is rounding noise of order 1e-14 whose sign depends on the filter's summation
    order (MATLAB, pyiqa and basicsr all differ there); its sign decides whether the pixel counts
    on the left or right side of the AGGD fit, which moves NIQE by up to ~0.02 on such images.
    """
    mu = correlate(img, _WINDOW, mode="nearest")
    sigma = np.sqrt(np.abs(correlate(img * img, _WINDOW, mode="nearest") - mu * mu))
    out = (img - mu) / (sigma + 1.0)
    flat = maximum_filter(img, 7, mode="nearest") - minimum_filter(img, 7, mode="nearest") <= 1e-8
    out[flat] = 0.0
    return out


def niqe(y: np.ndarray | torch.Tensor, mu: np.ndarray, cov: np.ndarray, block: int = 96) -> float:
    """NIQE of one (H, W) gray / Y image on the 0..255 scale (MATLAB ``computequality``).

    ``mu`` (36,) and ``cov`` (36, 36) are the pristine model (``mu_prisparam``, ``cov_prisparam``).
    The image is cropped to whole ``block`` x ``block`` tiles; it needs at least one (two or more
    for a meaningful covariance).  A degenerate image (e.g. constant) gives NaN, as in MATLAB.
    """
    img = y.detach().cpu().double().numpy() if isinstance(y, torch.Tensor) else np.asarray(y, np.float64)
    if img.ndim != 2:
        raise ValueError(f"niqe expects an (H, W) image, got shape {img.shape}")
    nbh, nbw = img.shape[0] // block, img.shape[1] // block
    if nbh == 0 or nbw == 0:
        raise ValueError(f"NIQE needs an image of at least {block}x{block} pixels, got {img.shape}")
    img = img[:nbh * block, :nbw * block]
    feats = []
    for scale in (1, 2):
        feats.append(_block_features(_mscn(img), block // scale))
        if scale == 1:
            img = _matlab_imresize(img, 0.5)
    feat = np.concatenate(feats, axis=1)  # (n_blocks, 36)
    mu_d = np.nanmean(feat, axis=0)
    complete = feat[~np.isnan(feat).any(axis=1)]
    # nancov; one observation is normalised by 1 (MATLAB), i.e. zero covariance.  (With a single
    # block MATLAB's nanmean / nancov would see a 1x36 *vector* and return scalars; that quirk is
    # not reproduced -- pyiqa does not either -- and one-block NIQE is not comparable anyway.)
    cov_d = np.cov(complete, rowvar=False) if len(complete) > 1 else np.zeros_like(cov)
    d = np.asarray(mu, np.float64).reshape(-1) - mu_d
    return float(np.sqrt(d @ _matlab_pinv((np.asarray(cov, np.float64) + cov_d) / 2.0) @ d))


def load_niqe_params(path: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(mu (36,), cov (36, 36)) from the bundled npz, or from an official ``modelparameters.mat``."""
    path = Path(path) if path is not None else DEFAULT_PARAMS
    if path.suffix == ".mat":
        m = scipy.io.loadmat(path)
        return m["mu_prisparam"].astype(np.float64).reshape(-1), m["cov_prisparam"].astype(np.float64)
    with np.load(path) as z:
        return z["mu_pris_param"].astype(np.float64).reshape(-1), z["cov_pris_param"].astype(np.float64)


def _pirm_y(img: torch.Tensor, crop_border: int) -> torch.Tensor:
    """(B, C, H, W) [0, 1] -> (B, H', W') float64: PIRM's ``convert_shave_image``.

    8-bit quantisation, MATLAB ``rgb2ycbcr`` Y stored as uint8 (MATLAB rounds half away from zero;
    every Y is positive, so floor(y + 0.5)), then ``crop_border`` pixels shaved.  One-channel input
    is used as is (already integer after quantisation).
    """
    q = quantize_uint8(img)
    if q.shape[-3] == 3:
        q = torch.floor(rgb_to_y_bt601(q) + 0.5)
    elif q.shape[-3] != 1:
        raise ValueError(f"expected 1 or 3 channels, got shape {tuple(img.shape)}")
    return shave(q, crop_border)[:, 0]


class NIQE(PerImageMetric):
    """NIQE per image (Mittal et al. 2013), PIRM protocol; ``target`` is ignored.  Lower is better.

    Args:
        crop_border: pixels shaved from each side after the Y conversion (PIRM: 4).
        params: ``None`` for the bundled official pristine model, or a path to a ``.npz``
            (``mu_pris_param``, ``cov_pris_param``) or an official ``modelparameters.mat``.
        block: block size (96, as the official release and PIRM).
    """

    higher_is_better = False

    def __init__(self, crop_border: int = 4, params: str | Path | None = None, block: int = 96,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.crop_border, self.block = crop_border, block
        self._mu, self._cov = load_niqe_params(params)

    def score(self, preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        ys = _pirm_y(preds, self.crop_border).cpu().numpy()
        vals = [niqe(y, self._mu, self._cov, self.block) for y in ys]
        return torch.tensor(vals, dtype=torch.float64, device=preds.device)
