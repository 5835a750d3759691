"""PathImgSR (MASRGAN paper, Sec. 4.1): real x4 LR-HR pairs from the 10x and 40x levels of Camelyon16
whole-slide images.  The DataModule over a built folder, the tiny smoke build, and the CLI:

    python -m datamodules.pathimgsr build --slides DIR --out DIR [--annotations DIR] [--workers N]
        [--n-train TUMOUR NORMAL] [--n-test TUMOUR NORMAL] [--lr-size 256] [--window 1050] ...
    python -m datamodules.pathimgsr pyramid SRC DST [--mpp MPP]

The recipe itself (candidates, tissue and tumour tests, level choice, NCC registration, split,
balance, resume, workers) is :mod:`datamodules.pathimgsr_builder`, kept free of torch and Lightning
so its worker processes start fast.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Callable

from datamodules.base import MissingDataError, RestorationDataModule, data_root
from datamodules.pathimgsr_builder import (PAPER, BuildSettings, build, find_slides, log_to_stderr, read_json,
                                           slide_name)
from datamodules.sr_pairs import PairedSRDataset
from datamodules.wsi_pyramid import pyramid_from_slide

FOLDER = "pathimgsr"
BUILD_COMMAND = ("python -m datamodules.camelyon16 download --out C16 --slides all && "
                 "python -m datamodules.pathimgsr build --slides C16/images --annotations C16/annotations "
                 "--out $MIRBENCH_DATA/pathimgsr --workers 8")
SOURCE = ("built from Camelyon16 (camelyon16.grand-challenge.org; AWS open data s3://camelyon-dataset) by "
          f"`{BUILD_COMMAND}`")
# smoke: "PathImgSR-style pairs, synthetic pyramid": the recipe run on two OpenSlide demo slides (one
# 40x Hamamatsu, one 20x Aperio) that this module writes as box-filter pyramids, so the LR level is a
# computed downsample (as Camelyon16's 10x level is).  LR 32 -> HR 128 in a 132 window (about the
# paper's 2.5 % registration margin); each slide's own base level is the HR level and the LR level is
# the one 4x coarser by downsample ratio; every slide gives training pairs from its left 70 % and test
# pairs from its right 30 % (split_by 'region': a split by slide would train on one scanner's colours
# and test on the other's); 48 training and 10 test pairs.
SMOKE = BuildSettings(lr_size=32, window=132, hr_magnification=None, n_train=(24, 24), n_test=(5, 5),
                      split_by="region", test_fraction=0.3)
_SMOKE_VERSION = 2          # bump when the builder changes what it writes, to refresh cached smoke builds


def load_manifest(root: Path) -> list[dict]:
    """Rows of a finished build's ``manifest.csv`` (paths made absolute)."""
    root = Path(root)
    done = read_json(root / "build.json")
    if not (done and done.get("finished")) or not (root / "manifest.csv").is_file():
        raise MissingDataError("PathImgSR", root, SOURCE)
    with open(root / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r["lr"], r["hr"] = root / r["lr"], root / r["hr"]
    return rows


# ----------------------------------------------------------------------------------------------
# DataModule


class PathImgSRDataModule(RestorationDataModule):
    """Real x4 pairs of a built PathImgSR folder (``manifest.csv`` + ``{train,test}/{lr,hr}``).

    Training items are paired random crops of ``patch`` HR pixels (taken in LR coordinates and scaled,
    so LR and HR stay aligned; 0 = whole pairs) with optional paired flips / 90-degree rotations
    (``augment``; MASRGAN Sec. 4.2 uses none).  Validation (monitoring only) is the first ``n_val``
    training pairs, whole; test pairs are whole, the first ``test_limit`` in manifest order.
    """

    def __init__(self, root: Path, scale: int = 4, patch: int = 0, batch_size: int = 16, augment: bool = False,
                 test_limit: int | None = None, n_val: int = 4, num_workers: int = 0, seed: int = 0,
                 decoded_cache: Path | None = None):
        super().__init__(batch_size=batch_size, num_workers=num_workers, seed=seed)
        self.root, self.scale, self.patch, self.augment = Path(root), scale, patch, augment
        self.decoded_cache = decoded_cache  # see PairedSRDataset: memory-mapped training crops
        self.test_limit, self.n_val = test_limit, n_val

    def _dataset(self, rows: list[dict], train: bool) -> PairedSRDataset:
        return PairedSRDataset([r["hr"] for r in rows], self.scale, lr_paths=[r["lr"] for r in rows],
                               patch=self.patch if train else 0, augment=train and self.augment,
                               names=[r["name"] for r in rows], decoded_cache=self.decoded_cache if train else None)

    def setup(self, stage: str | None = None) -> None:
        rows = load_manifest(self.root)
        train = [r for r in rows if r["split"] == "train"]
        test = [r for r in rows if r["split"] == "test"]
        if not train or not test:
            raise MissingDataError("PathImgSR train and test pairs", self.root / "manifest.csv", SOURCE)
        test = test[: self.test_limit] if self.test_limit else test
        self.train_set = self._dataset(train, True)
        self.val_set = self._dataset(train[: self.n_val], False)
        self.test_set = self._dataset(test, False)

    @classmethod
    def for_profile(cls, profile: str, scale: int = 4, patch: int = 0, batch_size: int = 16,
                    test_limit: int | None = None, num_workers: int = 0, seed: int = 0) -> "PathImgSRDataModule":
        """paper: the build at ``$MIRBENCH_DATA/pathimgsr``; smoke: a tiny build from the shared slides."""
        if profile == "paper":
            root = data_root() / FOLDER
            done = read_json(root / "build.json")
            if not (done and done.get("finished")):
                raise MissingDataError("PathImgSR", root, SOURCE)
            if done["settings"]["scale"] != scale:
                raise ValueError(f"{root} was built for x{done['settings']['scale']}, not x{scale}")
        else:
            root = smoke_dataset()
        return cls(root, scale=scale, patch=patch, batch_size=batch_size, test_limit=test_limit,
                   num_workers=num_workers, seed=seed, decoded_cache=cache_root() / "decoded" if patch else None)


def cache_root() -> Path:
    """MIRBENCH_CACHE (default ./runs/cache): derived data the benchmark can rebuild."""
    return Path(os.environ.get("MIRBENCH_CACHE", "runs/cache")).expanduser()


def smoke_dataset(settings: BuildSettings = SMOKE, cache: Path | None = None,
                  log: Callable[[str], None] = log_to_stderr) -> Path:
    """A tiny PathImgSR from the shared real slides (``$MIRBENCH_DATA/wsi``), built once and cached.

    Each slide is written as a pyramid (:mod:`datamodules.wsi_pyramid`) and the same builder runs
    with ``settings``; the cache key hashes the settings and the slide files (name, size).
    """
    src = data_root() / "wsi"
    files = find_slides(src) if src.is_dir() else []
    if len(files) < 2:
        raise MissingDataError("PathImgSR smoke slides (two or more whole-slide images)", src,
                               "OpenSlide test data (openslide.org/demo: CMU-1-Small-Region.svs, OS-1)")
    ident = json.dumps([_SMOKE_VERSION, settings.key(), [(p.name, p.stat().st_size) for p in files]])
    final = (cache or cache_root()) / f"pathimgsr-smoke-{hashlib.sha1(ident.encode()).hexdigest()[:12]}"
    if (read_json(final / "data" / "build.json") or {}).get("finished"):
        return final / "data"
    tmp = final.with_name(f".{final.name}.{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    for p in files:
        pyramid_from_slide(p, tmp / "slides" / f"{slide_name(p)}.tif")
    report = build(tmp / "slides", tmp / "data", settings=settings, workers=0, log=log)
    empty = [k for k, n in report.counts.items() if n == 0]
    if empty:                            # never cache a build a run cannot use
        shutil.rmtree(tmp, ignore_errors=True)
        raise MissingDataError(f"PathImgSR smoke pairs ({', '.join(empty)} empty; skipped slides: "
                               f"{report.skipped})", src, "OpenSlide test data (openslide.org/demo)")
    try:
        os.replace(tmp, final)
    except OSError:                      # another process finished first: keep its copy
        shutil.rmtree(tmp, ignore_errors=True)
    return final / "data"


# ----------------------------------------------------------------------------------------------
# CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m datamodules.pathimgsr", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build PathImgSR LR/HR pairs from whole-slide images")
    b.add_argument("--slides", type=Path, required=True, help="folder of slides (searched recursively)")
    b.add_argument("--out", type=Path, required=True)
    b.add_argument("--annotations", type=Path, help="folder of Camelyon16 / ASAP XML annotations (<slide>.xml)")
    b.add_argument("--workers", type=int, default=0, help="worker processes (0: this process)")
    b.add_argument("--n-train", type=int, nargs=2, metavar=("TUMOUR", "NORMAL"), default=PAPER.n_train,
                   help="training pairs per class (without --annotations: their sum, class 'tissue')")
    b.add_argument("--n-test", type=int, nargs=2, metavar=("TUMOUR", "NORMAL"), default=PAPER.n_test)
    b.add_argument("--scale", type=int, default=PAPER.scale)
    b.add_argument("--lr-size", type=int, default=PAPER.lr_size)
    b.add_argument("--window", type=int, default=PAPER.window)
    b.add_argument("--magnification", default="40", help="HR magnification, or 'base' for each slide's level 0")
    b.add_argument("--min-tissue", type=float, default=PAPER.min_tissue)
    b.add_argument("--min-region", type=float, default=PAPER.min_region)
    b.add_argument("--test-fraction", type=float, default=PAPER.test_fraction)
    b.add_argument("--test-slides", nargs="+", help="slide names for the test split (default: Camelyon16's)")
    b.add_argument("--seed", type=int, default=PAPER.seed)
    p = sub.add_parser("pyramid", help="write a slide or image as a pyramidal tiled TIFF (OpenSlide-readable)")
    p.add_argument("src", type=Path)
    p.add_argument("dst", type=Path)
    p.add_argument("--mpp", type=float, help="microns per pixel, if the source does not say")
    args = parser.parse_args(argv)
    try:
        if args.cmd == "pyramid":
            pyramid_from_slide(args.src, args.dst, args.mpp)
            return 0
        mag = None if args.magnification == "base" else float(args.magnification)
        settings = replace(PAPER, scale=args.scale, lr_size=args.lr_size, window=args.window, hr_magnification=mag,
                           n_train=tuple(args.n_train), n_test=tuple(args.n_test), min_tissue=args.min_tissue,
                           min_region=args.min_region, test_fraction=args.test_fraction, seed=args.seed)
        if settings.window < settings.hr_size:
            parser.error(f"--window {settings.window} is smaller than the HR size {settings.hr_size}")
        report = build(args.slides, args.out, args.annotations, settings, args.workers, args.test_slides)
    except (FileNotFoundError, ValueError) as exc:
        log_to_stderr(f"error: {exc}")
        return 1
    return 0 if not report.shortfall else 2


if __name__ == "__main__":
    raise SystemExit(main())
