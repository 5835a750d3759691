"""CRCHistoPhenotypes (Sirinukunwattana et al., IEEE TMI 2016): 100 H&E 500x500 colorectal images
with nucleus centres; the CRCH dataset of the rVTT paper (Tom et al. 2019, Sec. 3.0.1).

Official layout under ``$MIRBENCH_DATA/crchisto/CRCHistoPhenotypes_2016_04_28``:
``Detection/imgN/imgN.bmp``, ``Detection/imgN/imgN_detection.mat`` (key ``detection``: (N, 2) x, y)
and ``Classification/imgN/imgN_{epithelial,fibroblast,inflammatory,others}.mat``.
Centres are MATLAB 1-based; they are returned 0-based.  The split is the paper's 80 train / 20
test images; the paper does not say which, so it is a seeded permutation of the image numbers.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io
import torch

from datamodules.base import MissingDataError, RestorationDataModule, data_root, split_indices
from datamodules.sr_pairs import PairedSRDataset

FOLDER = "crchisto/CRCHistoPhenotypes_2016_04_28"
SOURCE = "Warwick TIA lab, CRCHistoPhenotypes_2016_04_28.zip (warwick.ac.uk/fac/cross_fac/tia/data/crchistolabelednucleihe)"
CLASSES = ("epithelial", "fibroblast", "inflammatory", "others")
N_IMAGES = 100


@dataclass(frozen=True)
class CRCHRecord:
    number: int
    image: Path
    nuclei: torch.Tensor               # (N, 2) 0-based (x, y) of every detected nucleus
    classes: dict[str, torch.Tensor]   # class -> (M, 2) 0-based (x, y)


def _centres(mat: Path, key: str = "detection") -> torch.Tensor:
    arr = np.asarray(scipy.io.loadmat(mat)[key], dtype=np.float64).reshape(-1, 2)
    return torch.from_numpy(arr - 1.0)


def load_records(root: Path | None = None) -> list[CRCHRecord]:
    base = (root or data_root()) / FOLDER
    det = base / "Detection"
    if not det.is_dir():
        raise MissingDataError("CRCHistoPhenotypes", base, SOURCE, make_target="crchisto")
    records = []
    for n in range(1, N_IMAGES + 1):
        img = det / f"img{n}" / f"img{n}.bmp"
        if not img.is_file():
            raise MissingDataError(f"CRCHistoPhenotypes image img{n}", img, SOURCE, make_target="crchisto")
        cls_dir = base / "Classification" / f"img{n}"
        classes = {c: _centres(cls_dir / f"img{n}_{c}.mat") for c in CLASSES
                   if (cls_dir / f"img{n}_{c}.mat").is_file()}
        records.append(CRCHRecord(n, img, _centres(det / f"img{n}" / f"img{n}_detection.mat"), classes))
    return records


def split_records(records: list[CRCHRecord], seed: int = 0) -> tuple[list[CRCHRecord], list[CRCHRecord]]:
    train, test = split_indices(len(records), (0.8, 0.2), seed)
    return [records[i] for i in train], [records[i] for i in test]


class CRCHistoSRDataModule(RestorationDataModule):
    """Bicubic x``scale`` SR pairs of CRCHistoPhenotypes (rVTT's '16x' area factor = x4 per side).

    Each sample carries ``points``: nucleus centres in HR pixels (all nuclei, or epithelial only),
    padded with NaN to ``max_points`` rows, for rVTT's region-of-interest discriminator T2.
    """

    def __init__(self, root: Path | None = None, scale: int = 4, patch: int = 128, batch_size: int = 16,
                 split_seed: int = 0, test_limit: int | None = None, roi: str = "all", max_points: int = 64,
                 num_workers: int = 0, seed: int = 0):
        super().__init__(batch_size=batch_size, num_workers=num_workers, seed=seed)
        if roi not in ("all", "epithelial"):
            raise ValueError(f"roi must be 'all' or 'epithelial', got {roi!r}")
        self.root, self.scale, self.patch, self.split_seed = root, scale, patch, split_seed
        self.test_limit, self.roi, self.max_points = test_limit, roi, max_points

    def _dataset(self, recs: list[CRCHRecord], train: bool) -> PairedSRDataset:
        pts = [r.nuclei if self.roi == "all" else r.classes.get("epithelial", torch.empty(0, 2)) for r in recs]
        return PairedSRDataset([r.image for r in recs], self.scale, patch=self.patch if train else 0,
                               augment=train, points=pts, max_points=self.max_points,
                               names=[f"img{r.number}" for r in recs], expect_size=(500, 500), memory_cache=True)

    def setup(self, stage: str | None = None) -> None:
        train, test = split_records(load_records(self.root), self.split_seed)
        if self.test_limit:
            test = test[: self.test_limit]
        self.train_set = self._dataset(train, True)
        self.val_set = self._dataset(train[:4], False)  # monitoring only; no model selection
        self.test_set = self._dataset(test, False)
