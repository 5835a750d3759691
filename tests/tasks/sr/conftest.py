"""Fixtures of the SR method tests: a fixed batch of real patches and a short Lightning fit on it."""
from __future__ import annotations

import lightning as L
import pytest
import torch

from benchmark.specs import BuildContext
from datamodules.sr_pairs import PairedSRDataset
from tests.fixed_batch import fit_on_batch


@pytest.fixture
def real_batch(shared_data):
    """(n, patch, scale) -> a batch of n random-cropped Kather CRC-VAL-HE-7K patches (bicubic LR)."""
    def make(n: int = 4, patch: int = 32, scale: int = 4) -> dict:
        paths = sorted((shared_data / "kather" / "CRC-VAL-HE-7K").glob("*/*.png"))[::4][:n]
        ds = PairedSRDataset(paths, scale, patch=patch)
        g = torch.random.fork_rng()
        with g:
            torch.manual_seed(0)
            items = [ds[i] for i in range(len(ds))]
        return {"lr": torch.stack([it["lr"] for it in items]), "hr": torch.stack([it["hr"] for it in items])}
    return make


@pytest.fixture
def fit():
    """(module, batch, iterations, callbacks) -> the Trainer after ``iterations`` batches on CPU."""
    return fit_on_batch


@pytest.fixture
def smoke_ctx(tmp_path):
    """(profile) -> the BuildContext the runner gives a method on pathimgsr_x4."""
    def make(profile: str = "smoke") -> BuildContext:
        return BuildContext("sr", "pathimgsr_x4", profile, 4, 3, tmp_path / "no-weights")
    return make


class _ParamMoves(L.Callback):
    """Per batch, which parameter groups changed: ``groups(module)`` -> list of parameter iterables.
    ``rows[i]`` is a tuple of booleans, one per group; every training loss must be finite."""

    def __init__(self, groups):
        self.groups, self.rows = groups, []

    def _snap(self, module):
        return [torch.cat([p.detach().flatten() for p in ps]).clone() for ps in self.groups(module)]

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self._before = self._snap(module)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        assert torch.isfinite(outputs["loss"])
        self.rows.append(tuple(not torch.equal(a, b) for a, b in zip(self._before, self._snap(module))))


@pytest.fixture
def param_moves():
    """groups -> a callback recording which parameter groups each training batch changed."""
    return _ParamMoves


@pytest.fixture
def pixel_error():
    """(module, batch, loss_fn) -> the module's current loss on the batch, without gradients."""
    def measure(module, batch, loss_fn=torch.nn.functional.l1_loss) -> float:
        with torch.no_grad():
            return loss_fn(module(batch["lr"]), batch["hr"]).item()
    return measure
