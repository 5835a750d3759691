"""PathImgSR builder, level choice: which pyramid levels of a slide are the HR and the LR image.

The HR level is the one at the asked magnification (from the slide's objective power, else its
microns per pixel); the LR level is the one whose downsample is ``scale`` times the HR level's
(within 2 %): the LR level is chosen by downsample ratio, not by magnification or level index.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import openslide

SLIDE_SUFFIXES = (".tif", ".tiff", ".svs", ".ndpi", ".mrxs", ".scn", ".vms", ".vmu", ".bif", ".svslide")


class SlideSkipped(RuntimeError):
    """A slide cannot give pairs (unreadable, no 40x level, no 10x level, missing annotation...)."""


def find_slides(folder: Path) -> list[Path]:
    """Every whole-slide file under ``folder`` (recursively), sorted; names (stems) must be unique."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"slide folder {folder} does not exist")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in SLIDE_SUFFIXES and p.is_file()
                   and not p.name.endswith(".part"))
    names = [slide_name(p) for p in files]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ValueError(f"slide names must be unique, repeated: {sorted(dup)}")
    return files


def slide_name(path: Path) -> str:
    name = Path(path).name
    for suffix in (".ome.tiff", ".ome.tif") + SLIDE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(path).stem


def choose_levels(slide: openslide.OpenSlide, hr_magnification: float | None, scale: int) -> tuple[int, int]:
    """(HR level, LR level): the level at ``hr_magnification`` and the one ``scale`` times coarser.

    Magnification comes from ``openslide.objective-power``, else from ``openslide.mpp-x`` (40x = 0.25
    um/px, i.e. magnification = 10 / mpp); a level counts as 40x within half an octave.  The LR level
    must be ``scale`` times coarser within 2 %.
    """
    ds = np.asarray(slide.level_downsamples, dtype=np.float64)
    if hr_magnification is None:
        hr = 0
    else:
        power = slide.properties.get(openslide.PROPERTY_NAME_OBJECTIVE_POWER)
        mpp = slide.properties.get(openslide.PROPERTY_NAME_MPP_X)
        if not power and not mpp:
            raise SlideSkipped("neither objective power nor microns per pixel in the file")
        base = float(power) if power else 10.0 / float(mpp)
        octaves = np.abs(np.log2(base / ds / hr_magnification))
        hr = int(octaves.argmin())
        if octaves[hr] > 0.5:
            raise SlideSkipped(f"no {hr_magnification:g}x level (levels at "
                               f"{', '.join(f'{base / d:.3g}x' for d in ds)})")
    ratio = ds / ds[hr]
    lr = int(np.abs(np.log(ratio / scale)).argmin())
    if abs(ratio[lr] / scale - 1) > 0.02:
        raise SlideSkipped(f"no level {scale}x coarser than level {hr} (downsamples {np.round(ds, 3).tolist()})")
    return hr, lr
