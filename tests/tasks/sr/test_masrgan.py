import functools
from pathlib import Path

import lightning as L
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from benchmark.specs import BuildContext
from benchmark.weights import MissingWeightsError
from datamodules.sr_pairs import PairedSRDataset
from tasks.common.discriminators import PatchGANDiscriminator, SRGANDiscriminator, VGGStyleDiscriminator
from tasks.sr import masrgan
from tasks.sr.masrgan import MASRGANModule, PhaseHalving
from tasks.sr.masrnet import MASRNet


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _ctx(profile="smoke"):
    return BuildContext("sr", "pathimgsr_x4", profile, 4, 3, Path("/nonexistent-weights"))


BUILDERS = {"vgg16": masrgan.build_masrgan_d_vgg16, "vgg128": masrgan.build_masrgan_d_vgg128,
            "patchgan": masrgan.build_masrgan_d_patchgan}


@functools.lru_cache(maxsize=None)
def _smoke_build(kind: str):
    """Each variant built once per test session: a smoke build constructs a random VGG19 (seconds)."""
    torch.manual_seed(0)
    return BUILDERS[kind](_ctx())


def test_paper_profile_requires_vgg19():
    with pytest.raises(MissingWeightsError, match="vgg19"):
        masrgan.build_masrgan(_ctx("paper"))


def test_generator_loss_is_equation_7():
    module, plan = _smoke_build("patchgan")
    hp = module.hparams
    assert (hp.w_pix, hp.w_adv, hp.w_per, hp.gan, hp.loss) == (0.01, 0.005, 1.0, "vanilla", "l1")
    per = module.perceptual
    assert per.vgg.ids == [8] and isinstance(per.crit, nn.MSELoss)   # VGG19 relu2_2, Euclidean
    assert isinstance(module.discriminator, PatchGANDiscriminator)
    assert isinstance(module.net, MASRNet) and module.net.body[0].body[0].attention.spatial is not None
    assert "randomly initialised" in plan.notes


def test_paper_schedule_restarts_halving_for_the_gan_phase():
    assert (masrgan.PAPER["pretrain_steps"], masrgan.PAPER["gan_steps"]) == (20_000, 20_000)
    f = PhaseHalving(20_000, 2_000)
    assert [f(i) for i in (0, 1_999, 2_000, 19_999)] == [1.0, 1.0, 0.5, 0.5 ** 9]
    assert [f(i) for i in (20_000, 21_999, 22_000, 39_999)] == [1.0, 1.0, 0.5, 0.5 ** 9]
    module = MASRGANModule(nn.Conv2d(3, 3, 1), nn.Conv2d(3, 1, 1), 1, None, pretrain_steps=4, halve_every=2)
    opts, scheds = module.configure_optimizers()
    lrs = []
    for _ in range(8):
        lrs.append([o.param_groups[0]["lr"] for o in opts])
        for s in scheds:
            s.step()
    assert [g for g, d in lrs] == [d for g, d in lrs] == [1e-4, 1e-4, 5e-5, 5e-5] * 2


def test_discriminator_sizes():
    # CycleGAN/pix2pix's 70x70 PatchGAN, n_layers=3, 3 input channels: 2.765 M in the official logs
    assert _count(PatchGANDiscriminator(3, 64, 3)) == 2_765_633
    # SRGAN (Ledig et al. Fig. 4) at its 96px input: convs + Dense(512*6*6 -> 1024) + Dense(1024 -> 1)
    srgan = SRGANDiscriminator(3, 64, input_size=96)
    assert _count(srgan.classifier) == 512 * 36 * 1024 + 1024 + 1024 + 1
    convs = [m for m in srgan.features if isinstance(m, nn.Conv2d)]
    assert [(c.out_channels, c.stride[0]) for c in convs] == [(64, 1), (64, 2), (128, 1), (128, 2), (256, 1),
                                                              (256, 2), (512, 1), (512, 2)]
    assert _count(srgan) == 23_563_649
    kinds = {"patchgan": PatchGANDiscriminator, "vgg128": VGGStyleDiscriminator, "vgg16": SRGANDiscriminator}
    for kind, cls in kinds.items():
        assert isinstance(masrgan.build_discriminator(kind, 3, 64, 128), cls)
    with pytest.raises(ValueError):
        masrgan.build_discriminator("unet", 3, 64, 128)


def test_srgan_discriminator_outputs_a_logit_per_image():
    d = SRGANDiscriminator(3, 8, input_size=32)
    assert d(torch.rand(3, 3, 32, 32)).shape == (3, 1)
    with pytest.raises(ValueError):
        d(torch.rand(1, 3, 64, 64))
    with pytest.raises(ValueError):
        SRGANDiscriminator(input_size=100)


class _EndOfPretraining(L.Callback):
    """Snapshots the discriminator and the generator's L1 on a fixed batch when the L1 phase ends."""

    def __init__(self, batch):
        self.batch, self.d_params, self.l1 = batch, None, None

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if self.l1 is None and module.iteration == module.hparams.pretrain_steps:
            self.d_params = [p.detach().clone() for p in module.discriminator.parameters()]
            self.l1 = _l1(module, self.batch)


def _l1(module, batch) -> float:
    with torch.no_grad():
        return torch.nn.functional.l1_loss(module(batch["lr"]), batch["hr"]).item()


@pytest.mark.parametrize("kind", list(BUILDERS))
def test_smoke_gan_training_on_real_images(kind, shared_data):
    module, plan = _smoke_build(kind)
    torch.manual_seed(0)
    files = sorted((shared_data / "kather" / "CRC-VAL-HE-7K").glob("*/*.png"))[::8][:4]
    data = PairedSRDataset(files, scale=4, patch=plan.patch_size)
    batch = next(iter(DataLoader(data, batch_size=4)))
    d_initial = [p.detach().clone() for p in module.discriminator.parameters()]
    before = _l1(module, batch)
    snap = _EndOfPretraining(batch)
    trainer = L.Trainer(max_steps=plan.max_steps * module.optimizer_steps_per_batch, accelerator="cpu",
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0, callbacks=[snap])
    trainer.fit(module, train_dataloaders=DataLoader(data, batch_size=plan.batch_size))
    assert module.iteration == plan.max_steps
    # L1 phase: the generator improves on the pixel loss, the discriminator does not move
    assert snap.l1 is not None and snap.l1 < before
    assert all(torch.equal(a, b) for a, b in zip(d_initial, snap.d_params))
    # GAN phase: every term of Eq. 7 is logged and finite, and the discriminator learns
    logged = trainer.callback_metrics
    assert all(torch.isfinite(logged[k]) for k in ("train/pix", "train/per", "train/adv", "train/d"))
    assert any(not torch.equal(a, b) for a, b in zip(snap.d_params, module.discriminator.parameters()))


def test_registered_with_the_reported_method_keys():
    import yaml

    from tasks.sr.registry import METHODS

    reported = yaml.safe_load((Path(__file__).resolve().parents[3] / "leaderboards" / "reported.yaml").read_text())
    ours = {k: v for k, v in METHODS.items() if k.startswith(("masrnet", "masrgan"))}
    rows = {e["method"] for e in reported["entries"] if e["paper"] == "masrgan" and e["method"] in ours}
    assert rows == set(ours) and len(ours) == 9
    for key, spec in ours.items():
        assert spec.paper == "masrgan" and spec.datasets == ("pathimgsr_x4",)
        assert spec.needs == (("vgg19",) if "masrgan" in key else ())
        assert spec.kind == ("proposed" if key in ("masrnet", "masrgan") else "ablation")
