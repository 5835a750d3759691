"""ROI sampler / mask on the real CRCHistoPhenotypes nucleus centres."""
import math

import pytest
import torch

from datamodules.base import read_rgb
from datamodules.crchisto import load_records
from datamodules.sr_pairs import _pad_points
from tasks.common.roi import NUCLEUS_RADIUS, ROI_SIZE, crop_rois, points_to_disc_mask, points_to_mask, sample_rois


@pytest.fixture(scope="module")
def crch_batch(shared_data):
    """Two whole real CRCH images (500x500) with all their nucleus centres, NaN-padded as the loader does."""
    recs = load_records(shared_data)[:2]
    hr = torch.stack([read_rgb(r.image) for r in recs])
    points = torch.stack([_pad_points(r.nuclei, 1200) for r in recs])
    return hr, points, recs


def test_rois_are_centred_on_annotated_nuclei(crch_batch):
    hr, points, recs = crch_batch
    rois = sample_rois(points, hr.shape[-2:], ROI_SIZE, per_image=6)
    assert rois.shape == (12, 3) and rois.dtype == torch.long
    assert torch.bincount(rois[:, 0]).tolist() == [6, 6]
    for b, x, y in rois.tolist():
        annotated = recs[b].nuclei.round().long()
        assert ((annotated[:, 0] == x) & (annotated[:, 1] == y)).any(), "ROI centre is not an annotated nucleus"
    # the nucleus pixel is at index size//2 of its patch, and the patch is the image's own pixels
    ys, xs = torch.meshgrid(torch.arange(500.0), torch.arange(500.0), indexing="ij")
    coords = torch.stack([xs, ys])[None].expand(2, -1, -1, -1)
    centre = crop_rois(coords, rois, ROI_SIZE)[:, :, ROI_SIZE // 2, ROI_SIZE // 2]
    assert torch.equal(centre.long(), rois[:, 1:])
    patches = crop_rois(hr, rois, ROI_SIZE)
    assert patches.shape == (12, 3, ROI_SIZE, ROI_SIZE)
    b, x, y = rois[0].tolist()
    h = ROI_SIZE // 2
    assert torch.equal(patches[0], hr[b, :, y - h:y - h + ROI_SIZE, x - h:x - h + ROI_SIZE])


def test_sampler_skips_border_and_padding_and_draws_at_random():
    pts = torch.full((1, 5, 2), math.nan)
    pts[0, :3] = torch.tensor([[3.0, 30.0], [30.0, 30.2], [50.0, 63.0]])  # only the middle one fits in 64x64
    for _ in range(5):
        rois = sample_rois(pts, (64, 64), 32, per_image=4)
        assert rois.tolist() == [[0, 30, 30]]
    assert sample_rois(pts, (64, 64), 64).shape == (0, 3)
    many = torch.rand(1, 50, 2) * 40 + 16                                  # all fit in 72x72
    draws = {tuple(sample_rois(many, (72, 72), 32, per_image=3)[:, 1:].flatten().tolist()) for _ in range(5)}
    assert len(draws) > 1


def test_crop_rois_passes_gradients():
    img = torch.rand(2, 3, 64, 64, requires_grad=True)
    rois = torch.tensor([[1, 32, 20]])
    crop_rois(img, rois, 16).sum().backward()
    assert img.grad[1].sum() == 3 * 16 * 16 and img.grad[0].abs().sum() == 0


def test_points_to_mask_is_the_union_of_clipped_squares(crch_batch):
    pts = torch.tensor([[[10.0, 10.0], [12.0, 10.0], [0.0, 63.0], [math.nan, math.nan]]])
    mask = points_to_mask(pts, (64, 64), size=8)
    ref = torch.zeros(64, 64)
    for x, y in [(10, 10), (12, 10), (0, 63)]:
        ref[max(0, y - 4):y + 4, max(0, x - 4):x + 4] = 1
    assert mask.shape == (1, 1, 64, 64) and torch.equal(mask[0, 0], ref)
    hr, points, recs = crch_batch
    real = points_to_mask(points, hr.shape[-2:])
    assert real.shape == (2, 1, 500, 500)
    for b, rec in enumerate(recs):  # every nucleus pixel is inside the mask, and the mask is a real subset
        x, y = rec.nuclei.round().long().clamp(0, 499).T
        assert real[b, 0, y, x].all()
        assert 0.05 < real[b].mean() < 1.0


def test_disc_mask_by_hand_and_nucleus_scale_on_crch(crch_batch):
    pts = torch.tensor([[[5.0, 5.0], [0.0, 9.0], [float("nan"), float("nan")]]])
    m = points_to_disc_mask(pts, (10, 12), radius=2)[0, 0]
    yy, xx = torch.meshgrid(torch.arange(10), torch.arange(12), indexing="ij")
    expected = ((xx - 5) ** 2 + (yy - 5) ** 2 <= 4) | ((xx - 0) ** 2 + (yy - 9) ** 2 <= 4)   # clipped at the border
    assert torch.equal(m.bool(), expected)
    assert points_to_disc_mask(torch.full((1, 3, 2), float("nan")), (8, 8)).sum() == 0      # no nucleus: empty
    # on the real CRCH annotations the discs cover a nucleus-scale share of the image, far below the squares
    hr, points, _ = crch_batch
    discs = points_to_disc_mask(points, hr.shape[-2:]).mean().item()
    squares = points_to_mask(points, hr.shape[-2:]).mean().item()
    assert NUCLEUS_RADIUS == 7 and 0.01 < discs < 0.4 and discs < squares / 2


def test_region_metrics_score_nan_for_an_empty_mask_and_skip_it():
    from benchmark.metrics.psnr_ssim import RegionPSNR, RegionSSIM
    torch.manual_seed(0)
    target = torch.rand(2, 3, 24, 24)
    pred = (target + 0.05 * torch.randn_like(target)).clamp(0, 1)
    mask = torch.zeros(2, 1, 24, 24)
    mask[0, :, 6:18, 6:18] = 1                                   # image 1: no nucleus
    for cls in (RegionPSNR, RegionSSIM):
        metric = cls("y", 0)
        metric.update(pred, target, torch.tensor([0, 1]), mask=mask)
        _, per_image = metric.per_image()
        assert math.isfinite(per_image[0]) and math.isnan(per_image[1])
        assert float(metric.compute()) == pytest.approx(float(per_image[0]))       # the mean skips the NaN
        only_empty = cls("y", 0)
        only_empty.update(pred[1:], target[1:], torch.tensor([1]), mask=mask[1:])
        assert math.isnan(float(only_empty.compute()))
