"""PathImgSR builder, registration: where the x4 bicubic-enlarged LR patch sits in its HR window
(normalised cross-correlation over every offset), and its quality control.

A pair is rejected when its best NCC is below ``min_ncc`` (the LR and HR do not show the same
tissue: a scanner artefact, a blank or blurred field) or when the best offset lies on the border of
the search range (the true optimum may lie outside the window: the levels are not aligned as
assumed).  Correctly aligned pairs of the smoke build (exact offsets, synthetic pyramids) score
0.76-0.97; a floor of 0.5 keeps them and rejects unrelated content.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image
from skimage.color import rgb2gray
from skimage.feature import match_template

MIN_NCC = 0.5


def register(window: np.ndarray, lr: np.ndarray, scale: int) -> tuple[int, int, float]:
    """Best (dy, dx) of the x``scale`` bicubic-enlarged ``lr`` inside ``window`` and its NCC.

    Both are RGB uint8; matching runs on luminance (rgb2gray) with skimage's FFT-based normalised
    cross-correlation over every offset; enlargement is PIL bicubic in float ('F') mode.
    """
    gray = Image.fromarray(rgb2gray(lr).astype(np.float32), mode="F")
    up = np.asarray(gray.resize((lr.shape[1] * scale, lr.shape[0] * scale), Image.Resampling.BICUBIC))
    ncc = match_template(rgb2gray(window).astype(np.float32), up)
    dy, dx = np.unravel_index(int(ncc.argmax()), ncc.shape)
    return int(dy), int(dx), float(ncc[dy, dx])


@dataclass(frozen=True)
class RegistrationCheck:
    """Why a registered pair is rejected, or ``None`` (kept): 'low_ncc' or 'border_offset'."""

    min_ncc: float = MIN_NCC

    def reject_reason(self, dy: int, dx: int, ncc: float, search: int) -> str | None:
        """``search``: the number of offsets per axis minus one (window - HR size)."""
        if not np.isfinite(ncc) or ncc < self.min_ncc:
            return "low_ncc"
        if search > 0 and (dy in (0, search) or dx in (0, search)):
            return "border_offset"
        return None
