"""ROI sampler / mask on the real CRCHistoPhenotypes nucleus centres."""
import math

import pytest
import torch

from datamodules.base import read_rgb
from datamodules.crchisto import load_records
from datamodules.sr_pairs import _pad_points
from tasks.common.roi import ROI_SIZE, crop_rois, points_to_mask, sample_rois


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
