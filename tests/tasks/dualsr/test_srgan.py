from pathlib import Path

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from benchmark.specs import BuildContext
from benchmark.weights import MissingWeightsError
from datamodules.kather import KatherSRDataModule
from tasks.common.discriminators import SRGANDiscriminator
from tasks.common.losses import d_loss
from tasks.dualsr import srgan
from tasks.dualsr.srgan import SRResNet


def _ctx(scale, profile="smoke", weights=Path("/nonexistent-weights")):
    return BuildContext("dualsr", f"kather_x{scale}", profile, scale, 3, weights)


def _count(m):
    return sum(p.numel() for p in m.parameters())


def test_generator_parameter_counts():
    head, tail = 3 * 64 * 81 + 64 + 1, 64 * 3 * 81 + 3
    block = 2 * (64 * 64 * 9 + 64) + 2 * 2 * 64 + 1          # 2 convs, 2 BN, one single-slope PReLU
    trunk = 64 * 64 * 9 + 64 + 2 * 64
    up = 64 * 256 * 9 + 256 + 1
    assert _count(SRResNet(4)) == head + 16 * block + trunk + 2 * up + tail == 1_549_462
    assert _count(SRResNet(2)) == head + 16 * block + trunk + up + tail == 1_401_749


@pytest.mark.parametrize("scale", [2, 4])
def test_shapes(scale):
    net = SRResNet(scale, nf=8, n_blocks=2)
    assert net(torch.rand(2, 3, 10, 12)).shape == (2, 3, 10 * scale, 12 * scale)


def test_paper_build_needs_the_vgg19_weights_and_smoke_without_them_trains_on_pixels():
    with pytest.raises(MissingWeightsError, match="vgg19"):
        srgan.build_srgan(_ctx(4, "paper"))
    module, plan = srgan.build_srgan(_ctx(4))
    assert plan.notes.startswith("smoke: no pretrained VGG19, perceptual term off")
    assert module.perceptual is None and (module.hparams.w_pix, module.hparams.w_per) == (1.0, 0.0)
    # smoke: the short GAN phase starts at lr x gan_lr_scale, from the SRResNet the pixel phase trained
    assert tuple(module.hparams.milestones) == (srgan.SMOKE["pretrain"],) == (module.hparams.pretrain_steps,)
    assert module.hparams.gamma == srgan.SMOKE["gan_lr_scale"]
    assert isinstance(module.discriminator, SRGANDiscriminator) and module.discriminator.input_size == plan.patch_size


def test_with_vgg19_weights_the_content_loss_is_vgg54(stand_in_vgg_weights):
    module, _ = srgan.build_srgan(_ctx(4, "paper", stand_in_vgg_weights))
    hp = module.hparams
    assert (hp.w_pix, hp.w_per, hp.w_adv, hp.gan, hp.loss) == (0.0, 1.0, 1e-3, "vanilla", "mse")
    assert module.perceptual.weights == [srgan.VGG54_SCALE ** 2] and module.perceptual.vgg.ids == [35]
    assert tuple(hp.milestones) == (srgan.PAPER["pretrain"] + (srgan.PAPER["steps"] - srgan.PAPER["pretrain"]) // 2,)


def test_paper_schedule_fits_the_100_epoch_budget():
    cfg = srgan.PAPER
    assert cfg["steps"] == 100 * 16_000 // 16 and cfg["pretrain"] == cfg["steps"] * 10 // 12 == 83_333


@pytest.fixture(scope="module")
def real_batch():
    dm = KatherSRDataModule(release="CRC-VAL-HE-7K", scale=4, n_patches=None, patch=srgan.SMOKE["patch"][4],
                            batch_size=4, split=(0.5, 0.25, 0.25))
    dm.setup("fit")
    return next(iter(dm.train_dataloader()))


def _descend(loss_fn, params, steps=8, lr=1e-3):
    opt = torch.optim.Adam(params, lr=lr)
    losses = []
    for _ in range(steps):
        loss = loss_fn()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_each_loss_decreases_on_real_patches(real_batch):
    torch.manual_seed(0)
    module, _ = srgan.build_srgan(_ctx(4))
    lr, hr = real_batch["lr"], real_batch["hr"]
    g_params, d_params = list(module.net.parameters()), list(module.discriminator.parameters())
    pix = _descend(lambda: module.pixel(module(lr), hr), g_params)
    assert pix[-1] < 0.7 * pix[0]
    fake = module(lr).detach()
    d = _descend(lambda: d_loss(module.discriminator(hr), module.discriminator(fake), "vanilla"), d_params)
    assert d[-1] < d[0]
    module.discriminator.requires_grad_(False)
    g = _descend(lambda: sum(module.generator_loss(module(lr), hr).values()), g_params)
    assert g[-1] < g[0]


def test_pretraining_then_gan_through_the_manual_gan_steps(real_batch):
    """The first ``pretrain_steps`` iterations move G only; the GAN iterations move D too."""
    torch.manual_seed(0)
    module, _ = srgan.build_srgan(_ctx(4))
    module.hparams.pretrain_steps = 2
    d0 = [p.detach().clone() for p in module.discriminator.parameters()]
    seen = []

    class _Spy(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            seen.append(any(not torch.equal(a, b) for a, b in zip(d0, pl_module.discriminator.parameters())))

    trainer = L.Trainer(max_steps=2 * 3, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[_Spy()])
    trainer.fit(module, train_dataloaders=DataLoader([real_batch] * 3, batch_size=None))   # 3 iterations
    assert seen == [False, False, True]
