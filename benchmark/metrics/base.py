"""Per-image metric base: every score is kept with the dataset index of its image.

States are ``cat``-reduced lists of (index, value).  After a DDP sync, ``compute`` sorts by index and
averages in float64, so a 2-process evaluation reproduces the 1-process number bit for bit, and a
duplicated image (a padding sampler) is detected instead of silently biasing the mean.
"""
from __future__ import annotations

from abc import abstractmethod

import torch
from torchmetrics import Metric
from torchmetrics.utilities.data import dim_zero_cat


class PerImageMetric(Metric):
    """Mean of a per-image score.  Subclasses implement :meth:`score` on [0, 1] image batches."""

    full_state_update = False
    is_differentiable = False
    higher_is_better: bool = True

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("index", default=[], dist_reduce_fx="cat")
        self.add_state("values", default=[], dist_reduce_fx="cat")

    @abstractmethod
    def score(self, preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) predictions and targets in [0, 1] -> (B,) float64 scores."""

    def update(self, preds: torch.Tensor, target: torch.Tensor, index: torch.Tensor,
               mask: torch.Tensor | None = None) -> None:
        """``mask`` (B, 1, H, W), 1 = region to score, is passed on only to region metrics."""
        if preds.shape != target.shape:
            raise ValueError(f"{type(self).__name__}: preds {tuple(preds.shape)} != target {tuple(target.shape)}")
        vals = self.score(preds, target) if mask is None else self.score(preds, target, mask=mask)
        vals = vals.to(torch.float64).reshape(-1)
        self.values.append(vals)
        self.index.append(torch.as_tensor(index, device=vals.device).reshape(-1).to(torch.int64))

    def per_image(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(sorted indices, their scores).  Raises if an image was scored twice."""
        # a list of per-batch tensors before a DDP sync, one gathered tensor after it
        if isinstance(self.values, list) and len(self.values) == 0:
            return torch.empty(0, dtype=torch.int64), torch.empty(0, dtype=torch.float64)
        idx = dim_zero_cat(self.index).cpu()
        val = dim_zero_cat(self.values).cpu()
        order = torch.argsort(idx, stable=True)
        idx, val = idx[order], val[order]
        if idx.numel() > 1 and bool((idx[1:] == idx[:-1]).any()):
            dup = idx[1:][idx[1:] == idx[:-1]].unique().tolist()[:5]
            raise RuntimeError(f"{type(self).__name__}: images {dup} were evaluated twice "
                               "(a padding DistributedSampler?); the mean would be biased")
        return idx, val

    def compute(self) -> torch.Tensor:
        _, val = self.per_image()
        if val.numel() == 0:
            return torch.tensor(float("nan"), dtype=torch.float64)
        # same tensor in the same (index) order -> the same float64 sum whatever the world size
        return val.sum() / val.numel()
