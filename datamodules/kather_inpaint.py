"""Kather NORM + TUM patches with a square hole, for MSSA GAN (Liang et al. 2022, Sec. 4.1) and its baselines.

Split: the paper's 23,080 train / 1,974 test patches are exactly the official NCT-CRC-HE-100K and
CRC-VAL-HE-7K releases restricted to NORM + TUM (8,763 + 14,317 and 741 + 1,233), so the releases are
the split; the counts are checked when the full data is present.  A seeded 2 % of the training set is
held out for validation (the paper states none).  Patches are 224 px at 0.5 um/px; the paper's
"128 x 128 pixels at ~1 microns per pixel" is a resize (PIL bicubic, antialiased: ``RESAMPLER``).

Masks: a ``hole`` x ``hole`` square (64 in 128), top-left a multiple of 4 so that the box is exact at
1/2 and 1/4 scale.  Training draws a new box each time an image is drawn; test boxes come from a
generator seeded with (seed, index): the same box for every method, whatever the batch size or
number of DDP ranks.  ``mask_position='center'`` puts the hole in the middle.

Corruption (eq. 16, x_M = M (.) x with "M is set as 0.1", Sec. 4.1):
- ``scale``: hole pixels multiplied by 0.1 (the paper's literal protocol, compared with its numbers);
- ``fill``: hole pixels replaced by the constant 0.1 (true blind inpainting; no reported numbers).
x_M is rounded to 8 bits (as a saved PNG); otherwise ``scale`` would be exactly invertible.

Smoke split (only 8 NORM/TUM patches are in the shared sample, all from CRC-VAL-HE-7K): the 8 NORM +
TUM patches are the test set and the 24 patches of the other six classes (ADI, DEB, LYM, MUC, MUS,
STR) train, so training and test images never overlap; rows say ``split: smoke``.

Items: {"image": x, "corrupted": x_M, "mask": M (1, H, W), 1 = hole, "box": (top, left, size),
"index", "name"}, images float32 (3, H, W) in [0, 1].
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from datamodules.base import CorruptImageError, RestorationDataModule, read_rgb, split_indices
from datamodules.kather import PATCH_SIZE, list_patches

CLASSES = ("NORM", "TUM")
EXPECTED = {"NCT-CRC-HE-100K": 8_763 + 14_317, "CRC-VAL-HE-7K": 741 + 1_233}  # = 23,080 / 1,974 (Sec. 4.1)
SMOKE_TRAIN_CLASSES = ("ADI", "DEB", "LYM", "MUC", "MUS", "STR")
RESAMPLER = "PIL bicubic (antialiased) 224 -> 128"
CORRUPTIONS = ("scale", "fill")
HOLE_VALUE = 0.1  # "M is set as 0.1" (Sec. 4.1)
ALIGN = 4


def resize(img: torch.Tensor, size: int) -> torch.Tensor:
    """(3, H, W) [0, 1] -> (3, size, size) with PIL's antialiased bicubic (8-bit in and out)."""
    if img.shape[-1] == size and img.shape[-2] == size:
        return img
    arr = (img.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    out = np.asarray(Image.fromarray(arr).resize((size, size), Image.BICUBIC))
    return torch.from_numpy(out.copy()).permute(2, 0, 1).float().div_(255.0)


def random_box(size: int, hole: int, gen: torch.Generator, align: int = ALIGN) -> tuple[int, int]:
    """Top-left (y, x) of a hole x hole box inside size x size, uniform over positions aligned to ``align``."""
    if hole > size:
        raise ValueError(f"hole {hole} larger than the image {size}")
    n = (size - hole) // align + 1
    y, x = torch.randint(0, n, (2,), generator=gen).tolist()
    return y * align, x * align


def center_box(size: int, hole: int) -> tuple[int, int]:
    return (size - hole) // 2, (size - hole) // 2


def eval_box(seed: int, index: int, size: int, hole: int, position: str = "random") -> tuple[int, int]:
    """The box of test image ``index``: a function of (seed, index, size, hole) only."""
    if position == "center":
        return center_box(size, hole)
    gen = torch.Generator().manual_seed(seed * 1_000_003 + index * 7_919 + hole)
    return random_box(size, hole, gen)


def box_mask(size: int, top: int, left: int, hole: int) -> torch.Tensor:
    m = torch.zeros(1, size, size)
    m[:, top:top + hole, left:left + hole] = 1.0
    return m


def corrupt(x: torch.Tensor, mask: torch.Tensor, corruption: str = "scale", quantize: bool = True) -> torch.Tensor:
    """x_M: ``scale`` = x (1 - m) + 0.1 x m (eq. 16); ``fill`` = x (1 - m) + 0.1 m.  8-bit rounded."""
    if corruption == "scale":
        xm = x * (1 - mask) + HOLE_VALUE * x * mask
    elif corruption == "fill":
        xm = x * (1 - mask) + HOLE_VALUE * mask
    else:
        raise ValueError(f"unknown corruption {corruption!r}: expected one of {CORRUPTIONS}")
    return (xm * 255).round() / 255 if quantize else xm


class InpaintDataset(Dataset):
    """Resized patches, optionally randomly cropped (smoke), with a box hole and its corruption."""

    def __init__(self, files: list[Path], size: int = 128, hole: int = 64, corruption: str = "scale",
                 position: str = "random", train: bool = False, crop: int = 0, seed: int = 0,
                 quantize: bool = True):
        if corruption not in CORRUPTIONS:
            raise ValueError(f"unknown corruption {corruption!r}: expected one of {CORRUPTIONS}")
        if position not in ("random", "center"):
            raise ValueError(f"unknown mask position {position!r}: expected 'random' or 'center'")
        self.files, self.size, self.hole, self.corruption = files, size, hole, corruption
        self.position, self.train, self.crop, self.seed, self.quantize = position, train, crop, seed, quantize
        self._cache: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.files)

    def _image(self, i: int) -> torch.Tensor:
        if i not in self._cache:  # decoding + resizing dominates; the smoke sets are tiny, paper sets stream
            img = resize(read_rgb(self.files[i], expect_size=PATCH_SIZE), self.size)
            if len(self.files) > 512:
                return img
            self._cache[i] = img
        return self._cache[i]

    def __getitem__(self, i: int) -> dict:
        x = self._image(i)
        if self.train:
            gen = torch.Generator().manual_seed(int(torch.randint(0, 2 ** 62, (1,)).item()))
            if self.crop:
                y0, x0 = torch.randint(0, self.size - self.crop + 1, (2,), generator=gen).tolist()
                x = x[:, y0:y0 + self.crop, x0:x0 + self.crop]
            size = x.shape[-1]
            top, left = random_box(size, self.hole, gen) if self.position == "random" else center_box(size, self.hole)
        else:
            size = x.shape[-1]
            top, left = eval_box(self.seed, i, size, self.hole, self.position)
        mask = box_mask(size, top, left, self.hole)
        return {"image": x, "corrupted": corrupt(x, mask, self.corruption, self.quantize), "mask": mask,
                "box": torch.tensor([top, left, self.hole]), "index": i, "name": self.files[i].stem}


