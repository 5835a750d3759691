"""Paired LR/HR datasets for super-resolution.

LR images are either real (PathImgSR: separate files) or made by MATLAB-bicubic downsampling of the
HR image (``imresize``, antialiased, then rounded to 8 bits as a saved LR PNG would be).  Training
crops are taken in LR coordinates and scaled, so LR and HR stay aligned; albumentations cannot crop
two differently sized images together, so the paired crop/flip/rot90 is done here in three lines.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from datamodules.base import read_rgb
from datamodules.imresize import imresize


def bicubic_lr(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """HR (C, H, W) in [0, 1] with H, W divisible by ``scale`` -> 8-bit-rounded bicubic LR."""
    lr = imresize(hr, 1.0 / scale)
    return (lr.clamp(0, 1) * 255.0).round().div(255.0)


def mod_crop(img: torch.Tensor, scale: int) -> torch.Tensor:
    """Crop the bottom/right so H and W are multiples of ``scale`` (the SR convention)."""
    h, w = img.shape[-2:]
    return img[..., : h - h % scale, : w - w % scale]


class PairedSRDataset(Dataset):
    """(lr, hr) pairs from HR files (bicubic LR) or from matching LR/HR files (real pairs).

    ``patch``: HR training patch size (0 = whole image).  ``points``: optional per-image (N, 2)
    arrays of (x, y) HR pixel coordinates (e.g. nucleus centres) that follow the crop/flips and are
    returned padded with NaN to ``max_points`` rows under key ``points``.
    ``decoded_cache`` (real pairs only): a folder where each image is stored once decoded (.npy) and
    then memory-mapped, so a training crop reads only its rows instead of decoding a whole 1024x1024
    PNG (PathImgSR at paper size: ~21 -> hundreds of samples/s per worker; costs ~3x the PNGs on disk).
    ``memory_cache`` (bicubic pairs only): keep each pair in memory as 8-bit after its first use.
    """

    def __init__(self, hr_paths: Sequence[Path], scale: int, lr_paths: Sequence[Path] | None = None,
                 patch: int = 0, augment: bool = False, points: Sequence[torch.Tensor] | None = None,
                 max_points: int = 0, names: Sequence[str] | None = None,
                 expect_size: tuple[int, int] | None = None, decoded_cache: Path | None = None,
                 memory_cache: bool = False):
        if lr_paths is not None and len(lr_paths) != len(hr_paths):
            raise ValueError(f"{len(lr_paths)} LR files for {len(hr_paths)} HR files")
        if patch and patch % scale:
            raise ValueError(f"patch {patch} is not a multiple of scale {scale}")
        self.hr_paths, self.lr_paths = list(hr_paths), (list(lr_paths) if lr_paths else None)
        self.scale, self.patch, self.augment = scale, patch, augment
        self.points, self.max_points = points, max_points
        self.names = list(names) if names else [Path(p).stem for p in self.hr_paths]
        self.expect_size = expect_size  # (H, W) every HR image of the dataset has; None: any
        self.decoded_cache = Path(decoded_cache) if decoded_cache and lr_paths else None
        # bicubic pairs of a small dataset (CRCHistoPhenotypes: 100 images, 64 MB): each pair made once
        # and kept as 8-bit (both are 8-bit, so exact); otherwise every crop decodes and resizes a whole image
        self._memory = {} if memory_cache and lr_paths is None else None

    def __len__(self) -> int:
        return len(self.hr_paths)

    def _pair(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.scale
        if self.lr_paths is None:
            if self._memory is not None and i in self._memory:
                return self._memory[i]
            hr = mod_crop(read_rgb(self.hr_paths[i], self.expect_size), s)
            lr = bicubic_lr(hr, s)
            if self._memory is not None:
                self._memory[i] = tuple(x.mul(255.0).round_().to(torch.uint8) for x in (lr, hr))
                return self._memory[i]
            return lr, hr
        if self.decoded_cache is not None:
            lr, hr = self._decoded(self.lr_paths[i]), self._decoded(self.hr_paths[i], self.expect_size)
        else:
            lr, hr = read_rgb(self.lr_paths[i]), read_rgb(self.hr_paths[i], self.expect_size)
        if (hr.shape[-2], hr.shape[-1]) != (lr.shape[-2] * s, lr.shape[-1] * s):
            raise ValueError(f"pair {self.names[i]}: HR {tuple(hr.shape[-2:])} is not x{s} of LR "
                             f"{tuple(lr.shape[-2:])}")
        return lr, hr

    def __getitem__(self, i: int) -> dict:
        lr, hr = self._pair(i)
        pts = self.points[i].clone().double() if self.points is not None else None
        if self.patch:
            lr, hr, pts = self._random_crop(lr, hr, pts)
        if self.augment:
            lr, hr, pts = self._random_flip_rot(lr, hr, pts)
        if lr.dtype == torch.uint8:  # memory-mapped crops: only now are their pixels read
            lr, hr = lr.float().div_(255.0), hr.float().div_(255.0)
        out = {"lr": lr.contiguous(), "hr": hr.contiguous(), "index": i, "name": self.names[i]}
        if pts is not None:
            out["points"] = _pad_points(pts, self.max_points)
        return out

    def _decoded(self, path: Path, expect_size: tuple[int, int] | None = None) -> torch.Tensor:
        """(3, H, W) uint8 view of the image's decoded copy in ``decoded_cache`` (made on first use)."""
        st = Path(path).stat()
        key = hashlib.sha1(f"{Path(path).resolve()}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:20]
        npy = self.decoded_cache / f"{key}.npy"
        if not npy.is_file():
            arr = (read_rgb(path, expect_size) * 255.0).round().to(torch.uint8).permute(1, 2, 0).numpy()
            npy.parent.mkdir(parents=True, exist_ok=True)
            tmp = npy.with_name(f".{npy.name}.{os.getpid()}.npy")
            np.save(tmp, arr)
            os.replace(tmp, npy)
        arr = np.load(npy, mmap_mode="c")  # copy-on-write: writable for torch, never written back
        return torch.from_numpy(arr).permute(2, 0, 1)

    def _random_crop(self, lr, hr, pts):
        s, lp = self.scale, self.patch // self.scale
        h, w = lr.shape[-2:]
        if h < lp or w < lp:
            raise ValueError(f"LR image {h}x{w} is smaller than the LR patch {lp}")
        y = int(torch.randint(0, h - lp + 1, ()))
        x = int(torch.randint(0, w - lp + 1, ()))
        lr = lr[:, y:y + lp, x:x + lp]
        hr = hr[:, y * s:(y + lp) * s, x * s:(x + lp) * s]
        if pts is not None:
            pts = pts - pts.new_tensor([x * s, y * s])
            keep = (pts >= 0).all(1) & (pts[:, 0] < lp * s) & (pts[:, 1] < lp * s)
            pts = pts[keep]
        return lr, hr, pts

    @staticmethod
    def _random_flip_rot(lr, hr, pts):
        hflip, vflip, rot = (bool(torch.randint(0, 2, ())) for _ in range(3))
        H, W = hr.shape[-2:]
        if hflip:
            lr, hr = lr.flip(-1), hr.flip(-1)
            if pts is not None:
                pts = torch.stack([W - 1 - pts[:, 0], pts[:, 1]], 1)
        if vflip:
            lr, hr = lr.flip(-2), hr.flip(-2)
            if pts is not None:
                pts = torch.stack([pts[:, 0], H - 1 - pts[:, 1]], 1)
        if rot:  # transpose H and W
            lr, hr = lr.transpose(-1, -2), hr.transpose(-1, -2)
            if pts is not None:
                pts = pts.flip(1)
        return lr, hr, pts


def _pad_points(pts: torch.Tensor, n: int) -> torch.Tensor:
    out = torch.full((n, 2), float("nan"), dtype=torch.float32)
    k = min(n, pts.shape[0])
    if k:
        out[:k] = pts[torch.randperm(pts.shape[0])[:k]].float() if pts.shape[0] > n else pts[:k].float()
    return out
