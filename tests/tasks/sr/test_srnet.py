"""rVTT's SRNet / SRNet-w: generator, edge-weighted J_recon, builders, ROI mask of SRModule.restore."""
import math
from pathlib import Path

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from benchmark.specs import BuildContext, EvalConvention
from benchmark.weights import MissingWeightsError
from datamodules.crchisto import CRCHistoSRDataModule
from tasks.common.roi import points_to_disc_mask
from tasks.sr.interpolation import build_bicubic
from tasks.sr.registry import DATASETS
from tasks.sr.srnet import (PAPER, SMOKE, SRNet, SRNetModule, ReconstructionLoss, build_srnet, build_srnet_w,
                            sobel_edge_loss)


def _ctx(profile: str, weights: Path) -> BuildContext:
    return BuildContext(task="sr", dataset="crchisto_x4", profile=profile, scale=4, in_channels=3, weights_dir=weights)


@pytest.fixture(scope="module")
def crch_items(shared_data):
    """Four real 64 px CRCH training patches (seeded crops/flips) with their nucleus points."""
    torch.manual_seed(0)
    dm = CRCHistoSRDataModule(root=shared_data, scale=4, patch=64, batch_size=4, max_points=1200)
    dm.setup("fit")
    return [dm.train_set[i] for i in range(4)]


def _fit(module, items, iterations: int) -> list[dict]:
    """Train on the same real batch ``iterations`` times; return each step's output dict."""
    outs = []

    class Record(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            outs.append({k: float(v) for k, v in outputs.items()})

    loader = DataLoader([items] * iterations, batch_size=None, collate_fn=torch.utils.data.default_collate)
    trainer = L.Trainer(max_steps=iterations * module.optimizer_steps_per_batch, accelerator="cpu", logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=0, num_sanity_val_steps=0, callbacks=[Record()])
    trainer.fit(module, loader)
    assert trainer.global_step == iterations * module.optimizer_steps_per_batch
    return outs


def test_paper_generator_size_and_shapes():
    net = SRNet(nf=PAPER["nf"], nb=PAPER["nb"], gc=PAPER["gc"], scale=4)
    assert sum(p.numel() for p in net.parameters()) == 16_755_331  # ESRGAN's RRDBNet: 16,697,987
    assert sum(isinstance(m, torch.nn.ConvTranspose2d) for m in net.modules()) == 2
    with torch.no_grad():
        assert net(torch.rand(1, 3, 6, 7)).shape == (1, 3, 24, 28)
    assert SRNet(nf=8, nb=1, gc=4, scale=2)(torch.rand(2, 3, 5, 5)).shape == (2, 3, 10, 10)
    with pytest.raises(ValueError):
        SRNet(scale=3)


def test_edge_term_sees_edges_not_offsets(crch_items):
    hr = torch.stack([it["hr"] for it in crch_items])
    assert sobel_edge_loss(hr, hr) == 0
    assert sobel_edge_loss((hr + 0.1), hr) < 1e-12           # a constant shift has the same edges
    blurred = torch.nn.functional.avg_pool2d(hr, 3, 1, 1, count_include_pad=False)
    assert sobel_edge_loss(blurred, hr) > 1e-4               # blurring removes them
    plain, weighted = ReconstructionLoss(None), ReconstructionLoss(None, edge_weight=1.0)
    assert set(plain(blurred, hr)) == {"pix"} and set(weighted(blurred, hr)) == {"pix", "edge"}
    assert torch.isclose(plain(blurred, hr)["pix"], 1e-2 * (blurred - hr).abs().mean())


def test_builders_and_a_few_steps_reduce_j_recon(tmp_path, crch_items, stand_in_vgg_weights):
    with pytest.raises(MissingWeightsError):
        build_srnet(_ctx("paper", tmp_path))
    # paper: eta * L1 + Johnson et al.'s VGG16 relu2_2 squared L2 (mean), from the user's weights file
    paper, _ = build_srnet_w(_ctx("paper", stand_in_vgg_weights))
    per = paper.recon.perceptual
    assert per.vgg.ids == [8] and isinstance(per.crit, torch.nn.MSELoss) and len(per.vgg.features) == 9
    assert not per.random_init and paper.recon.eta == 1e-2 and paper.recon.edge_weight == 0.1
    assert PAPER["steps"] == 500_000 and PAPER["milestones"] == (100_000, 200_000, 300_000, 400_000)
    # smoke without weights: no VGG term; eta * L1 and the edge term scaled by 1/eta (same ratio)
    module, plan = build_srnet_w(_ctx("smoke", tmp_path))
    assert isinstance(module, SRNetModule) and module.recon.perceptual is None
    assert module.recon.eta == 1.0 and module.recon.edge_weight == pytest.approx(0.1 / 1e-2)
    assert "no pretrained VGG16" in plan.notes and plan.patch_size == SMOKE["patch"]
    # a few steps on one real batch reduce J_recon
    module.hparams.lr = 1e-3
    outs = _fit(module, crch_items, 5)
    assert outs[-1]["loss"] < outs[0]["loss"]


def test_restore_returns_the_nucleus_roi_mask(crch_items):
    module, _ = build_bicubic(_ctx("smoke", Path("unused")))
    with_nuclei = [it for it in crch_items if torch.isfinite(it["points"]).any()][:2]
    batch = torch.utils.data.default_collate(with_nuclei)
    sr, hr, mask, shown = module.restore(batch)
    assert mask.shape == (2, 1, 64, 64) and shown.shape == hr.shape == sr.shape
    assert torch.equal(mask, points_to_disc_mask(batch["points"], (64, 64)))
    b, i = torch.isfinite(batch["points"][..., 0]).nonzero()[0].tolist()   # some nucleus of the batch
    x, y = batch["points"][b, i].round().long().tolist()
    assert mask[b, 0, y, x] == 1 and 0 < mask.mean() < 1
    no_points = {k: v for k, v in batch.items() if k != "points"}
    assert module.restore(no_points)[2] is None
    # the CRCH convention scores the ROI squares too, through the shared test step
    conv = DATASETS["crchisto_x4"].eval
    assert conv.region and conv.crop == 4
    module.configure_evaluation(EvalConvention(conv.space, conv.crop, niqe=False, region=True))
    module.test_step(batch, 0)
    scores = {k: float(m.compute()) for k, m in module.test_metrics.items()}
    assert set(scores) >= {"psnr", "psnr_region", "ssim_region"} and scores["psnr_region"] != scores["psnr"]
    assert all(math.isfinite(v) for v in scores.values())
