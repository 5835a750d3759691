"""Shared pieces of every DataModule: data locations, clear errors, image reading, samplers.

Every dataset yields dicts of float32 tensors in [0, 1] (C, H, W) plus ``index`` (its position in
the split, used by the metrics to order and de-duplicate per-image scores) and ``name``.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Iterator, Sequence

import lightning as L
import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler


class MissingDataError(FileNotFoundError):
    """A dataset is not where it must be.  The message names the dataset, the path and the source."""

    def __init__(self, dataset: str, expected: Path, source: str, make_target: str | None = None):
        hint = f" or run `make data DATASET={make_target}`" if make_target else ""
        super().__init__(
            f"{dataset} not found: expected it at {expected} (set MIRBENCH_DATA to the folder that "
            f"holds it). Official source: {source}{hint}.")
        self.dataset, self.expected = dataset, expected


class CorruptImageError(ValueError):
    """An image file exists but cannot be decoded or has the wrong size."""


def data_root() -> Path:
    """MIRBENCH_DATA (default ./data): the folder holding every dataset in its official layout."""
    return Path(os.environ.get("MIRBENCH_DATA", "data")).expanduser()


def weights_root() -> Path:
    """MIRBENCH_WEIGHTS (default ./weights): user-provided pretrained files (VGG, Ma/NRQM model)."""
    return Path(os.environ.get("MIRBENCH_WEIGHTS", "weights")).expanduser()


def read_rgb(path: Path, expect_size: tuple[int, int] | None = None) -> torch.Tensor:
    """Read an 8-bit RGB image as a (3, H, W) float32 tensor in [0, 1]."""
    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise CorruptImageError(f"cannot decode image {path}: {exc}") from exc
    if expect_size is not None and arr.shape[:2] != tuple(expect_size):
        raise CorruptImageError(f"{path} is {arr.shape[1]}x{arr.shape[0]}, expected "
                                f"{expect_size[1]}x{expect_size[0]}")
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0)


def split_indices(n: int, fractions: Sequence[float], seed: int) -> list[list[int]]:
    """Deterministic seeded split of range(n) by fractions (e.g. 0.8/0.1/0.1), last part gets the rest."""
    if abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"split fractions must sum to 1, got {fractions}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    out, start = [], 0
    for i, f in enumerate(fractions):
        stop = n if i == len(fractions) - 1 else start + int(round(f * n))
        out.append(sorted(perm[start:stop]))
        start = stop
    return out


class EvalSampler(Sampler[int]):
    """Distributed evaluation sampler that never pads or repeats: rank r gets r, r+W, r+2W, ...

    torch's DistributedSampler pads the last batch with duplicates, which biases a per-image mean.
    """

    def __init__(self, length: int, num_replicas: int = 1, rank: int = 0):
        self.length, self.num_replicas, self.rank = length, num_replicas, rank

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.length, self.num_replicas))

    def __len__(self) -> int:
        return max(0, math.ceil((self.length - self.rank) / self.num_replicas))


class RestorationDataModule(L.LightningDataModule):
    """Base DataModule: subclasses build ``self.train_set``, ``self.val_set``, ``self.test_set`` in setup().

    The Trainer runs with ``use_distributed_sampler=False``; the samplers are chosen here: a shuffling
    DistributedSampler for training and an :class:`EvalSampler` (no padding) for val/test.
    """

    def __init__(self, batch_size: int = 16, eval_batch_size: int = 1, num_workers: int = 0, seed: int = 0):
        super().__init__()
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.num_workers, self.seed = num_workers, seed
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None

    def _world(self) -> tuple[int, int]:
        trainer = self.trainer
        if trainer is None:
            return 1, 0
        return trainer.world_size, trainer.global_rank

    def _loader(self, ds: Dataset, sampler: Sampler, batch_size: int, drop_last: bool = False) -> DataLoader:
        return DataLoader(ds, batch_size=batch_size, sampler=sampler, num_workers=self.num_workers,
                          drop_last=drop_last, persistent_workers=self.num_workers > 0,
                          generator=torch.Generator().manual_seed(self.seed))

    def train_dataloader(self) -> DataLoader:
        world, rank = self._world()
        sampler = DistributedSampler(self.train_set, num_replicas=world, rank=rank, shuffle=True,
                                     seed=self.seed, drop_last=False)
        bs = min(self.batch_size, max(1, len(self.train_set) // world))
        return self._loader(self.train_set, sampler, bs, drop_last=True)

    def _eval_loader(self, ds: Dataset) -> DataLoader:
        world, rank = self._world()
        return self._loader(ds, EvalSampler(len(ds), world, rank), self.eval_batch_size)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader(self.val_set)

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader(self.test_set)
