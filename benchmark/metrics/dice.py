"""Overlap of binary masks: per-image Dice (mean over images) and pooled F1 (micro, over all pixels).

For binary masks Dice and F1 are the same formula, 2|A∩B| / (|A| + |B|); they differ only in how
images are aggregated.  The SSAN paper (Table 5) reports both without saying how; here ``dice`` is the
mean of per-image scores and ``f1`` pools true/false positives over every test pixel, one of the ways
its small Dice/F1 gaps can arise.  An image where both masks are empty scores 1 (they agree).
"""
from __future__ import annotations

import torch
from torchmetrics import Metric

from benchmark.metrics.base import PerImageMetric


def _binary(x: torch.Tensor) -> torch.Tensor:
    return (x > 0.5).flatten(1).to(torch.float64)


class Dice(PerImageMetric):
    """Per-image Dice 2|P∩T| / (|P| + |T|) of binary (B, 1, H, W) masks (values > 0.5 = foreground)."""

    higher_is_better = True

    def score(self, preds, target):
        p, t = _binary(preds), _binary(target)
        inter, total = (p * t).sum(1), p.sum(1) + t.sum(1)
        return torch.where(total > 0, 2 * inter / total.clamp_min(1), torch.ones_like(total))


class PooledF1(Metric):
    """Micro F1 = 2TP / (2TP + FP + FN) over every pixel of every image (sum-reduced under DDP)."""

    full_state_update = False
    is_differentiable = False
    higher_is_better = True

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        for name in ("tp", "fp", "fn"):
            self.add_state(name, default=torch.tensor(0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor, index=None, mask=None) -> None:
        if preds.shape != target.shape:
            raise ValueError(f"PooledF1: preds {tuple(preds.shape)} != target {tuple(target.shape)}")
        p, t = _binary(preds), _binary(target)
        self.tp += (p * t).sum()
        self.fp += (p * (1 - t)).sum()
        self.fn += ((1 - p) * t).sum()

    def compute(self) -> torch.Tensor:
        denom = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / denom if denom > 0 else torch.tensor(1.0, dtype=torch.float64)