def check_counts(files: list[Path], release: str) -> None:
    """The full releases must hold the paper's counts (a truncated download would silently change it)."""
    want = EXPECTED[release]
    if len(files) != want:
        raise CorruptImageError(f"Kather {release} NORM+TUM holds {len(files)} patches, expected {want} "
                                f"(the paper's {'train' if release.startswith('NCT') else 'test'} set); "
                                "is the download complete?")


class KatherInpaintDataModule(RestorationDataModule):
    """Paper split (NCT-CRC-HE-100K NORM+TUM train, CRC-VAL-HE-7K NORM+TUM test) or the smoke split.

    ``split='paper'`` needs both full releases (counts checked); ``split='smoke'`` uses the shared
    CRC-VAL-HE-7K sample (module docstring).  ``train_crop`` > 0 trains on random crops of the
    resized patch with hole ``train_hole`` (the smoke profile: 64 crops, 32 holes); val/test always
    use the whole ``size`` patch with hole ``hole``.
    """

    def __init__(self, split: str = "paper", corruption: str = "scale", mask_position: str = "random",
                 size: int = 128, hole: int = 64, train_crop: int = 0, train_hole: int | None = None,
                 batch_size: int = 64, val_fraction: float = 0.02, test_limit: int | None = None,
                 quantize: bool = True, root: Path | None = None, num_workers: int = 0, seed: int = 0):
        super().__init__(batch_size=batch_size, num_workers=num_workers, seed=seed)
        if split not in ("paper", "smoke"):
            raise ValueError(f"unknown split {split!r}: expected 'paper' or 'smoke'")
        if corruption not in CORRUPTIONS:
            raise ValueError(f"unknown corruption {corruption!r}: expected one of {CORRUPTIONS}")
        self.split, self.corruption, self.mask_position = split, corruption, mask_position
        self.size, self.hole, self.train_crop = size, hole, train_crop
        self.train_hole = train_hole or (hole * train_crop // size if train_crop else hole)
        self.val_fraction, self.test_limit, self.quantize, self.root = val_fraction, test_limit, quantize, root

    def files(self) -> tuple[list[Path], list[Path]]:
        if self.split == "paper":
            train = list_patches("NCT-CRC-HE-100K", self.root, CLASSES)
            test = list_patches("CRC-VAL-HE-7K", self.root, CLASSES)
            check_counts(train, "NCT-CRC-HE-100K")
            check_counts(test, "CRC-VAL-HE-7K")
            return train, test
        return (list_patches("CRC-VAL-HE-7K", self.root, SMOKE_TRAIN_CLASSES),
                list_patches("CRC-VAL-HE-7K", self.root, CLASSES))

    def setup(self, stage: str | None = None) -> None:
        train, test = self.files()
        tr, va = split_indices(len(train), (1 - self.val_fraction, self.val_fraction), self.seed)
        if not va:  # the smoke split is too small for 2 %: one image
            tr, va = tr[1:], tr[:1]
        test = test[: self.test_limit] if self.test_limit else test
        kw = dict(size=self.size, corruption=self.corruption, position=self.mask_position, seed=self.seed,
                  quantize=self.quantize)
        self.train_set = InpaintDataset([train[i] for i in tr], hole=self.train_hole, train=True,
                                        crop=self.train_crop, **kw)
        self.val_set = InpaintDataset([train[i] for i in va], hole=self.hole, **kw)
        self.test_set = InpaintDataset(test, hole=self.hole, **kw)

    def describe(self) -> str:
        return (f"split: {self.split}; corruption: {self.corruption} (x_M {'8-bit' if self.quantize else 'float'}); "
                f"mask {self.hole}x{self.hole} in {self.size}, {self.mask_position}; resize {RESAMPLER}")
