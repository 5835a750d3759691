"""Kather et al. 2019 colorectal H&E patches (NCT-CRC-HE-100K / CRC-VAL-HE-7K), 224x224 at 0.5 um/px.

Official layout under ``$MIRBENCH_DATA/kather/<release>/<CLASS>/*.tif`` (the shared sample holds
PNG copies, pixel-identical).  SNADN (Liang et al. 2023, Sec. 4.1) uses 20,000 non-overlapping
patches split 8:1:1 with LR made by bicubic x2 / x4 downsampling; the paper does not say which
patches, so they are a seeded draw over all classes.
"""
from __future__ import annotations

from pathlib import Path

import torch

from datamodules.base import MissingDataError, RestorationDataModule, data_root, split_indices
from datamodules.sr_pairs import PairedSRDataset

RELEASES = ("NCT-CRC-HE-100K", "CRC-VAL-HE-7K")
PATCH_SIZE = (224, 224)
SOURCE = "Zenodo record 1214456 (NCT-CRC-HE-100K.zip, CRC-VAL-HE-7K.zip)"
_EXTS = (".tif", ".tiff", ".png", ".jpg")


def list_patches(release: str, root: Path | None = None, classes: tuple[str, ...] | None = None) -> list[Path]:
    base = (root or data_root()) / "kather" / release
    if not base.is_dir():
        raise MissingDataError(f"Kather {release}", base, SOURCE, make_target="kather")
    files = sorted(p for p in base.glob("*/*") if p.suffix.lower() in _EXTS
                   and (classes is None or p.parent.name in classes))
    if not files:
        raise MissingDataError(f"Kather {release} patches", base / "<CLASS>/*.tif", SOURCE, make_target="kather")
    return files


def draw(files: list[Path], n: int | None, seed: int) -> list[Path]:
    if n is None or n >= len(files):
        return files
    pick = torch.randperm(len(files), generator=torch.Generator().manual_seed(seed))[:n]
    return [files[i] for i in sorted(pick.tolist())]


class KatherSRDataModule(RestorationDataModule):
    """Bicubic x2 / x4 pairs of 224x224 Kather patches, split 8:1:1 (SNADN's protocol)."""

    def __init__(self, release: str = "NCT-CRC-HE-100K", scale: int = 4, n_patches: int | None = 20_000,
                 patch: int = 0, batch_size: int = 4, split=(0.8, 0.1, 0.1), split_seed: int = 0,
                 test_limit: int | None = None, root: Path | None = None, num_workers: int = 0, seed: int = 0):
        super().__init__(batch_size=batch_size, num_workers=num_workers, seed=seed)
        self.release, self.scale, self.n_patches, self.patch = release, scale, n_patches, patch
        self.split, self.split_seed, self.test_limit, self.root = tuple(split), split_seed, test_limit, root

    def setup(self, stage: str | None = None) -> None:
        files = draw(list_patches(self.release, self.root), self.n_patches, self.split_seed)
        tr, va, te = split_indices(len(files), self.split, self.split_seed)
        te = te[: self.test_limit] if self.test_limit else te
        make = lambda idx, train: PairedSRDataset([files[i] for i in idx], self.scale,  # noqa: E731
                                                  patch=self.patch if train else 0, augment=train,
                                                  expect_size=PATCH_SIZE)
        self.train_set, self.val_set, self.test_set = make(tr, True), make(va, False), make(te, False)
