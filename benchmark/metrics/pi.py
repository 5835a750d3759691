"""The PIRM 2018 Perceptual Index: PI = ((10 - Ma) + NIQE) / 2 over a test set.  Lower is better.

Blau, Mechrez, Timofte, Michaeli & Zelnik-Manor, "The 2018 PIRM challenge on perceptual image
super-resolution", ECCV Workshops 2018; Ma = Ma et al. 2017 (CVIU), NIQE = Mittal et al. 2013
(IEEE SPL), both on the uint8 Y of MATLAB ``rgb2ycbcr`` with 4 pixels shaved.

PI needs Ma's trained model (see ``nrqm``).  Without it there is no PI: ``PerceptualIndex`` raises
``MissingWeightsError`` and ``pi_from_means`` returns ``None`` -- never a value estimated from NIQE
alone or from anything else.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch

from benchmark.metrics.base import PerImageMetric
from benchmark.metrics.niqe import _pirm_y, load_niqe_params, niqe
from benchmark.metrics.nrqm import ma_score, require_nrqm_model


def pi_from_means(ma_mean: float | None, niqe_mean: float) -> float | None:
    """``((10 - ma_mean) + niqe_mean) / 2``, or ``None`` when Ma is unavailable (None or NaN)."""
    if ma_mean is None or math.isnan(float(ma_mean)) or math.isnan(float(niqe_mean)):
        return None
    return ((10.0 - float(ma_mean)) + float(niqe_mean)) / 2.0


class PerceptualIndex(PerImageMetric):
    """PIRM Perceptual Index of a set; ``target`` is ignored.

    Each image contributes ``((10 - Ma_i) + NIQE_i) / 2``; the set value, the mean of these, is
    ``((10 - mean Ma) + mean NIQE) / 2`` by linearity (PIRM's definition).  Constructing it raises
    ``MissingWeightsError`` when the Ma model file is missing.

    Args:
        crop_border: PIRM shave (4).
        ma_model_path: Ma's model; default ``$MIRBENCH_WEIGHTS/nrqm/NRQM_model.mat``.
        niqe_params: NIQE pristine model (default: the bundled official one).
    """

    higher_is_better = False

    def __init__(self, crop_border: int = 4, ma_model_path: str | Path | None = None,
                 niqe_params: str | Path | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.crop_border = crop_border
        self._linear, self._forests = require_nrqm_model(ma_model_path)  # raises without the model
        self._mu, self._cov = load_niqe_params(niqe_params)

    def score(self, preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        vals = []
        for y in _pirm_y(preds, self.crop_border).cpu().numpy():
            vals.append(pi_from_means(ma_score(y, self._linear, self._forests), niqe(y, self._mu, self._cov)))
        return torch.tensor([float("nan") if v is None else v for v in vals], dtype=torch.float64,
                            device=preds.device)
