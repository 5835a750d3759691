"""Ma et al.'s no-reference quality metric for super-resolution (NRQM, "Ma" in PIRM's PI).

Ma, Yang, Yang & Yang, "Learning a no-reference quality metric for single-image
super-resolution", Computer Vision and Image Understanding 158, 2017.  As the official
``quality_predict.m`` (github chaoma99/sr-metric) and the PIRM 2018 code use it: the uint8 Y
channel of MATLAB ``rgb2ycbcr``, 4 pixels shaved, three feature groups (local DCT statistics,
global steerable-pyramid / GSM statistics, patch SVD; see ``_nrqm_features``), each fed to its own
regression forest (randomforest-matlab / R randomForest, 2000 trees), and the linear fusion
``[1 s1 s2 s3] * model.linear``.  Scores lie roughly in 0..10; higher is better.

The trained model is not bundled and never downloaded.  The user provides it at
``$MIRBENCH_WEIGHTS/nrqm/NRQM_model.mat``: either pyiqa's converted ``NRQM_model.mat`` or the
official ``model.mat`` of chaoma99/sr-metric (MATLAB v5/v7 format, as scipy.io.loadmat reads it;
re-save a v7.3 file with ``save(..., '-v7')``).  Its layout: a struct ``model`` with
``linear`` (4x1 double) and ``rf`` (cell of 3 randomforest-matlab regression models with fields
``lDau, rDau, nodestatus, nrnodes, upper, avnode, mbest, ...`` -- (nrnodes x ntree) arrays, read by
name, or by position 0, 1, 2, 4, 5, 6 as pyiqa does; an optional ``coef`` is applied as
``regRF_predict`` does).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io
import torch

from benchmark.metrics._nrqm_features import ma_features
from benchmark.metrics.base import PerImageMetric
from benchmark.metrics.niqe import _pirm_y
from benchmark.weights import KNOWN, MissingWeightsError, weight_path

_FIELDS = {"lDau": 0, "rDau": 1, "nodestatus": 2, "upper": 4, "avnode": 5, "mbest": 6}
_TERMINAL = -1  # NODE_TERMINAL of R randomForest


@dataclass(frozen=True)
class _Forest:
    """One regression forest: (nrnodes, ntree) arrays, node indices 0-based, ``var`` 0-based."""

    left: np.ndarray
    right: np.ndarray
    terminal: np.ndarray
    split: np.ndarray
    value: np.ndarray
    var: np.ndarray
    coef: np.ndarray | None = None

    def predict(self, x: np.ndarray) -> float:
        """R randomForest ``predictRegTree`` for every tree (go left iff x[var] <= split), averaged."""
        n_nodes, n_trees = self.left.shape
        trees = np.arange(n_trees)
        k = np.zeros(n_trees, dtype=np.int64)
        for _ in range(n_nodes):
            active = ~self.terminal[k, trees]
            if not active.any():
                break
            kk, tt = k[active], trees[active]
            left = x[self.var[kk, tt]] <= self.split[kk, tt]
            k[active] = np.where(left, self.left[kk, tt], self.right[kk, tt])
            if (k < 0).any() or (k >= n_nodes).any():
                raise ValueError("malformed NRQM forest: a daughter index is out of range")
        else:
            raise ValueError("malformed NRQM forest: a tree has a cycle")
        total = 0.0
        for v in self.value[k, trees]:  # summed tree by tree, then divided, as regForest does
            total += float(v)
        y = total / n_trees
        if self.coef is not None and np.count_nonzero(self.coef):  # regRF_predict's bias correction
            y = float(self.coef[0] + self.coef[1] * y)
        return y


def _field(rec, name: str):
    names = rec.dtype.names or ()
    return rec[name] if name in names else rec[_FIELDS[name]]


def _load_forest(rec) -> _Forest:
    left = np.asarray(_field(rec, "lDau"), dtype=np.int64) - 1
    right = np.asarray(_field(rec, "rDau"), dtype=np.int64) - 1
    status = np.asarray(_field(rec, "nodestatus"))
    # NODE_TERMINAL marks leaves; a file without a numeric nodestatus: leaves have no daughter
    terminal = status.astype(np.int64) == _TERMINAL if status.dtype.kind in "iuf" else left < 0
    coef = None
    if "coef" in (rec.dtype.names or ()):
        coef = np.asarray(rec["coef"], dtype=np.float64).reshape(-1)
        coef = coef if coef.size >= 2 else None
    return _Forest(left=left, right=right, terminal=terminal,
                   split=np.asarray(_field(rec, "upper"), dtype=np.float64),
                   value=np.asarray(_field(rec, "avnode"), dtype=np.float64),
                   var=np.asarray(_field(rec, "mbest"), dtype=np.int64) - 1, coef=coef)


def load_nrqm_model(path: str | Path) -> tuple[np.ndarray, list[_Forest]]:
    """(linear (4,), [3 forests]) from an ``NRQM_model.mat`` / ``model.mat`` (see module doc)."""
    try:
        model = scipy.io.loadmat(str(path))["model"][0, 0]
    except NotImplementedError as exc:  # MATLAB v7.3 (HDF5)
        raise ValueError(f"{path}: MATLAB v7.3 files are not supported; "
                         "re-save with save(..., '-v7')") from exc
    except KeyError as exc:
        raise ValueError(f"{path}: no struct 'model' (expected fields 'linear' and 'rf')") from exc
    linear = np.asarray(model["linear"], dtype=np.float64).reshape(-1)
    forests = [_load_forest(cell[0, 0]) for cell in np.asarray(model["rf"]).reshape(-1)]
    if linear.size != 4 or len(forests) != 3:
        raise ValueError(f"{path}: expected linear (4,) and 3 forests, got {linear.size} and {len(forests)}")
    return linear, forests


def nrqm_available(path: str | Path | None = None) -> bool:
    """Whether the Ma model file exists (default ``$MIRBENCH_WEIGHTS/nrqm/NRQM_model.mat``)."""
    return (Path(path) if path is not None else weight_path("nrqm")).is_file()


def require_nrqm_model(model_path: str | Path | None = None) -> tuple[np.ndarray, list[_Forest]]:
    """Load the Ma model, or raise ``MissingWeightsError`` naming the file, path and source."""
    path = Path(model_path) if model_path is not None else weight_path("nrqm")
    if not path.is_file():
        raise MissingWeightsError("nrqm", path, KNOWN["nrqm"][1],
                                  "needed for Ma et al.'s NRQM and so for the PIRM Perceptual Index")
    return load_nrqm_model(path)


def ma_score(y255: np.ndarray, linear: np.ndarray, forests: list[_Forest]) -> float:
    """``quality_predict(Y)`` for one (H, W) uint8-valued Y image on the 0..255 scale."""
    feats = ma_features(y255)
    for f, forest in zip(feats, forests):
        if forest.var.max() >= f.size:
            raise ValueError(f"NRQM model expects more than {f.size} features in a group")
    preds = [forest.predict(f) for f, forest in zip(feats, forests)]
    return float(np.dot(np.array([1.0, *preds]), linear))


class MaNRQM(PerImageMetric):
    """Ma et al. (2017) score per image, PIRM protocol; ``target`` is ignored.  Higher is better.

    Args:
        crop_border: pixels shaved from each side after the Y conversion (PIRM: 4).
        model_path: the trained model; default ``$MIRBENCH_WEIGHTS/nrqm/NRQM_model.mat``.

    Raises:
        MissingWeightsError (a FileNotFoundError) naming the file, the expected path and its
        source when the model is absent: the score is never estimated without it.
    """

    higher_is_better = True

    def __init__(self, crop_border: int = 4, model_path: str | Path | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.crop_border = crop_border
        self._linear, self._forests = require_nrqm_model(model_path)

    def score(self, preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        ys = _pirm_y(preds, self.crop_border).cpu().numpy()
        vals = [ma_score(y, self._linear, self._forests) for y in ys]
        return torch.tensor(vals, dtype=torch.float64, device=preds.device)
