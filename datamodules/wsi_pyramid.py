"""Write a pyramidal tiled TIFF from one base image, readable by OpenSlide's generic-tiff reader.

Used by the tests and the smoke profile: the shared real slides (``$MIRBENCH_DATA/wsi``) hold one
level each, while the PathImgSR builder needs a 40x level and the level 4x coarser.  The file mirrors
a Camelyon16 slide (which ASAP wrote as a generic TIFF): every level is a top-level page (no SubIFDs),
256x256 JPEG tiles, reduced levels marked ``subfiletype=1`` (reduced-resolution image), and
X/YResolution in pixels per centimetre so that OpenSlide reports ``openslide.mpp-x/y``.

Each level is the 2x2 box average of the one above (PIL ``Image.reduce(2)``), the usual pyramid filter
of slide converters (libvips, ASAP); the base is cropped to a multiple of the coarsest downsample so
every level's downsample is an exact power of two (OpenSlide then maps level-0 coordinates exactly).
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import openslide
import tifffile
from PIL import Image

_MAX_OPENSLIDE_PIXELS = 1 << 28   # read whole level 0 only from small slides (the shared samples)


def load_base_image(path: Path, mpp: float | None = None) -> tuple[np.ndarray, float]:
    """Level 0 of a slide or image as (H, W, 3) uint8 and its microns per pixel.

    Tries OpenSlide (SVS, NDPI, generic TIFF, ...), then tifffile (OME-TIFF and other TIFFs, mpp from
    the OME ``PhysicalSizeX`` or the resolution tags), then PIL (``mpp`` must then be given).
    """
    path = Path(path)
    try:
        with openslide.OpenSlide(path) as slide:
            w, h = slide.dimensions
            if w * h <= _MAX_OPENSLIDE_PIXELS:
                rgba = np.asarray(slide.read_region((0, 0), 0, (w, h)))
                found = slide.properties.get(openslide.PROPERTY_NAME_MPP_X)
                return _rgba_to_rgb(rgba), float(mpp or found or _need_mpp(path))
    except openslide.OpenSlideError:
        pass
    if path.suffix.lower() in (".tif", ".tiff", ".svs", ".ndpi", ".btf"):
        with tifffile.TiffFile(path) as tif:
            arr = tif.series[0].levels[0].asarray()
            found = _tiff_mpp(tif)
        return _as_rgb(arr), float(mpp or found or _need_mpp(path))
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")), float(mpp or _need_mpp(path))


def write_pyramid(image: np.ndarray, path: Path, mpp: float, tile: int = 256, n_levels: int | None = None,
                  compression: str | None = "jpeg", quality: int = 90) -> Path:
    """Write ``image`` (H, W, 3) uint8 at ``mpp`` microns/pixel as a tiled pyramid with 2x steps.

    ``n_levels`` defaults to as many levels as keep the coarsest one at least ``tile`` // 4 pixels on
    its shorter side (at least 3, so a 4x-coarser level always exists).  Returns ``path``.
    """
    image = _as_rgb(image)
    if n_levels is None:
        n_levels = max(3, int(np.floor(np.log2(min(image.shape[:2]) / max(1, tile // 4)))) + 1)
    step = 2 ** (n_levels - 1)
    h, w = (image.shape[0] // step) * step, (image.shape[1] // step) * step
    if h == 0 or w == 0:
        raise ValueError(f"image {image.shape[1]}x{image.shape[0]} too small for {n_levels} levels")
    level = Image.fromarray(np.ascontiguousarray(image[:h, :w]))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    args = dict(compressionargs={"level": quality}) if compression == "jpeg" else {}
    with tifffile.TiffWriter(path, bigtiff=h * w * 3 > 2**31) as tif:
        for i in range(n_levels):
            px_per_cm = 1e4 / (mpp * 2**i)
            tif.write(np.asarray(level), tile=(tile, tile), photometric="rgb", compression=compression,
                      subfiletype=1 if i else 0, resolution=(px_per_cm, px_per_cm),
                      resolutionunit="CENTIMETER", metadata=None, **args)
            level = level.reduce(2)
    return path


def pyramid_from_slide(src: Path, dst: Path, mpp: float | None = None, **kwargs) -> Path:
    """Read ``src``'s level 0 (see :func:`load_base_image`) and write it as a pyramid at ``dst``."""
    image, found_mpp = load_base_image(src, mpp)
    return write_pyramid(image, dst, found_mpp, **kwargs)


def _rgba_to_rgb(rgba: np.ndarray) -> np.ndarray:
    rgb = rgba[..., :3].copy()
    rgb[rgba[..., 3] == 0] = 255          # transparent (unscanned) pixels are glass: white
    return rgb


def _as_rgb(arr: np.ndarray) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[0] in (3, 4) and arr.shape[-1] not in (3, 4):
        arr = np.moveaxis(arr, 0, -1)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    if arr.dtype != np.uint8:
        raise ValueError(f"expected an 8-bit image, got {arr.dtype}")
    return arr[..., :3] if arr.shape[-1] == 3 else _rgba_to_rgb(arr)


def _tiff_mpp(tif: tifffile.TiffFile) -> float | None:
    if tif.ome_metadata:
        m = re.search(r'PhysicalSizeX="([0-9.eE+-]+)"', tif.ome_metadata)
        unit = re.search(r'PhysicalSizeXUnit="([^"]+)"', tif.ome_metadata)
        if m and (unit is None or unit.group(1) in ("µm", "um", "\u00b5m")):
            return float(m.group(1))
    page = tif.pages[0]
    xres, unit = page.tags.get("XResolution"), page.tags.get("ResolutionUnit")
    if xres is None or unit is None or unit.value not in (2, 3):
        return None
    num, den = xres.value
    if not num:
        return None
    um_per_unit = 25_400.0 if unit.value == 2 else 10_000.0      # inch / centimetre
    return um_per_unit * den / num


def _need_mpp(path: Path) -> float:
    raise ValueError(f"{path}: no microns-per-pixel in the file; pass mpp=...")
