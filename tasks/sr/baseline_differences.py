"""Why our training-free SR baselines differ from the papers' numbers: every claim of the README's
"why they differ" list, measured on the same images.

    python -m tasks.sr.baseline_differences [--data DIR] [--nucleus-radius]

Reads CRCHistoPhenotypes (the rVTT test split the benchmark uses: 20 seeded images) and the 32
CRC-VAL-HE-7K patches of the Kather sample under ``--data`` (default $MIRBENCH_DATA), and prints:
the split noise of a 20-image mean, bicubic x4 under each colour convention (Y of MATLAB rgb2ycbcr,
RGB, kornia's full-range Y), each downsampling / upsampling kernel (MATLAB antialiased bicubic,
OpenCV INTER_CUBIC without antialiasing, INTER_AREA, OpenCV's a = -0.75 upsampling), the nearest row
under both protocols, and with ``--nucleus-radius`` the nucleus-radius derivation of tasks/common/roi.py.
Every number of that README section comes from this output.  (Under tasks/sr: it imports the SR
task's data conventions; it trains nothing.)
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import kornia
import numpy as np
import torch

from benchmark.metrics.psnr_ssim import PSNR, SSIM, _psnr_from_mse
from benchmark.metrics.color import quantize_uint8, shave
from datamodules.base import data_root, read_rgb
from datamodules.crchisto import load_records, split_records
from datamodules.imresize import imresize
from datamodules.sr_pairs import mod_crop

SCALE = 4


def _q(img: torch.Tensor) -> torch.Tensor:
    """[0, 1] float -> 8-bit rounded [0, 1] (a saved PNG)."""
    return (img.clamp(0, 1) * 255).round() / 255


def _cv(img: torch.Tensor, size: tuple[int, int], interp: int) -> torch.Tensor:
    """OpenCV resize of a (3, H, W) [0, 1] image to ``size`` (W, H), 8-bit in and out."""
    arr = (img.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    return torch.from_numpy(cv2.resize(arr, size, interpolation=interp)).permute(2, 0, 1).float() / 255


def down(hr: torch.Tensor, kernel: str) -> torch.Tensor:
    h, w = hr.shape[-2:]
    if kernel == "matlab":
        return _q(imresize(hr, 1 / SCALE))
    return _cv(hr, (w // SCALE, h // SCALE), {"cv_cubic": cv2.INTER_CUBIC, "cv_area": cv2.INTER_AREA}[kernel])


def up(lr: torch.Tensor, kernel: str) -> torch.Tensor:
    h, w = lr.shape[-2:]
    if kernel == "matlab":
        return imresize(lr, float(SCALE)).clamp(0, 1)
    if kernel == "nearest":
        return lr.repeat_interleave(SCALE, -2).repeat_interleave(SCALE, -1)
    return _cv(lr, (w * SCALE, h * SCALE), cv2.INTER_CUBIC)


def _scores(preds: list[torch.Tensor], targets: list[torch.Tensor], space: str) -> tuple[np.ndarray, np.ndarray]:
    psnr, ssim = PSNR(space, SCALE), SSIM(space, SCALE)
    p = np.array([float(psnr.score(a[None], b[None])) for a, b in zip(preds, targets)])
    s = np.array([float(ssim.score(a[None], b[None])) for a, b in zip(preds, targets)])
    return p, s


def _full_range_y_psnr(preds, targets) -> np.ndarray:
    """PSNR on kornia's full-range (JPEG) Y, border crop 4, 8-bit rounded outputs."""
    out = []
    for a, b in zip(preds, targets):
        ya = kornia.color.rgb_to_ycbcr(quantize_uint8(a[None]) / 255)[:, :1] * 255
        yb = kornia.color.rgb_to_ycbcr(quantize_uint8(b[None]) / 255)[:, :1] * 255
        out.append(float(_psnr_from_mse(((shave(ya, SCALE) - shave(yb, SCALE)) ** 2).flatten(1).mean(1))))
    return np.array(out)


def _row(name: str, p: np.ndarray, s: np.ndarray | None = None) -> str:
    return f"  {name:<58s} PSNR {p.mean():6.2f}" + (f"  SSIM {s.mean():.3f}" if s is not None else "")


