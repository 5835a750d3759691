"""PathImgSR builder, tissue and tumour masks: Camelyon16 / ASAP annotations and the HSV-saturation
tissue test (MASRGAN Sec. 4.1: a window is kept when over 80 % of it is tissue)."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
from skimage.draw import polygon2mask

_EXCLUSION_GROUPS = {"_2", "exclusion", "non-tumor", "none"}
SAT_BOUNDS = (0.05, 0.15)   # Otsu's saturation threshold is clipped to this range (see the builder docstring)


def read_asap_annotation(xml: Path) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Camelyon16 / ASAP XML -> (tumour polygons, exclusion polygons), each (N, 2) level-0 (x, y).

    Groups "_0" and "_1" (or "Tumor") are tumour; "_2" are non-tumour areas cut out of them.
    """
    tumour, exclusion = [], []
    for ann in ET.parse(xml).getroot().iter("Annotation"):
        coords = sorted(ann.iter("Coordinate"), key=lambda c: float(c.get("Order", 0)))
        pts = np.array([[float(c.get("X").replace(",", ".")), float(c.get("Y").replace(",", "."))]
                        for c in coords], dtype=np.float64)
        if len(pts) >= 3:
            group = ann.get("PartOfGroup", "").strip().lower()
            (exclusion if group in _EXCLUSION_GROUPS else tumour).append(pts)
    return tumour, exclusion


def region_mask(tumour: list[np.ndarray], exclusion: list[np.ndarray], x0: float, y0: float,
                cell_x: float, cell_y: float, shape: tuple[int, int]) -> np.ndarray:
    """Tumour mask on a grid of ``shape`` cells of ``cell_x`` x ``cell_y`` level-0 pixels from (x0, y0)."""
    out = np.zeros(shape, dtype=bool)
    x1, y1 = x0 + shape[1] * cell_x, y0 + shape[0] * cell_y
    for polys, value in ((tumour, True), (exclusion, False)):
        for p in polys:
            if p[:, 0].max() < x0 or p[:, 0].min() > x1 or p[:, 1].max() < y0 or p[:, 1].min() > y1:
                continue
            rc = np.stack([(p[:, 1] - y0) / cell_y - 0.5, (p[:, 0] - x0) / cell_x - 0.5], axis=1)
            out[polygon2mask(shape, rc)] = value
    return out


def saturation(rgb: np.ndarray) -> np.ndarray:
    """HSV saturation (max - min) / max in [0, 1], as skimage's rgb2hsv, without the hue work."""
    rgb = rgb.astype(np.float32)
    mx, mn = rgb.max(-1), rgb.min(-1)
    return np.where(mx > 0, (mx - mn) / np.maximum(mx, 1e-6), 0.0)


def tissue_fraction(rgb: np.ndarray, threshold: float) -> float:
    """Share of pixels whose HSV saturation exceeds ``threshold`` (compared without dividing)."""
    mx = rgb.max(-1).astype(np.float32)
    return float(((mx - rgb.min(-1)) > threshold * mx).mean())
