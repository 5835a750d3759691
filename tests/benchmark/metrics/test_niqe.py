"""NIQE (Mittal et al. 2013) as the PIRM code computes it: reference values, parameters, behaviour."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
import torch.nn.functional as F
from PIL import Image
from scipy.ndimage import gaussian_filter

from benchmark.metrics.niqe import (
    _GAM,
    _R_GAM,
    DEFAULT_PARAMS,
    NIQE,
    _matlab_colon,
    _nearest_in_table,
    _pirm_y,
    load_niqe_params,
    niqe,
)

SHARED = Path(__file__).resolve().parents[3].parent / "shared"
OFFICIAL_MAT = SHARED / "metrics" / "niqe_modelparameters.mat"
K = "kather/CRC-VAL-HE-7K/"
C = "crchisto/CRCHistoPhenotypes_2016_04_28/Detection/"
DOWN_UP = "#bicubic_x4_down_up"

# Reference NIQE values from pyiqa 0.1.16 (PolyForm-NC: a scratch environment outside the project,
# `pip install --target /tmp/pyiqa_site --no-deps pyiqa`, run with this venv's torch 2.14.1):
#     m = pyiqa.create_metric('niqe', pretrained_model_path='shared/metrics/niqe_modelparameters.mat')
#     m(torch.from_numpy(Y / 255.0)[None, None])
# where Y is the PIRM input: MATLAB rgb2ycbcr of the 8-bit RGB, stored as uint8 (round half up),
# 4 pixels shaved -- fed as one channel because pyiqa's own default converts RGB with YIQ
# (0.299, 0.587, 0.114; full range), not rgb2ycbcr, and its 'ycbcr' option uses float32
# coefficients that flip the rounding of a few pixels.  DOWN_UP: torch bicubic resize to 1/4
# (antialiased) and back, clamped and rounded to 8 bits, as `_down_up_x4` below.
# pyiqa computes its Gaussian window, AGGD grid and imresize in float32; emulating exactly those
# float32 steps, this implementation reproduces all 8 values below to < 1e-11.  In float64 it
# differs from them by <= 2.4e-4 on images without flat regions.
REFERENCE = {
    K + "LYM/LYM-TCGA-FTVCYFDV.png": 10.628110750296367,
    K + "TUM/TUM-TCGA-DRHQMTQA.png": 4.502098831162028,
    K + "MUS/MUS-TCGA-AQQNDSTI.png": 8.309958362835975,
    C + "img6/img6.bmp": 2.474802250193843,
    C + "img15/img15.bmp": 5.995482442983931,
    K + "MUS/MUS-TCGA-AQQNDSTI.png" + DOWN_UP: 11.299136518234715,
}
# Images with flat (saturated white) 7x7 regions.  There the literal MSCN is rounding noise whose
# sign decides which side of the AGGD fit a pixel counts on; this implementation sets it to 0
# (see niqe._mscn), pyiqa's float32 window makes it all one sign: values differ by up to ~0.015.
REFERENCE_FLAT = {
    K + "ADI/ADI-TCGA-EENSRDNW.png": 4.720642445773421,
    C + "img1/img1.bmp": 4.736176298121546,
}


@pytest.fixture(scope="module")
def data_root() -> Path:
    root = Path(os.environ.get("MIRBENCH_DATA", SHARED / "datasets"))
    if not root.is_dir():
        pytest.fail(f"real data samples not found at {root}")
    return root


def _load(root: Path, name: str) -> torch.Tensor:
    """(1, 3, H, W) float64 [0, 1] exactly k / 255, optionally bicubic x4 down-up."""
    path, _, variant = name.partition("#")
    x = torch.from_numpy(np.asarray(Image.open(root / path).convert("RGB"), dtype=np.float64) / 255.0)
    x = x.permute(2, 0, 1)[None]
    return _down_up_x4(x) if variant else x


def _down_up_x4(x: torch.Tensor) -> torch.Tensor:
    h, w = x.shape[-2:]
    lo = F.interpolate(x, size=(h // 4, w // 4), mode="bicubic", align_corners=False, antialias=True)
    up = F.interpolate(lo, size=(h, w), mode="bicubic", align_corners=False).clamp(0, 1)
    return (up * 255.0).round() / 255.0


@pytest.fixture(scope="module")
def metric() -> NIQE:
    return NIQE()


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_matches_pyiqa_reference(metric, data_root, name):
    x = _load(data_root, name)
    assert abs(float(metric.score(x, x)[0]) - REFERENCE[name]) < 1e-3


@pytest.mark.parametrize("name", sorted(REFERENCE_FLAT))
def test_flat_regions_close_to_pyiqa(metric, data_root, name):
    x = _load(data_root, name)
    assert abs(float(metric.score(x, x)[0]) - REFERENCE_FLAT[name]) < 0.02


def test_flat_regions_have_zero_mscn_and_are_deterministic(data_root):
    y = _pirm_y(_load(data_root, K + "ADI/ADI-TCGA-EENSRDNW.png"), 4)[0].numpy()
    mu, cov = load_niqe_params()
    assert niqe(y, mu, cov) == niqe(y.copy(), mu, cov)
    # a constant image: every MSCN is exactly 0, every AGGD fit undefined -> NaN, as MATLAB's nanmean
    with np.errstate(all="ignore"), pytest.warns(RuntimeWarning, match="empty slice"):
        assert np.isnan(niqe(np.full((192, 192), 235.0), mu, cov))


def test_function_equals_metric_and_ignores_target(metric, data_root):
    x = _load(data_root, C + "img6/img6.bmp")
    y = _pirm_y(x, 4)[0]
    mu, cov = load_niqe_params()
    assert metric.score(x, torch.zeros_like(x))[0].item() == niqe(y, mu, cov) == niqe(y.numpy(), mu, cov)


def test_bundled_params_are_the_official_mat_bit_for_bit():
    if not OFFICIAL_MAT.is_file():
        pytest.skip(f"official parameter file not present at {OFFICIAL_MAT}")
    m = scipy.io.loadmat(OFFICIAL_MAT)
    with np.load(DEFAULT_PARAMS) as z:
        mu, cov = z["mu_pris_param"], z["cov_pris_param"]
    assert mu.shape == (36,) and cov.shape == (36, 36) and mu.dtype == cov.dtype == np.float64
    assert mu.tobytes() == np.ascontiguousarray(m["mu_prisparam"].reshape(36)).tobytes()
    assert cov.tobytes() == np.ascontiguousarray(m["cov_prisparam"]).tobytes()
    mu2, cov2 = load_niqe_params(OFFICIAL_MAT)  # the .mat path option
    assert np.array_equal(mu, mu2) and np.array_equal(cov, cov2)


def test_niqe_increases_with_blur(metric, data_root):
    x = _load(data_root, C + "img10/img10.bmp")
    scores = []
    for sigma in (0.0, 0.75, 1.5, 3.0):  # NIQE 2.56, 4.35, 6.40, 9.95
        xb = x if sigma == 0 else torch.from_numpy(gaussian_filter(x.numpy(), sigma=(0, 0, sigma, sigma)))
        scores.append(float(metric.score(xb, xb)[0]))
    assert all(a < b for a, b in zip(scores, scores[1:])), scores


def test_ddp_style_ordering_is_inherited(data_root):
    names = [K + "LYM/LYM-TCGA-FTVCYFDV.png", K + "TUM/TUM-TCGA-DRHQMTQA.png",
             K + "MUS/MUS-TCGA-AQQNDSTI.png", K + "STR/STR-TCGA-HGDYLEWM.png"]
    imgs = [_load(data_root, n) for n in names]
    single = NIQE()
    single.update(torch.cat(imgs), torch.cat(imgs), torch.arange(4))
    rank0, rank1 = NIQE(), NIQE()  # a DistributedSampler interleaves: rank 0 gets 0, 2; rank 1 gets 1, 3
    rank0.update(torch.cat([imgs[0], imgs[2]]), torch.cat([imgs[0], imgs[2]]), torch.tensor([0, 2]))
    rank1.update(torch.cat([imgs[3]]), torch.cat([imgs[3]]), torch.tensor([3]))
    rank1.update(imgs[1], imgs[1], torch.tensor([1]))
    states = [(list(r.index), list(r.values)) for r in (rank0, rank1)]
    for r, (oi, ov) in zip((rank0, rank1), states[::-1]):  # the 'cat' sync: every rank gets all states
        r.index, r.values = r.index + oi, r.values + ov
    assert rank1.compute().item() == rank0.compute().item() == single.compute().item()
    rank0.update(imgs[0], imgs[0], torch.tensor([0]))  # a padding sampler repeating image 0
    with pytest.raises(RuntimeError, match="evaluated twice"):
        rank0.compute()


def test_grid_and_nearest_lookup_match_matlab_semantics():
    g = _matlab_colon(0.2, 0.001, 10.0)
    assert g.size == 9801 and g[0] == 0.2 and g[-1] == 10.0 and np.array_equal(g, _GAM)
    v = np.concatenate([np.random.default_rng(0).uniform(0.2, 0.8, 800), _R_GAM[::97], [np.nan, -1, 9]])
    brute = np.argmin((_R_GAM[None, :] - v[:, None]) ** 2, axis=1)  # MATLAB min: first minimum
    assert np.array_equal(_nearest_in_table(_R_GAM, v), brute)
    desc = _R_GAM[::-1].copy()
    assert np.array_equal(_nearest_in_table(desc, v), np.argmin(np.abs(desc[None, :] - v[:, None]), axis=1))


def test_single_block_matches_pyiqa(data_root):
    # one 96x96 block: zero distorted covariance (pyiqa agrees: 22.694107265341547)
    y = _pirm_y(_load(data_root, K + "LYM/LYM-TCGA-FTVCYFDV.png"), 4)[0].numpy()[:150, :150]
    assert abs(niqe(y, *load_niqe_params()) - 22.694107265341547) < 1e-3


def test_small_image_rejected(metric):
    x = torch.rand(1, 3, 100, 100)
    with pytest.raises(ValueError, match="at least 96x96"):
        metric.score(x, x)
