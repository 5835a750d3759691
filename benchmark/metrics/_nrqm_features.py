"""The three feature groups of Ma et al.'s no-reference SR quality metric (NRQM, "Ma").

Ma, Yang, Yang & Yang, "Learning a no-reference quality metric for single-image super-resolution",
Computer Vision and Image Understanding 158, 2017.  Written from the official MATLAB code
(github chaoma99/sr-metric: ``feature_all.m``, ``block_dct.m``, ``global_gsm.m``,
``norm_sender_normalized.m``, ``ssim_index_new.m``, matlabPyrTools ``buildSFpyr``), reproducing its
arithmetic, including the places where pyiqa's port (``nrqm_arch.py``) differs from it:

* 10 % pooling: the lowest ``ceil(0.1 n)`` block values (pyiqa: one more) and the values from
  position ``fix(0.9 n)`` (1-based) to the end (pyiqa: one fewer);
* the 6th orientation of the finest scale has no parent in the divisive normalisation
  (``nband < Nband - Nor`` in the official code; pyiqa gives it one);
* the contrast-structure term of ``ssim_index_new`` is not clipped at 0 (pyiqa applies a ReLU);
* parents are upsampled with ``imresize(band, 2)`` and cropped (pyiqa resizes to the exact size);
* everything in float64 (pyiqa builds its Gaussian kernels, pyramid masks and resizes in float32).

Input everywhere: the uint8 Y channel as a float64 (H, W) array on the 0..255 scale.
"""
from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.ndimage import correlate, correlate1d
from scipy.special import factorial
from scipy.special import gamma as _gamma

from benchmark.metrics.niqe import (
    _matlab_colon,
    _matlab_gaussian,
    _matlab_imresize,
    _matlab_pinv,
    _nearest_in_table,
)

# ``gama_gen_gauss``: generalized-Gaussian shape by moment matching on 0.03:0.001:10
_G = _matlab_colon(0.03, 0.001, 10.0)
_R = _gamma(1.0 / _G) * _gamma(3.0 / _G) / _gamma(2.0 / _G) ** 2


def _ggd_shape(x: np.ndarray) -> np.ndarray:
    """``gama_gen_gauss`` on every row of ``x`` (n, m) -> (n,)."""
    mean = x.mean(axis=1, keepdims=True)
    rho = x.var(axis=1, ddof=1) / (np.abs(x - mean).mean(axis=1) ** 2 + 1e-7)
    return _G[_nearest_in_table(_R, rho)]


def _coeff_var(x: np.ndarray, eps: float) -> np.ndarray:
    """std(|x|) / (mean(|x|) + eps) per row (``coeff_var_gen_gauss``, ``oriented*_dct_rho``)."""
    a = np.abs(x)
    return a.std(axis=1, ddof=1) / (a.mean(axis=1) + eps)


# --------------------------------------------------------------------------- local frequency (DCT)
def _dct_matrix(n: int) -> np.ndarray:
    """Orthonormal DCT-II matrix (MATLAB ``dctmtx``): ``dct2(B) = C @ B @ C.T``."""
    k, i = np.mgrid[0:n, 0:n]
    c = np.sqrt(2.0 / n) * np.cos(np.pi * (2 * i + 1) * k / (2 * n))
    c[0] /= np.sqrt(2.0)
    return c


_C7 = _dct_matrix(7)
_AC = np.ones((7, 7), bool)
_AC[0, 0] = False


def _oriented_masks() -> list[np.ndarray]:
    """The coefficient sets of ``oriented{1,2,3}_dct_rho_config3.m`` for 7x7 blocks (0-based)."""
    m = [np.zeros((7, 7), bool) for _ in range(3)]
    for r, c0 in ((0, 1), (1, 2), (2, 4), (3, 5)):
        m[0][r, c0:] = True  # temp(1,2:end) temp(2,3:end) temp(3,5:end) temp(4,6:end)
        m[2][c0:, r] = True  # the transposed set
    for r, c0, c1 in ((1, 1, 2), (2, 2, 4), (3, 2, 5), (4, 3, 7), (5, 4, 7), (6, 4, 7)):
        m[1][r, c0:c1] = True  # temp(2,2) temp(3,3:4) temp(4,3:5) temp(5,4:end) temp(6,5:end) ...
    return m


