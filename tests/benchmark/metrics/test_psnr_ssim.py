"""PSNR / SSIM / RMSE against scikit-image on real images, and the conventions they encode."""
import math

import kornia
import numpy as np
import pytest
import torch
from skimage.color import rgb2ycbcr
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from benchmark.metrics.color import quantize_uint8, rgb_to_y_bt601, to_eval_space
from benchmark.metrics.psnr_ssim import PSNR, RMSE, SSIM, RegionPSNR, RegionSSIM
from datamodules.base import read_rgb
from datamodules.imresize import imresize
from datamodules.kather import list_patches


@pytest.fixture(scope="module")
def pairs(shared_data):
    """Real Kather patches and their bicubic x4 down-up reconstructions (a realistic SR error)."""
    files = list_patches("CRC-VAL-HE-7K", shared_data)[:4]
    hr = torch.stack([read_rgb(f) for f in files])
    lr = (imresize(hr, 0.25).clamp(0, 1) * 255).round() / 255
    return imresize(lr, 4.0).clamp(0, 1), hr


def _np_uint8(x):
    return quantize_uint8(x).permute(1, 2, 0).numpy().astype(np.uint8)


def _update(metric, sr, hr, **kw):
    metric.update(sr, hr, torch.arange(sr.shape[0]), **kw)
    return float(metric.compute())


def test_y_channel_is_matlab_rgb2ycbcr(pairs):
    sr, _ = pairs
    ours = rgb_to_y_bt601(quantize_uint8(sr[0]))[0].numpy()
    ref = rgb2ycbcr(_np_uint8(sr[0]))[..., 0]  # scikit-image: MATLAB's BT.601 limited range
    np.testing.assert_allclose(ours, ref, atol=1e-10)


@pytest.mark.parametrize("space,crop", [("y", 4), ("rgb", 4), ("y", 0)])
def test_psnr_matches_scikit_image_per_image_mean(pairs, space, crop):
    sr, hr = pairs
    refs = []
    for a, b in zip(sr, hr):
        pa, pb = to_eval_space(a, space), to_eval_space(b, space)
        if crop:
            pa, pb = pa[..., crop:-crop, crop:-crop], pb[..., crop:-crop, crop:-crop]
        refs.append(peak_signal_noise_ratio(pb.numpy(), pa.numpy(), data_range=255))
    assert _update(PSNR(space, crop), sr, hr) == pytest.approx(np.mean(refs), abs=1e-9)


@pytest.mark.parametrize("space", ["y", "rgb"])
def test_ssim_matches_scikit_image(pairs, space):
    sr, hr = pairs
    refs = []
    for a, b in zip(sr, hr):
        pa, pb = to_eval_space(a, space)[..., 4:-4, 4:-4], to_eval_space(b, space)[..., 4:-4, 4:-4]
        refs.append(np.mean([structural_similarity(pa[c].numpy(), pb[c].numpy(), gaussian_weights=True, sigma=1.5,
                                                   use_sample_covariance=False, data_range=255)
                             for c in range(pa.shape[0])]))
    assert _update(SSIM(space, 4), sr, hr) == pytest.approx(np.mean(refs), abs=1e-9)


def test_full_range_y_would_shift_psnr_by_1_32_db(pairs):
    """Why kornia's Y is not used: full-range Y is 255/219 times the limited-range signal."""
    sr, hr = pairs
    ours = _update(PSNR("y", 4), sr, hr)
    full = []
    for a, b in zip(sr, hr):
        ya = kornia.color.rgb_to_y(quantize_uint8(a).float())[..., 4:-4, 4:-4].double()
        yb = kornia.color.rgb_to_y(quantize_uint8(b).float())[..., 4:-4, 4:-4].double()
        full.append(10 * math.log10(255 ** 2 / float(((ya - yb) ** 2).mean())))
    assert ours - np.mean(full) == pytest.approx(20 * math.log10(255 / 219), abs=0.01)


def test_per_image_average_is_not_pooled_mse(pairs):
    sr, hr = pairs
    per_image = _update(PSNR("y", 4), sr, hr)
    rmse = _update(RMSE("y", 4), sr, hr)
    pooled = 20 * math.log10(255 / rmse)  # RMSE is sqrt(mean MSE): the pooled PSNR
    assert per_image != pytest.approx(pooled, abs=1e-6)
    assert per_image >= pooled  # Jensen: mean of logs >= log of mean


def test_region_metrics(pairs):
    sr, hr = pairs
    full = torch.ones(sr.shape[0], 1, *sr.shape[-2:])
    assert _update(RegionPSNR("y", 0), sr, hr, mask=full) == pytest.approx(_update(PSNR("y", 0), sr, hr), abs=1e-9)
    assert _update(RegionSSIM("y", 0), sr, hr, mask=full) == pytest.approx(_update(SSIM("y", 0), sr, hr), abs=1e-9)
    # errors outside the region do not count
    damaged = sr.clone()
    damaged[..., :, :100] = 0
    mask = torch.zeros_like(full)
    mask[..., :, 120:] = 1
    assert _update(RegionPSNR("y", 0), damaged, hr, mask=mask) == pytest.approx(
        _update(RegionPSNR("y", 0), sr, hr, mask=mask), abs=1e-9)


def test_order_invariant_and_duplicates_detected(pairs):
    sr, hr = pairs
    a, b = PSNR("y", 4), PSNR("y", 4)
    a.update(sr, hr, torch.arange(4))
    for i in (3, 1, 0, 2):  # another rank order / batching
        b.update(sr[i:i + 1], hr[i:i + 1], torch.tensor([i]))
    assert float(a.compute()) == float(b.compute())  # bit-identical
    b.update(sr[:1], hr[:1], torch.tensor([0]))
    with pytest.raises(RuntimeError, match="evaluated twice"):
        b.compute()


def test_identical_images_give_infinite_psnr(pairs):
    _, hr = pairs
    assert math.isinf(_update(PSNR("y", 4), hr, hr))
    assert _update(SSIM("y", 4), hr, hr) == pytest.approx(1.0)
