"""Regions of interest around annotated points (nucleus centres): square patches and nucleus discs.

Used by rVTT (Tom et al., ISBI 2019, Sec. 3, Fig. 2c): T2 judges pairs of (real, SR) patches cut
around the ROIs, which the paper takes from "ROI masks provided as ground truth"; for
CRCHistoPhenotypes those are the annotated nucleus centres.  The ROI-restricted PSNR/SSIM of the CRCH
evaluation (a measure rVTT motivates but does not tabulate) scores nucleus-scale discs of radius
NUCLEUS_RADIUS around the same centres (:func:`points_to_disc_mask`): the nuclei themselves, not the
32 px squares, whose union covers 57 % of an average CRCH image (up to 99.7 %).

Points are a batch's ``points``: (B, P, 2) HR pixel (x, y), 0-based, padded with NaN.  A square of
side ``size`` "centred" on a point covers rows/cols [round(c) - size//2, round(c) - size//2 + size),
so the nucleus pixel sits at index size//2 of the patch.  Hand-written: ROI crops must be integer-
aligned and identical in the real and SR images (torchvision's roi_align resamples bilinearly).
"""
from __future__ import annotations

import torch

# The one ROI side (HR pixels) of the rVTT T2 patches and of the CRCH region metrics.  CRCH images are
# ~0.55 um/px (20x objective); 32 px ~ 17 um covers a colorectal nucleus (~5-10 um, 10-20 px) and a ring
# of the cytoplasm/stroma around it, the texture rVTT wants restored "within nucleus and around cytoplasm".
# It is also a size ESRGAN's VGG-style discriminator takes (4 * 2^3).
ROI_SIZE = 32
# Nucleus radius (HR px) of the CRCH region metrics, from the data: over the 29,755 annotated centres of
# the 100 CRCH images the median distance to the nearest other centre is 13.4 px (lower quartile 10.8);
# in the dense clusters that dominate it neighbouring nuclei touch, so that distance is about one
# nucleus diameter and half of it, 7 px (~3.9 um at ~0.55 um/px), the radius.  The discs cover 17 % of
# an average image (max 59 %).  Reproduce: python -m tasks.sr.baseline_differences --nucleus-radius
NUCLEUS_RADIUS = 7


def _centres(points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, P, 2) float points -> (rounded integer centres with NaN as 0, finite mask)."""
    finite = torch.isfinite(points).all(-1)
    return torch.nan_to_num(points, nan=0.0).round().long(), finite


def sample_rois(points: torch.Tensor, image_hw: tuple[int, int], size: int = ROI_SIZE, per_image: int = 4,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Up to ``per_image`` random points per image whose whole ``size`` square lies in the image.

    Returns a (N, 3) long tensor of (batch index, centre x, centre y); N may be 0.  Points whose square
    would cross the border are skipped, so every patch is exactly centred on its nucleus.
    """
    if points.ndim != 3 or points.shape[-1] != 2:
        raise ValueError(f"points must be (B, P, 2), got {tuple(points.shape)}")
    h, w = image_hw
    centres, valid = _centres(points)
    lo = size // 2
    x, y = centres[..., 0], centres[..., 1]
    valid &= (x >= lo) & (y >= lo) & (x - lo + size <= w) & (y - lo + size <= h)
    b, p = points.shape[:2]
    if p == 0:
        return torch.empty(0, 3, dtype=torch.long, device=points.device)
    score = torch.rand(b, p, device=points.device, generator=generator).masked_fill(~valid, -1.0)
    top, idx = score.topk(min(per_image, p), dim=1)
    keep = top >= 0
    rows = torch.arange(b, device=points.device)[:, None].expand_as(idx)[keep]
    chosen = centres[rows, idx[keep]]
    return torch.cat([rows[:, None], chosen], 1)


def crop_rois(images: torch.Tensor, rois: torch.Tensor, size: int = ROI_SIZE) -> torch.Tensor:
    """(B, C, H, W) images, (N, 3) rois from :func:`sample_rois` -> (N, C, size, size) patches
    (differentiable: gradients flow back into ``images``)."""
    off = torch.arange(size, device=images.device) - size // 2
    ys = rois[:, 2, None] + off
    xs = rois[:, 1, None] + off
    patches = images[rois[:, 0, None, None], :, ys[:, :, None], xs[:, None, :]]  # (N, size, size, C)
    return patches.permute(0, 3, 1, 2)


def points_to_mask(points: torch.Tensor, image_hw: tuple[int, int], size: int = ROI_SIZE) -> torch.Tensor:
    """(B, P, 2) points -> (B, 1, H, W) float mask, 1 on the union of the ``size`` squares around them
    (clipped at the border; NaN rows ignored)."""
    h, w = image_hw
    centres, valid = _centres(points)
    start = centres - size // 2                                   # (B, P, 2) top-left (x, y)
    rows = torch.arange(h, device=points.device)
    cols = torch.arange(w, device=points.device)
    in_y = (rows >= start[..., 1, None]) & (rows < start[..., 1, None] + size) & valid[..., None]  # (B, P, H)
    in_x = (cols >= start[..., 0, None]) & (cols < start[..., 0, None] + size)                     # (B, P, W)
    covered = in_y.transpose(1, 2).float() @ in_x.float()        # (B, H, W): squares covering each pixel
    return (covered > 0).float()[:, None]


def points_to_disc_mask(points: torch.Tensor, image_hw: tuple[int, int], radius: int = NUCLEUS_RADIUS) -> torch.Tensor:
    """(B, P, 2) points -> (B, 1, H, W) float mask, 1 on the union of the discs of ``radius`` around the
    rounded centres (pixel (x, y) is in when (x - cx)^2 + (y - cy)^2 <= radius^2; NaN rows ignored).
    An image without points gets an empty mask (its region scores are NaN and skipped)."""
    h, w = image_hw
    centres, valid = _centres(points)
    b = points.shape[0]
    mask = torch.zeros(b, 1, h, w, device=points.device)
    r = int(radius)
    off = torch.arange(-r, r + 1, device=points.device)
    dy, dx = torch.meshgrid(off, off, indexing="ij")
    disc = (dy ** 2 + dx ** 2) <= r * r
    dy, dx = dy[disc], dx[disc]                                   # (K,) offsets inside the disc
    bi, pi = valid.nonzero(as_tuple=True)
    if bi.numel():
        ys = centres[bi, pi, 1][:, None] + dy                      # (N, K)
        xs = centres[bi, pi, 0][:, None] + dx
        inside = (ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)
        bb = bi[:, None].expand_as(ys)[inside]
        mask[bb, 0, ys[inside], xs[inside]] = 1.0
    return mask
