"""rVTT T1 / T1+T2: relativistic pair testers, ROI pairs for T2, the four-stage manual optimisation."""
from pathlib import Path

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, default_collate

from benchmark.specs import BuildContext
from benchmark.weights import MissingWeightsError
from datamodules.crchisto import CRCHistoSRDataModule
from tasks.common.discriminators import RelativisticTester, VGGStyleDiscriminator
from tasks.common.roi import ROI_SIZE, crop_rois, sample_rois
from tasks.sr.rvtt import PAPER, RVTTModule, adversarial_loss, build_rvtt_t1, build_rvtt_t1_t2, rvtt_loss, build_tester
from tasks.sr.srnet import ReconstructionLoss, SRNet


def _ctx(profile: str, weights: Path) -> BuildContext:
    return BuildContext(task="sr", dataset="crchisto_x4", profile=profile, scale=4, in_channels=3, weights_dir=weights)


@pytest.fixture(scope="module")
def crch_items(shared_data):
    """Four real 64 px CRCH training patches that each hold at least one nucleus a 32 px ROI fits around."""
    torch.manual_seed(0)
    dm = CRCHistoSRDataModule(root=shared_data, scale=4, patch=64, batch_size=4, max_points=1200)
    dm.setup("fit")
    items = (dm.train_set[i] for i in range(len(dm.train_set)))
    items = [it for it in items if len(sample_rois(it["points"][None], (64, 64), ROI_SIZE))][:4]
    assert len(items) == 4
    return items


def _fit(module, items, iterations: int) -> list[dict]:
    outs = []

    class Record(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            outs.append({k: float(v) for k, v in outputs.items()})

    loader = DataLoader([items] * iterations, batch_size=None, collate_fn=default_collate)
    trainer = L.Trainer(max_steps=iterations * module.optimizer_steps_per_batch, accelerator="cpu", logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=0, num_sanity_val_steps=0, callbacks=[Record()])
    trainer.fit(module, loader)
    assert trainer.global_step == iterations * module.optimizer_steps_per_batch
    return outs


def test_tester_is_relativistic_on_a_single_image_critic():
    # T1 / T2 critics: ESRGAN's VGG128 (3 input channels) at 128 px and its 32 px form
    assert sum(p.numel() for p in build_tester(3, 64, 128).parameters()) == 14_499_401
    assert sum(p.numel() for p in build_tester(3, 64, ROI_SIZE).parameters()) == 2_158_153
    t = build_tester(3, 8, 32).eval()
    a, b = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    logit = t(a, b)
    assert logit.shape == (2,)
    assert torch.allclose(logit, t.critic(a).view(-1) - t.critic(b).view(-1), atol=1e-6)   # C(a) - C(b)
    assert torch.allclose(torch.sigmoid(t(b, a)), 1 - torch.sigmoid(logit), atol=1e-6)    # T(b,a) = 1 - T(a,b)
    with pytest.raises(ValueError):
        t(a, b[:, :, :16])


def test_tester_loss_is_equation_2_by_hand():
    t = RelativisticTester(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(1))).eval()
    real, fake = torch.rand(3, 3, 4, 4), torch.rand(3, 3, 4, 4)
    t(real, fake)
    c_r, c_f = t.critic(real).view(-1), t.critic(fake).view(-1)
    d = torch.sigmoid(c_r - c_f)
    expected = -torch.log(d).mean() - torch.log(1 - torch.sigmoid(c_f - c_r)).mean()
    assert torch.allclose(rvtt_loss(t, real, fake), expected, atol=1e-6)
    g_expected = -torch.log(torch.sigmoid(c_f - c_r)).mean() - torch.log(1 - d).mean()
    assert torch.allclose(adversarial_loss(t, real, fake), g_expected, atol=1e-6)


