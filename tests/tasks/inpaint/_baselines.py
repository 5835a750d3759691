"""Helpers of the Table 3 baseline tests (CE, GLCIC, DMFN, EdgeConnect, CNRN): real batches from the task's
DataModule dataset, a short Lightning fit, parameter counting without allocation, the composite check."""
from __future__ import annotations

import lightning as L
import torch
from torch import nn

from benchmark.specs import BuildContext
from datamodules.kather import list_patches
from datamodules.kather_inpaint import CLASSES, InpaintDataset
from tests.fixed_batch import fit_on_batch as fit


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def meta_params(factory) -> int:
    """Parameter count of ``factory()`` built on the meta device (no memory, no activations)."""
    with torch.device("meta"):
        return n_params(factory())


def real_batch(shared_data, n: int = 4, size: int = 64, hole: int = 32, corruption: str = "scale") -> dict:
    """``n`` shared CRC-VAL-HE-7K NORM/TUM patches resized to ``size`` with the task's seeded test boxes."""
    files = list_patches("CRC-VAL-HE-7K", shared_data, CLASSES)[:n]
    ds = InpaintDataset(files, size=size, hole=hole, corruption=corruption)
    items = [ds[i] for i in range(len(ds))]
    batch = {k: torch.stack([it[k] for it in items]) for k in ("image", "corrupted", "mask", "box")}
    batch["index"] = torch.arange(len(items))
    return batch


def smoke_ctx(tmp_path, profile: str = "smoke") -> BuildContext:
    return BuildContext("inpaint", "kather_inpaint", profile, None, 3, tmp_path / "no-weights")


class Snapshots(L.Callback):
    """Copies of the generator and discriminator parameters after every iteration."""

    def __init__(self):
        self.g, self.d = [], []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        flat = lambda m: torch.cat([p.detach().flatten().clone() for p in m.parameters()])
        self.g.append(flat(nn.ModuleList(module.generators())))
        self.d.append(flat(module.discriminator))


@torch.no_grad()
def reconstruction_terms(module, batch: dict) -> dict[str, float]:
    """The non-adversarial generator terms on ``batch`` (training mode: BN on batch statistics)."""
    module.train()
    outs = module.generate(*module.net_input(batch))
    return {k: float(v) for k, v in module.reconstruction_losses(batch, outs).items()}


def trained_terms(module, batch: dict, iterations: int) -> tuple[dict[str, float], dict[str, float]]:
    """(terms before, terms after ``iterations`` training steps on the same batch), seeded."""
    torch.manual_seed(0)
    before = reconstruction_terms(module, batch)
    fit(module, batch, iterations)
    return before, reconstruction_terms(module, batch)


@torch.no_grad()
def check_composite(module, batch: dict) -> None:
    """composite=True: the evaluated output equals x_M outside the hole and the raw output inside it;
    the raw generator output itself differs from x_M outside the hole (so the flag matters)."""
    module.eval()
    pred, target, mask, shown = module.restore(batch)
    raw = (module(*module.net_input(batch)) + 1) / 2
    known = mask == 0
    known3 = known.expand_as(pred)
    assert torch.allclose(pred[known3], batch["corrupted"][known3], atol=1e-6)
    assert torch.allclose(pred[~known3], raw[~known3], atol=1e-6)
    assert (raw[known3] - batch["corrupted"][known3]).abs().max() > 1e-3
    module.hparams.composite = False
    try:
        assert torch.allclose(module.restore(batch)[0], raw, atol=1e-6)
    finally:
        module.hparams.composite = True
