"""PathImgSR builder, reading and writing: slide regions, JSON state files, the manifest, the log."""
from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path

import numpy as np
import openslide


def log_to_stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def read_rgb(slide: openslide.OpenSlide, x0: int, y0: int, level: int, size: int) -> np.ndarray:
    rgba = np.asarray(slide.read_region((int(x0), int(y0)), level, (size, size)))
    rgb = rgba[..., :3].copy()
    rgb[rgba[..., 3] == 0] = 255                 # unscanned (transparent) area is glass
    return rgb


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(Path(path).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def write_json(path: Path, obj: dict) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=str))
    os.replace(tmp, path)


MANIFEST_FIELDS = ("split", "name", "cls", "slide", "lr", "hr", "lr_level", "hr_level", "lr_x", "lr_y",
                   "hr_x", "hr_y", "offset_x", "offset_y", "shift_x", "shift_y", "ncc", "tissue_fraction",
                   "tumor_fraction", "hr_mpp")


def write_manifest(path: Path, rows: list[dict]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=MANIFEST_FIELDS)
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)
