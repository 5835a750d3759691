"""cremi_triplet (SSAN, "Dataset and preprocessing"): EM slice triplets for inter-slice interpolation.
The DataModule over a built folder, the cached smoke build from the shared sample, and the CLI:

    python -m datamodules.cremi_triplet build --source sample_C_padded_20160501.hdf --out DIR/C
        [--labels LABELS.tif] [--mode filter|paper] [--paper-count 1333] [--split zblock|random]
        [--crop 512] [--stride 512] [--margin 64] [--grid origin|valid] [--hist-ref volume|middle|none] ...

``--source`` is an official CREMI hdf5 file, a tif stack or a folder of z-ordered 2-D slices (a user's
own serial sections).  The recipe is :mod:`datamodules.cremi_triplet_builder` (numpy only).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from datamodules.base import CorruptImageError, MissingDataError, RestorationDataModule, data_root
from datamodules.cremi_triplet_builder import (HIST_REFS, PAPER, PAPER_COUNTS, SMOKE, BuildSettings, Thresholds,
                                               atomic_build, build, log_to_stderr, read_json)

FOLDER = "cremi_triplet"
SOURCE = ("built from the CREMI padded training volumes (cremi.org; `python -m datamodules.download "
          "cremi_padded`) by `python -m datamodules.cremi_triplet build --source "
          "$MIRBENCH_DATA/cremi/sample_C_padded_20160501.hdf --out $MIRBENCH_DATA/cremi_triplet/C`")
SAMPLE = ("cremi/cremi_image.tif", "cremi/cremi_labels.tif")  # the shared 25-slice crop of CREMI C
_SMOKE_VERSION = 2       # bump when the builder changes what it writes, to refresh cached smoke builds


def cache_root() -> Path:
    """MIRBENCH_CACHE (default ./runs/cache): derived data the benchmark can rebuild."""
    return Path(os.environ.get("MIRBENCH_CACHE", "runs/cache")).expanduser()


def load_manifest(root: Path) -> list[dict]:
    root = Path(root)
    done = read_json(root / "build.json")
    if not (done and done.get("finished")) or not (root / "manifest.json").is_file():
        raise MissingDataError("cremi_triplet", root, SOURCE)
    return json.loads((root / "manifest.json").read_text())


def _read(path: Path, size: int | None = None) -> np.ndarray:
    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("L"))
    except OSError as exc:
        raise CorruptImageError(f"cannot decode {path}: {exc}") from exc
    if size is not None and arr.shape != (size, size):
        raise CorruptImageError(f"{path} is {arr.shape[1]}x{arr.shape[0]}, expected {size}x{size}")
    return arr


class TripletDataset(Dataset):
    """Items {prev, target, next: (1, H, W) float32 in [0, 1], index, name}; training items are random
    ``patch`` crops with random h/v flips and temporal swap (SSAN "Parameters in SSAN"), the same for
    the three frames.  Triplets are decoded once and kept as uint8 (3 x crop^2 bytes each)."""

    def __init__(self, root: Path, rows: list[dict], crop: int, patch: int = 0, augment: bool = False):
        self.root, self.rows, self.crop = Path(root), rows, crop
        self.patch, self.augment = patch, augment
        self._cache: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.rows)

    def frames(self, i: int) -> np.ndarray:
        if i not in self._cache:
            r = self.rows[i]
            d = self.root / r["split"] / r["name"]
            self._cache[i] = np.stack([_read(d / f"im{k}.png", self.crop) for k in (1, 2, 3)])
        return self._cache[i]

    def __getitem__(self, i: int) -> dict:
        t = torch.from_numpy(self.frames(i).astype(np.float32) / 255.0).unsqueeze(1)  # (3, 1, H, W)
        if self.patch and self.patch < self.crop:
            y, x = (int(v) for v in torch.randint(0, self.crop - self.patch + 1, (2,)))
            t = t[..., y:y + self.patch, x:x + self.patch]
        if self.augment:
            if torch.rand(()) < 0.5:
                t = t.flip(-1)
            if torch.rand(()) < 0.5:
                t = t.flip(-2)
            if torch.rand(()) < 0.5:
                t = t.flip(0)  # temporal swap: previous <-> next
        return {"prev": t[0].contiguous(), "target": t[1].contiguous(), "next": t[2].contiguous(), "index": i,
                "name": self.rows[i]["name"]}


class MembraneDataset(Dataset):
    """(middle slice, membrane mask) of the training crops that carry one, for the Table 5 oracle."""

    def __init__(self, root: Path, rows: list[dict], crop: int):
        self.root, self.rows, self.crop = Path(root), [r for r in rows if r.get("membrane")], crop

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        d = self.root / self.rows[i]["split"] / self.rows[i]["name"]
        return _read(d / "im2.png", self.crop), _read(d / "membrane.png", self.crop)


class CremiTripletDataModule(RestorationDataModule):
    """A built cremi_triplet folder: train / val / test triplets of its manifest.

    ``test_limit``: evaluate on that many test triplets, evenly spaced over the split (so a short
    smoke evaluation still spans every test slice).  ``membrane_source`` (the build folder and its
    identity) is read by the task's membrane oracle; None where the build has no membrane masks.
    """

    def __init__(self, root: Path, patch: int = 0, batch_size: int = 3, augment: bool = True,
                 test_limit: int | None = None, num_workers: int = 0, seed: int = 0):
        super().__init__(batch_size=batch_size, num_workers=num_workers, seed=seed)
        self.root, self.patch, self.augment, self.test_limit = Path(root), patch, augment, test_limit
        self.info = read_json(self.root / "build.json") or {}
        self.crop = (self.info.get("settings") or {}).get("crop")
        self.rows = load_manifest(self.root)
        self.membrane_source = None
        if any(r.get("membrane") and r["split"] == "train" for r in self.rows):
            self.membrane_source = {"root": str(self.root), "id": hashlib.sha1(
                (self.root / "manifest.json").read_bytes()).hexdigest()[:12], "crop": self.crop}

    def split_rows(self, split: str) -> list[dict]:
        return [r for r in self.rows if r["split"] == split]

    def membrane_sets(self) -> tuple[MembraneDataset, MembraneDataset]:
        """(training crops, all other labelled crops) with membrane masks."""
        return (MembraneDataset(self.root, self.split_rows("train"), self.crop),
                MembraneDataset(self.root, [r for r in self.rows if r["split"] != "train"], self.crop))

    def setup(self, stage: str | None = None) -> None:
        train, val, test = (self.split_rows(s) for s in ("train", "val", "test"))
        if not train or not test:
            raise MissingDataError("cremi_triplet train and test triplets", self.root / "manifest.json", SOURCE)
        if self.test_limit and len(test) > self.test_limit:
            pick = np.linspace(0, len(test) - 1, self.test_limit).round().astype(int)
            test = [test[i] for i in pick]
        self.train_set = TripletDataset(self.root, train, self.crop, self.patch, self.augment)
        self.val_set = TripletDataset(self.root, val or train[:2], self.crop)
        self.test_set = TripletDataset(self.root, test, self.crop)

    @classmethod
    def for_profile(cls, profile: str, sample: str = "C", **kwargs) -> "CremiTripletDataModule":
        """paper: ``$MIRBENCH_DATA/cremi_triplet/<sample>``; smoke: the cached build of the shared
        CREMI C crop (sample C) or the existing build of A / B.  ``kwargs`` go to the constructor."""
        root = data_root() / FOLDER / sample
        if profile == "smoke" and sample == "C":
            root = smoke_dataset()
        elif not (read_json(root / "build.json") or {}).get("finished"):
            raise MissingDataError(f"cremi_triplet {sample}", root, SOURCE.replace("_C_", f"_{sample}_")
                                   .replace("/C`", f"/{sample}`"))
        return cls(root, **kwargs)


def smoke_dataset(settings: BuildSettings = SMOKE, cache: Path | None = None, log=log_to_stderr) -> Path:
    """The shared CREMI C sample built with the smoke settings, once, cached under MIRBENCH_CACHE."""
    image, labels = (data_root() / p for p in SAMPLE)
    if not image.is_file():
        raise MissingDataError("CREMI sample (cremi_image.tif)", image, "cremi.org (a crop of sample C)")
    ident = json.dumps([_SMOKE_VERSION, settings.key(), image.stat().st_size,
                        labels.stat().st_size if labels.is_file() else None])
    final = (cache or cache_root()) / f"cremi-triplet-smoke-{hashlib.sha1(ident.encode()).hexdigest()[:12]}"
    if not (read_json(final / "build.json") or {}).get("finished"):
        atomic_build(image, final, settings, labels if labels.is_file() else None, log)
    return final


# ----------------------------------------------------------------------------------------------
# CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m datamodules.cremi_triplet", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build triplets from an EM stack (CREMI hdf5, tif stack or slice folder)")
    b.add_argument("--source", type=Path, required=True)
    b.add_argument("--out", type=Path, required=True)
    b.add_argument("--labels", type=Path, help="neuron-id tif stack of the same shape (hdf5: read from the file)")
    b.add_argument("--smoke", action="store_true", help="the smoke settings (crop 128, margin 16, grid valid)")
    base = PAPER
    for name in ("crop", "stride", "margin", "seed"):
        b.add_argument(f"--{name}", type=int)
    b.add_argument("--grid", choices=["origin", "valid"])
    b.add_argument("--mode", choices=["filter", "paper"])
    b.add_argument("--paper-count", type=int, help=f"mode=paper: triplets to keep (paper: {PAPER_COUNTS})")
    b.add_argument("--sample", choices=sorted(PAPER_COUNTS), help="mode=paper: take --paper-count from the paper")
    b.add_argument("--split", choices=["zblock", "random"])
    b.add_argument("--hist-ref", choices=list(HIST_REFS),
                   help="neighbours' histogram reference (default volume; middle = the paper's, leaks the GT)")
    for name in Thresholds.__dataclass_fields__:
        b.add_argument(f"--{name.replace('_', '-')}", type=float if name not in ("flat_block", "flat_range") else int)
    args = parser.parse_args(argv)
    settings = SMOKE if args.smoke else base
    kw = {k: getattr(args, k) for k in ("crop", "stride", "margin", "seed", "grid", "mode", "split", "hist_ref",
                                        "paper_count") if getattr(args, k) is not None}
    if args.sample and "paper_count" not in kw:
        kw["paper_count"] = PAPER_COUNTS[args.sample]
    th = {k: getattr(args, k) for k in Thresholds.__dataclass_fields__ if getattr(args, k) is not None}
    try:
        settings = replace(settings, **kw, thresholds=replace(settings.thresholds, **th))
        report = build(args.source, args.out, settings, args.labels)
    except (FileNotFoundError, ValueError) as exc:
        log_to_stderr(f"error: {exc}")
        return 1
    return 2 if report.get("shortfall") else 0


if __name__ == "__main__":
    raise SystemExit(main())