def crch_report(root: Path) -> list[str]:
    _, test = split_records(load_records(root), seed=0)
    hrs = [mod_crop(read_rgb(r.image), SCALE) for r in test]
    lines = [f"CRCHistoPhenotypes x{SCALE}, the benchmark's {len(hrs)} test images (seeded split, seed 0)"]
    ours = [up(down(h, "matlab"), "matlab") for h in hrs]
    p, s = _scores(ours, hrs, "y")
    se = p.std(ddof=1) / np.sqrt(len(p))
    lines += [_row("bicubic, MATLAB down/up, Y (ours)", p, s),
              f"  split noise: per-image PSNR std {p.std(ddof=1):.2f} dB -> standard error of the "
              f"{len(p)}-image mean {se:.2f} dB"]
    p_rgb, s_rgb = _scores(ours, hrs, "rgb")
    lines += [_row("bicubic, MATLAB down/up, RGB", p_rgb, s_rgb),
              _row("bicubic, MATLAB down/up, kornia full-range Y", _full_range_y_psnr(ours, hrs))]
    for k, label in (("cv_cubic", "OpenCV INTER_CUBIC (no antialiasing)"), ("cv_area", "OpenCV INTER_AREA")):
        p2, s2 = _scores([up(down(h, k), "matlab") for h in hrs], hrs, "y")
        lines.append(_row(f"bicubic, LR by {label}, MATLAB up, Y", p2, s2))
    p3, s3 = _scores([up(down(h, "matlab"), "cv_cubic") for h in hrs], hrs, "y")
    lines.append(_row("bicubic, MATLAB down, OpenCV cubic up (a = -0.75), Y", p3, s3))
    pn, sn = _scores([up(down(h, "matlab"), "nearest") for h in hrs], hrs, "y")
    lines.append(_row("nearest, MATLAB down, Y (ours)", pn, sn))
    cv_lr = [down(h, "cv_cubic") for h in hrs]
    pn2, sn2 = _scores([up(lr, "nearest") for lr in cv_lr], hrs, "rgb")
    pb2, sb2 = _scores([up(lr, "cv_cubic") for lr in cv_lr], hrs, "rgb")
    lines += [_row("nearest, OpenCV INTER_CUBIC down, pixel replication, RGB", pn2, sn2),
              _row("bicubic under that protocol (OpenCV down/up, RGB)", pb2, sb2)]
    return lines


def kather_report(root: Path) -> list[str]:
    files = sorted((root / "kather" / "CRC-VAL-HE-7K").glob("*/*.png"))
    if not files:
        return [f"Kather CRC-VAL-HE-7K sample not found under {root / 'kather'}"]
    hrs = [mod_crop(read_rgb(f), SCALE) for f in files]
    ours = [up(down(h, "matlab"), "matlab") for h in hrs]
    lines = [f"Kather CRC-VAL-HE-7K sample, all {len(hrs)} patches, bicubic x{SCALE} (MATLAB down/up)"]
    for space in ("y", "rgb"):
        p, s = _scores(ours, hrs, space)
        lines.append(_row(f"on {space.upper()}", p, s))
    return lines


def nucleus_radius_report(root: Path) -> list[str]:
    from scipy.spatial import cKDTree
    recs = load_records(root)
    nn = []
    for r in recs:
        pts = r.nuclei.numpy()
        if len(pts) > 1:
            nn.append(cKDTree(pts).query(pts, k=2)[0][:, 1])
    d = np.concatenate(nn)
    radius = int(round(np.median(d) / 2))
    cover = []
    yy, xx = np.mgrid[:500, :500]
    for r in recs:
        m = np.zeros((500, 500), bool)
        for x, y in np.round(r.nuclei.numpy()).astype(int):
            m |= (yy - y) ** 2 + (xx - x) ** 2 <= radius ** 2
        cover.append(m.mean())
    return ["CRCH nucleus radius (tasks/common/roi.py NUCLEUS_RADIUS)",
            f"  {len(d)} nucleus centres in {len(recs)} images: distance to the nearest other centre "
            f"median {np.median(d):.1f} px, lower quartile {np.percentile(d, 25):.1f} px",
            f"  radius = half the median = {radius} px; discs cover {100 * np.mean(cover):.0f} % of an "
            f"average image (max {100 * np.max(cover):.0f} %)"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tasks.sr.baseline_differences", description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=None, help="dataset root (default: $MIRBENCH_DATA)")
    ap.add_argument("--nucleus-radius", action="store_true", help="also derive the CRCH nucleus radius")
    args = ap.parse_args(argv)
    root = args.data or data_root()
    torch.set_grad_enabled(False)
    lines = crch_report(root) + [""] + kather_report(root)
    if args.nucleus_radius:
        lines += [""] + nucleus_radius_report(root)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
