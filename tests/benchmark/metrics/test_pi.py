"""PIRM Perceptual Index: the formula, and no value at all without Ma's model."""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from benchmark.metrics.niqe import NIQE
from benchmark.metrics.pi import PerceptualIndex, pi_from_means
from benchmark.weights import MissingWeightsError

SHARED = Path(__file__).resolve().parents[3].parent / "shared"
IMAGES = ["kather/CRC-VAL-HE-7K/LYM/LYM-TCGA-FTVCYFDV.png", "kather/CRC-VAL-HE-7K/STR/STR-TCGA-HGDYLEWM.png"]


def _constant_model(path: Path, leaves=(7.0, 6.0, 8.0), linear=(0.2, 0.5, 0.25, 0.25)) -> float:
    """Forests of one root-leaf tree each: Ma = linear . [1, *leaves] whatever the image."""
    rf = np.empty((1, 3), dtype=object)
    for i, v in enumerate(leaves):
        rf[0, i] = {"lDau": np.zeros((1, 1), np.int32), "rDau": np.zeros((1, 1), np.int32),
                    "nodestatus": -np.ones((1, 1), np.int8), "nrnodes": np.array([[1]]),
                    "upper": np.zeros((1, 1)), "avnode": np.full((1, 1), v),
                    "mbest": np.zeros((1, 1), np.int32)}
    scipy.io.savemat(path, {"model": {"linear": np.array(linear)[:, None], "rf": rf}})
    return float(np.dot(linear, [1.0, *leaves]))


def test_pi_from_means():
    assert pi_from_means(6.0, 4.0) == 4.0
    assert pi_from_means(None, 4.0) is None and pi_from_means(float("nan"), 4.0) is None


def test_refuses_without_ma_model():
    with pytest.raises(MissingWeightsError, match="NRQM_model.mat"):  # MIRBENCH_WEIGHTS is empty here
        PerceptualIndex()


def test_pi_is_the_pirm_combination_of_set_means(tmp_path):
    ma = _constant_model(tmp_path / "NRQM_model.mat")  # 0.2 + 3.5 + 1.5 + 2.0 = 7.2
    root = Path(os.environ.get("MIRBENCH_DATA", SHARED / "datasets"))
    x = torch.cat([torch.from_numpy(np.asarray(Image.open(root / p).convert("RGB"), dtype=np.float64) / 255.0)
                   .permute(2, 0, 1)[None] for p in IMAGES])
    pi, niqe = PerceptualIndex(ma_model_path=tmp_path / "NRQM_model.mat"), NIQE()
    for m in (pi, niqe):
        m.update(x, x, torch.tensor([0, 1]))
    assert not PerceptualIndex.higher_is_better
    assert math.isclose(pi.compute().item(), pi_from_means(ma, niqe.compute().item()), abs_tol=1e-12)
    assert math.isclose(ma, 7.2)
