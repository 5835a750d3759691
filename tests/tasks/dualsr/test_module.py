"""DualModule (tasks/dualsr/module.py) on real Kather patches: each loss trains, seeded z draws give the
same scores twice, both protocols report what they should; the registry builds every row."""
from __future__ import annotations

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from benchmark.specs import BuildContext, EvalConvention
from datamodules.kather import KatherSRDataModule
from tasks.dualsr import registry
from tasks.dualsr.irn import IRN
from tasks.dualsr.module import DualModule
from tasks.dualsr.snadn import SNADN

NETS = {"irn": lambda s: IRN(s, blocks=2, gc=4), "snadn": lambda s: SNADN(s, (4, 4), 2, 2, 8, chunk_size=16)}


@pytest.fixture(scope="module")
def data(shared_data):
    dm = KatherSRDataModule(release="CRC-VAL-HE-7K", root=shared_data, n_patches=None, split=(0.5, 0.25, 0.25),
                            scale=2, patch=32)
    dm.setup()
    torch.manual_seed(0)
    train = next(iter(DataLoader(dm.train_set, batch_size=4)))
    test = [dm.test_set[i] for i in range(2)]
    return train, [{k: (v.unsqueeze(0) if torch.is_tensor(v) else [v]) for k, v in t.items()} for t in test]


def _fit(module: L.LightningModule, batch: dict, steps: int) -> None:
    trainer = L.Trainer(accelerator="cpu", max_steps=steps, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    trainer.fit(module, DataLoader([batch] * steps, batch_size=None))


def _losses(module: DualModule, batch: dict) -> dict[str, float]:
    torch.manual_seed(1)  # the same z sample before and after training
    with torch.no_grad():
        return {k: float(v) for k, v in module.losses(batch).items()}


@pytest.mark.parametrize("name", list(NETS))
@pytest.mark.parametrize("term", ["fit", "distr", "rec"])
def test_each_loss_trains(data, name, term):
    """Each term alone (the others weighted 0) falls over a few Adam steps: its gradient reaches the net."""
    torch.manual_seed(0)
    weights = {"lam_fit": 0.0, "lam_distr": 0.0, "lam_rec": 0.0} | {f"lam_{term}": 1.0}
    # the LR fit starts near its optimum (2x2 mean vs bicubic): the paper's lr, else overshoot
    module = DualModule(NETS[name](2), 2, lr=2e-4 if term == "fit" else 2e-3, **weights)
    before = _losses(module, data[0])[term]
    _fit(module, data[0], 8)
    assert _losses(module, data[0])[term] < 0.97 * before


def _evaluate(module: DualModule, batches: list[dict], protocol_space="rgb") -> dict:
    module.configure_evaluation(EvalConvention(space=protocol_space, crop=2, niqe=False))
    module.eval()
    with torch.no_grad():
        for i, b in enumerate(batches):
            module.test_step(b, i)
    module.log = lambda *a, **k: None   # outside a Trainer
    module.on_test_epoch_end()
    return dict(module.test_results)


@pytest.mark.parametrize("protocol", ["sr", "rescale"])
def test_seeded_z_gives_the_same_scores_twice(data, protocol):
    torch.manual_seed(0)
    module = DualModule(NETS["snadn"](2), 2, protocol)
    _fit(module, data[0], 3)
    first, second = _evaluate(module, data[1]), _evaluate(module, data[1])
    assert first == second and first["n_images"] == 2 and first["n_draws"] == 5
    assert first["psnr_sd"] > 0                                          # the 5 draws differ
    assert ("psnr_lr" in first) == (protocol == "rescale")
    assert first["psnr_z0"] != first["psnr"]                             # z = 0 is not one of the draws
    module.hparams.z_seed = 1
    assert _evaluate(module, data[1])["psnr"] != first["psnr"]


def test_rescale_protocol_reads_its_own_lr(data):
    """With z = 0 weights (identity ITB) the own LR is the 2x2 mean of HR, not the bicubic LR."""
    module = DualModule(NETS["irn"](2), 2, "rescale")
    b = data[1][0]
    own = module.test_lr(b)
    assert torch.allclose(own, (torch.nn.functional.avg_pool2d(b["hr"], 2) * 255).round() / 255)
    assert torch.equal(DualModule(NETS["irn"](2), 2, "sr").test_lr(b), b["lr"])


@pytest.mark.parametrize("method", ["irn", "snadn", "snadn_no_nlsa", "irn_rescale", "snadn_rescale", "bicubic"])
def test_registry_rows_build_at_smoke_and_paper_size(method, tmp_path):
    spec = registry.METHODS[method]
    for ds in spec.datasets:
        for profile in ("smoke", "paper"):
            ctx = BuildContext("dualsr", ds, profile, registry.DATASETS[ds].scale, 3, tmp_path)
            module, plan = spec.build(ctx)   # paper size asserts the official / calibrated counts
            if profile == "paper" and method != "bicubic":
                assert plan.max_steps > 0 and plan.batch_size in (4, 16)
    batch = registry.DATASETS["kather_x4"].example_batch(ctx, plan, 2)
    assert batch["hr"].shape == (2, 3, plan.patch_size or 224, plan.patch_size or 224)
    assert batch["lr"].shape[-1] == batch["hr"].shape[-1] // 4


def test_paper_parameter_counts_truncate_to_the_reported_ones():
    n = lambda net: sum(p.numel() for p in net.parameters())  # noqa: E731
    assert n(SNADN(2)) == 1_024_771 and n(SNADN(4)) == 3_258_182                  # paper: 1.0 M, 3.2 M
    assert int(n(SNADN(2)) / 1e5) == 10 and int(n(SNADN(4)) / 1e5) == 32
    assert n(IRN(2)) == 1_667_952 and n(IRN(4)) == 4_355_136                      # official IRN
    assert n(SNADN(4, nlsa=False)) == 3_196_704
