from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from benchmark.specs import BuildContext
from datamodules.imresize import imresize
from datamodules.sr_pairs import PairedSRDataset
from tasks.common.discriminators import SRGANDiscriminator
from tasks.sr import qegan
from tasks.sr.qegan import MultilevelGenerator


def _ctx(profile="smoke"):
    return BuildContext("sr", "pathimgsr_x4", profile, 4, 3, Path("/nonexistent-weights"))


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_levels_raise_quality_by_x2_each():
    torch.manual_seed(0)
    net = MultilevelGenerator(nf=8, n_blocks=1, scale=4)
    outs = net.forward_levels(torch.rand(2, 3, 8, 10))
    assert [o.shape for o in outs] == [(2, 3, 16, 20), (2, 3, 32, 40)]
    net.eval()
    with torch.no_grad():
        assert net(torch.rand(1, 3, 8, 8)).shape == (1, 3, 32, 32)
    assert len(MultilevelGenerator(scale=8).levels) == 3


def test_paper_build():
    module, plan = qegan.build_qegan(_ctx("paper"))       # no VGG: the paper profile needs no weights
    # Table 1: MASRGAN's protocol, 20,000 pixel-loss iterations then 20,000 GAN iterations
    assert (plan.max_steps, plan.batch_size, plan.patch_size) == (40_000, 16, 128)
    hp = module.hparams
    assert (hp.w_pix, hp.w_ssim, hp.w_adv, hp.gan, hp.pretrain_steps) == (1.0, 1.0, 1e-3, "vanilla", 20_000)
    assert tuple(hp.milestones)[:3] == (2_000, 4_000, 6_000) and hp.gamma == 0.5  # halved every 2,000
    discs = module.discriminator
    assert [type(d) for d in discs] == [SRGANDiscriminator] * 2 and [d.input_size for d in discs] == [64, 128]
    # two x2 SRResNet levels of 16 blocks, 64 features (SRGAN's x4 SRResNet has 1.55 M in one chain)
    level = (64 * 3 * 81 + 64 + 64) + 16 * (2 * (64 * 64 * 9 + 64) + 2 * 128 + 64) + (64 * 64 * 9 + 64 + 128) \
        + (64 * 256 * 9 + 256 + 64) + (64 * 3 * 81 + 3)
    assert _count(module.net) == 2 * level


def test_level_targets_are_bicubic_downsamples_of_the_hr():
    module, _ = qegan.build_qegan(_ctx())
    hr = torch.rand(2, 3, 32, 32)
    mq, hq = module.level_targets(hr)
    torch.testing.assert_close(mq, imresize(hr, 0.5).clamp(0, 1))
    assert hq is hr


class _EndOfPretraining(L.Callback):
    def __init__(self):
        self.d_params = None

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if self.d_params is None and module.iteration == module.hparams.pretrain_steps:
            self.d_params = [p.detach().clone() for p in module.discriminator.parameters()]


def test_smoke_gan_training_on_real_images(shared_data):
    torch.manual_seed(0)
    module, plan = qegan.build_qegan(_ctx())
    module.hparams.pretrain_steps = 20                  # the phases, shortened
    steps = 20 + 6
    files = sorted((shared_data / "kather" / "CRC-VAL-HE-7K").glob("*/*.png"))[1::8][:4]
    data = PairedSRDataset(files, scale=4, patch=plan.patch_size)
    batch = next(iter(DataLoader(data, batch_size=4)))

    def l1():
        with torch.no_grad():
            return F.l1_loss(module(batch["lr"]), batch["hr"]).item()

    before = l1()
    d_initial = [p.detach().clone() for p in module.discriminator.parameters()]
    snap = _EndOfPretraining()
    trainer = L.Trainer(max_steps=steps * module.optimizer_steps_per_batch, accelerator="cpu",
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0, callbacks=[snap])
    trainer.fit(module, train_dataloaders=DataLoader(data, batch_size=plan.batch_size))
    assert module.iteration == steps
    # pixel pre-training leaves both discriminators untouched; the GAN phase trains them
    assert all(torch.equal(a, b) for a, b in zip(d_initial, snap.d_params))
    assert any(not torch.equal(a, b) for a, b in zip(snap.d_params, module.discriminator.parameters()))
    logged = trainer.callback_metrics
    assert all(torch.isfinite(logged[k]) for k in ("train/pix", "train/ssim", "train/adv", "train/d"))
    assert l1() < before


def test_registered():
    from tasks.sr.registry import METHODS

    spec = METHODS["qegan"]
    assert (spec.label, spec.kind, spec.paper, spec.table) == ("QEGAN", "baseline", "masrgan", "Table 1")
    assert spec.needs == ("nrqm",)  # PI as the paper reports it
    assert spec.fidelity == "reconstructed"  # from QEGAN's abstract only
    assert spec.datasets == ("pathimgsr_x4",) and spec.build is qegan.build_qegan