_ORIENTED = _oriented_masks()


def _dct_block_stats(im: np.ndarray, rows_per_chunk: int = 64):
    """Per-block (gamma, coefficient of variation, orientation variance) of ``block_dct.m``.

    ``blkproc(im, [3 3], [2 2], fun)``: 7x7 blocks on a stride of 3 over the image zero-padded by 2
    on every side and to a multiple of 3 at the bottom / right.  Returns three flat arrays.
    """
    h, w = im.shape
    nb_h, nb_w = -(-h // 3), -(-w // 3)
    padded = np.zeros((3 * nb_h + 4, 3 * nb_w + 4))
    padded[2:2 + h, 2:2 + w] = im
    windows = sliding_window_view(padded, (7, 7))[::3, ::3]
    out = ([], [], [])
    for r0 in range(0, nb_h, rows_per_chunk):  # bounded memory on large images
        blocks = windows[r0:r0 + rows_per_chunk].reshape(-1, 7, 7)
        coef = _C7 @ blocks @ _C7.T
        out[0].append(_ggd_shape(coef[:, _AC]))
        out[1].append(_coeff_var(coef[:, _AC], 1e-7))
        g = np.stack([_coeff_var(coef[:, m], 1e-8) for m in _ORIENTED], axis=1)
        out[2].append(g.var(axis=1, ddof=1))
    return tuple(np.concatenate(o) for o in out)


def _low10(v: np.ndarray) -> float:
    s = np.sort(v)
    return float(s[:math.ceil(len(s) * 0.1)].mean())


def _high10(v: np.ndarray) -> float:
    s = np.sort(v)
    return float(s[math.trunc(len(s) * 0.9) - 1:].mean())


def block_dct_features(im: np.ndarray) -> np.ndarray:
    """``block_dct.m``: [p10 gamma, mean gamma, top-10% CV, mean CV, top-10% orient., mean orient.]."""
    g, cv, ori = _dct_block_stats(im)
    return np.array([_low10(g), g.mean(), _high10(cv), cv.mean(), _high10(ori), ori.mean()])


# --------------------------------------------------------------------------- global frequency (GSM)
def _point_op(x: np.ndarray, lut: np.ndarray, origin: float, increment: float) -> np.ndarray:
    """matlabPyrTools ``pointOp``: table lookup with linear interpolation / end-segment extrapolation."""
    pos = (x - origin) / increment
    idx = np.clip(np.trunc(pos), 0, len(lut) - 2).astype(np.int64)
    return lut[idx] + (lut[idx + 1] - lut[idx]) * (pos - idx)


def _rcos(width: float = 1.0, position: float = -0.5):
    """``rcosFn(width, position, [0 1])``."""
    x = np.pi * np.arange(-257, 2) / 512.0
    y = np.cos(x) ** 2
    y[0], y[-1] = y[1], y[-2]
    return position + (2.0 * width / np.pi) * (x + np.pi / 4.0), y


def sf_pyramid(im: np.ndarray, height: int = 2, order: int = 5):
    """``buildSFpyr(im, height, order)`` (real steerable pyramid, twidth 1).

    Returns (high-pass residual, [[band per orientation] per scale], low-pass residual).
    """
    nbands = order + 1
    dims = np.array(im.shape)
    ctr = np.ceil((dims + 0.5) / 2).astype(int)
    xr = (np.arange(1, dims[1] + 1) - ctr[1]) / (dims[1] / 2.0)
    yr = (np.arange(1, dims[0] + 1) - ctr[0]) / (dims[0] / 2.0)
    xramp, yramp = np.meshgrid(xr, yr)
    angle = np.arctan2(yramp, xramp)
    rad = np.sqrt(xramp ** 2 + yramp ** 2)
    rad[ctr[0] - 1, ctr[1] - 1] = rad[ctr[0] - 1, ctr[1] - 2]
    log_rad = np.log2(rad)
    xrcos, yrcos = _rcos()
    yrcos = np.sqrt(yrcos)
    yircos = np.sqrt(1.0 - yrcos ** 2)
    imdft = np.fft.fftshift(np.fft.fft2(im))
    lodft = imdft * _point_op(log_rad, yircos, xrcos[0], xrcos[1] - xrcos[0])
    hi0 = np.real(np.fft.ifft2(np.fft.ifftshift(imdft * _point_op(log_rad, yrcos, xrcos[0],
                                                                 xrcos[1] - xrcos[0]))))
    lutsize = 1024
    xcosn = np.pi * np.arange(-(2 * lutsize + 1), lutsize + 2) / lutsize
    const = (2.0 ** (2 * order)) * factorial(order) ** 2 / (nbands * factorial(2 * order))
    ycosn = np.sqrt(const) * np.cos(xcosn) ** order
    phase = (-1j) ** order
    levels = []
    for _ in range(height):
        xrcos = xrcos - 1.0  # log2(2): one octave down
        himask = _point_op(log_rad, yrcos, xrcos[0], xrcos[1] - xrcos[0])
        bands = []
        for b in range(nbands):
            anglemask = _point_op(angle, ycosn, xcosn[0] + np.pi * b / nbands, xcosn[1] - xcosn[0])
            banddft = phase * lodft * anglemask * himask
            bands.append(np.real(np.fft.ifft2(np.fft.ifftshift(banddft))))
        levels.append(bands)
        d = np.array(lodft.shape)
        c = np.ceil((d + 0.5) / 2).astype(int)
        lodims = np.ceil((d - 0.5) / 2).astype(int)
        start = c - np.ceil((lodims + 0.5) / 2).astype(int)
        sl = (slice(start[0], start[0] + lodims[0]), slice(start[1], start[1] + lodims[1]))
        log_rad, angle, lodft = log_rad[sl], angle[sl], lodft[sl]
        lodft = _point_op(log_rad, np.abs(np.sqrt(1.0 - yrcos ** 2)), xrcos[0], xrcos[1] - xrcos[0]) * lodft
    low = np.real(np.fft.ifft2(np.fft.ifftshift(lodft)))
    return hi0, levels, low


def divisive_normalise(levels) -> list[np.ndarray]:
    """``norm_sender_normalized(pyr, pind, 2, 6, 1, 1, 3, 3, 50)``: GSM-normalised subbands (2-D).

    Each coefficient is divided by ``sqrt(Y C^-1 Y' / N)`` over its 3x3 neighbourhood, its parent
    (coarser scale, same orientation) and the other orientations of its scale; a guard band of
    16 / 2^scale pixels is then cut and the mean removed.  Order: scale-major, then orientation.
    """
    n_or, n_sc = len(levels[0]), len(levels)
    out = []
    for s in range(n_sc):
        for o in range(n_or):
            aux = levels[s][o]
            nv, nh = aux.shape
            interior = (slice(1, nv - 1), slice(1, nh - 1))
            cols = [aux[1 - dy:nv - 1 - dy, 1 - dx:nh - 1 - dx].ravel()
                    for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
            has_parent = s * n_or + o + 2 < (n_sc * n_or + 1) - n_or  # official: nband < Nband - Nor
            if has_parent:
                parent = _matlab_imresize(levels[s + 1][o], scale=2.0)[:nv, :nh]
                cols.append(parent[interior].ravel())
            n = 9 + int(has_parent)
            cols += [levels[s][k][interior].ravel() for k in range(n_or) if k != o]
            y = np.stack(cols, axis=1)
            cx = y.T @ y / y.shape[0]
            lam, q = np.linalg.eigh(cx)
            pos = lam * (lam > 0)
            lam = pos * lam.sum() / (pos.sum() + (pos.sum() == 0))
            cx = (q * lam) @ q.T
            oc = aux[interior].ravel()
            oc = oc - oc.mean()
            z = np.sqrt(np.maximum(((y @ _matlab_pinv(cx)) * y / n).sum(axis=1), 0.0))
            g = np.divide(oc, z, out=np.zeros_like(oc), where=z != 0).reshape(nv - 2, nh - 2)
            gb = 16 // 2 ** s
            g = g[gb:-gb, gb:-gb]
            out.append(g - g.mean())
    return out


_SSIM_WIN = _matlab_gaussian(11, 1.5)
_SSIM_1D = _SSIM_WIN[5] / _SSIM_WIN[5].sum()  # the 2-D window is the outer product of this


def _valid_filter(x: np.ndarray) -> np.ndarray:
    """``filter2(window, x, 'valid')`` for the 11x11, sigma 1.5 Gaussian (separable)."""
    return correlate1d(correlate1d(x, _SSIM_1D, axis=0), _SSIM_1D, axis=1)[5:-5, 5:-5]


def _local_stats(x: np.ndarray):
    """(x, local mean, local variance) with the SSIM window, reused across comparisons."""
    mu = _valid_filter(x)
    return x, mu, _valid_filter(x * x) - mu * mu


def mean_cs(a, b) -> float:
    """Third output of ``ssim_index_new(a, b)``: mean contrast-structure term (C2 = (0.03*255)^2).

    ``a`` and ``b`` are arrays or their ``_local_stats``.
    """
    a, mu_a, var_a = a if isinstance(a, tuple) else _local_stats(a)
    b, mu_b, var_b = b if isinstance(b, tuple) else _local_stats(b)
    c2 = (0.03 * 255) ** 2
    cov = _valid_filter(a * b) - mu_a * mu_b
    return float(((2 * cov + c2) / (var_a + var_b + c2)).mean())


def global_gsm_features(y255: np.ndarray) -> np.ndarray:
    """``global_gsm.m`` (45 values): 12 subband shapes, 6 cross-scale shapes, 12 hp-vs-band and
    15 orientation-pair contrast-structure similarities."""
    hi0, levels, _ = sf_pyramid(y255)
    sub = divisive_normalise(levels)
    n_or = len(levels[0])
    f = [_ggd_shape(s.reshape(1, -1))[0] for s in sub]
    f += [_ggd_shape(np.concatenate([sub[i].ravel(), sub[i + n_or].ravel()])[None])[0]
          for i in range(n_or)]
    hp = _local_stats(hi0)
    for band in (b for lvl in levels for b in lvl):
        up = band if band.shape == hi0.shape else _matlab_imresize(band, out_shape=hi0.shape)
        f.append(mean_cs(up, hp))
    st = [_local_stats(sub[i]) for i in range(n_or)]
    f += [mean_cs(st[i], st[j]) for i in range(n_or) for j in range(i + 1, n_or)]
    return np.array(f)


# --------------------------------------------------------------------------- spatial (SVD) + all
def gaussian_pyramid(im01: np.ndarray) -> list[np.ndarray]:
    """``feature_all.m``'s 3 levels: ``im_f = imfilter(im, fspecial('gaussian', 3))`` (zero border),
    then ``im_f(2:2:end, 2:2:end)``, twice."""
    h = _matlab_gaussian(3, 0.5)
    pyr = [im01]
    for _ in range(2):
        pyr.append(correlate(pyr[-1], h, mode="constant", cval=0.0)[1::2, 1::2])
    return pyr


def svd_features(im: np.ndarray) -> np.ndarray:
    """Singular values of ``im2col(im, [5 5], 'distinct')`` (zero-padded to a multiple of 5)."""
    h, w = im.shape
    p = np.zeros((-(-h // 5) * 5, -(-w // 5) * 5))
    p[:h, :w] = im
    cols = p.reshape(p.shape[0] // 5, 5, p.shape[1] // 5, 5).transpose(1, 3, 0, 2).reshape(25, -1)
    return np.linalg.svd(cols, compute_uv=False)


def ma_features(y255: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``feature_all(Y)`` as ``reshape(f, 1, [])`` rows: DCT (18,), GSM (45,), SVD (75,)."""
    y255 = np.asarray(y255, dtype=np.float64)
    if y255.ndim != 2 or min(y255.shape) < 64:
        raise ValueError(f"Ma et al.'s features need a 2-D image of at least ~84x84, got {y255.shape}")
    pyr = gaussian_pyramid(y255 / 255.0)
    h3, w3 = pyr[2].shape  # the official code needs >= 25 5x5 blocks at the coarsest level
    if -(-h3 // 5) * -(-w3 // 5) < 25:
        raise ValueError(f"Ma et al.'s features need a 2-D image of at least ~84x84, got {y255.shape}")
    f1 = np.concatenate([block_dct_features(im) for im in pyr])
    f2 = global_gsm_features(y255)
    f3 = np.concatenate([svd_features(im) for im in pyr])  # [t1 t2 t3] columns, read column-major
    return f1, f2, f3
