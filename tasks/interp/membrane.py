"""Membrane segmentation oracle for SSAN Table 5 (membrane Dice / F1 of interpolated slices).

``oracle_for(datamodule)`` returns the frozen segmenter for a test DataModule, or None where the
DataModule has no neuron labels to train one on (e.g. a user's own unlabelled stack).
"""
from __future__ import annotations

from torch import nn


def oracle_for(datamodule) -> nn.Module | None:
    source = getattr(datamodule, "membrane_source", None)
    if source is None:
        return None
    raise NotImplementedError("membrane oracle training is not written yet")