def test_four_stages_test_matching_pairs_and_reduce_recon_and_t1_losses(tmp_path, crch_items):
    with pytest.raises(MissingWeightsError):
        build_rvtt_t1_t2(_ctx("paper", tmp_path))
    module, plan = build_rvtt_t1_t2(_ctx("smoke", tmp_path))
    assert module.optimizer_steps_per_batch == 4 and "no pretrained VGG16" in plan.notes
    assert PAPER["steps"] == 500_000 and PAPER["w_adv"] == 5e-3 and module.hparams.roi_size == ROI_SIZE
    module.hparams.lr = 1e-3
    seen = {"t1": [], "t2": []}
    for name in seen:
        getattr(module, name).register_forward_hook(
            lambda m, args, out, name=name: seen[name].append([a.detach().clone() for a in args]))
    outs = _fit(module, crch_items, 4)

    batch = default_collate(crch_items)
    hr = batch["hr"]
    assert len(seen["t1"]) == 16 and len(seen["t2"]) == 16                # stages 2 and 4 x the two terms
    for first, second in seen["t1"]:                                        # whole-image pairs: (HR_i, SR_i)
        real_first = (first == hr).flatten(1).all(1)
        real_second = (second == hr).flatten(1).all(1)
        assert torch.equal(real_first, ~real_second) and real_first.all() != real_second.all()
    all_rois = sample_rois(batch["points"], (64, 64), ROI_SIZE, per_image=1000)
    nucleus_patches = crop_rois(hr, all_rois).flatten(1)                     # HR squares around every nucleus
    for first, second in seen["t2"]:
        is_real = [(p.flatten()[None] == nucleus_patches).all(1).any() for p in (*first, *second)]
        n = len(first)
        real_first, real_second = torch.tensor(is_real[:n]), torch.tensor(is_real[n:])
        assert n >= 4 and torch.equal(real_first, ~real_second)

    for loss in ("recon", "t1"):                                            # T2's: see the next test
        assert outs[-1][loss] < outs[0][loss], (loss, [o[loss] for o in outs])
    assert all(torch.isfinite(torch.tensor([o["t2"], o["adv"]])).all() for o in outs)


def test_t2_loss_and_g_adversarial_loss_fall_on_real_nucleus_pairs(crch_items):
    """Stage 3 alone reduces eq. 3 on real ROI pairs; stage 4 alone then reduces G's loss against that T2."""
    batch = default_collate(crch_items)
    rois = sample_rois(batch["points"], (64, 64), ROI_SIZE, per_image=1000)
    g, t2 = SRNet(nf=8, nb=1, gc=4, scale=4), build_tester(3, 8, ROI_SIZE)
    hr_patches = crop_rois(batch["hr"], rois)

    def measured(loss_fn) -> float:
        with torch.no_grad():
            return float(loss_fn(t2, hr_patches, crop_rois(g(batch["lr"]), rois)))

    def train(params, loss_fn) -> None:
        opt = torch.optim.Adam(params, 1e-3)
        for _ in range(5):
            opt.zero_grad()
            loss_fn(t2, hr_patches, crop_rois(g(batch["lr"]), rois)).backward()
            opt.step()

    t2.eval()  # BN on running statistics, so the before/after numbers compare the same function
    before = measured(rvtt_loss)
    train(t2.parameters(), rvtt_loss)
    assert measured(rvtt_loss) < before
    t2.requires_grad_(False)
    before = measured(adversarial_loss)
    train(g.parameters(), adversarial_loss)
    assert measured(adversarial_loss) < before


def test_t1_only_takes_three_optimizer_steps_per_batch(tmp_path, crch_items):
    with pytest.raises(MissingWeightsError):
        build_rvtt_t1(_ctx("paper", tmp_path))
    module = RVTTModule(SRNet(nf=8, nb=1, gc=4, scale=4), 4, ReconstructionLoss(None), build_tester(3, 8, 64))
    assert module.optimizer_steps_per_batch == 3 and len(module.configure_optimizers()[0]) == 2  # G, T1
    outs = _fit(module, crch_items, 2)
    assert set(outs[0]) == {"recon", "t1", "adv"}


def test_registered_as_the_table_1_columns():
    from tasks.sr.registry import METHODS
    rows = {k: (m.label, m.kind, m.paper, m.datasets, m.needs) for k, m in METHODS.items()
            if k in ("srnet", "srnet_w", "rvtt_t1", "rvtt_t1_t2")}
    crch = (("crchisto_x4",), ("vgg16", "nrqm"))
    assert rows == {"srnet": ("SRNet", "baseline", "rvtt", *crch), "srnet_w": ("SRNet-w", "baseline", "rvtt", *crch),
                    "rvtt_t1": ("T1", "proposed", "rvtt", *crch), "rvtt_t1_t2": ("T1+T2", "proposed", "rvtt", *crch)}
    assert {"crchisto_x4"} <= set(METHODS["nearest"].datasets) & set(METHODS["bicubic"].datasets)
