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
from tasks.sr.masrgan import MASRGANModule
from tasks.sr.protocol import MASRGAN_PAPER, MASRGAN_SMOKE
from tasks.sr.masrnet import MASRNet


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _ctx(profile="smoke", init=None):
    return BuildContext("sr", "pathimgsr_x4", profile, 4, 3, Path("/nonexistent-weights"), init_checkpoint=init)


@functools.lru_cache(maxsize=None)
def _masrnet_checkpoint() -> Path:
    """A runner-style final checkpoint of a smoke MASRNet (generator under "net.")."""
    import tempfile
    torch.manual_seed(1)
    net = masrgan.masrnet.build_network(_ctx(), "mix")
    path = Path(tempfile.mkdtemp()) / "last.ckpt"
    torch.save({"state_dict": {f"net.{k}": v for k, v in net.state_dict().items()}, "global_step": 7}, path)
    return path


BUILDERS = {"vgg16": masrgan.build_masrgan_d_vgg16, "vgg128": masrgan.build_masrgan_d_vgg128,
            "patchgan": masrgan.build_masrgan_d_patchgan}


@functools.lru_cache(maxsize=None)
def _smoke_build(kind: str):
    """Each variant built once per test session: a smoke build constructs a random VGG19 (seconds)."""
    torch.manual_seed(0)
    return BUILDERS[kind](_ctx(init=_masrnet_checkpoint()))


def test_paper_profile_requires_vgg19():
    with pytest.raises(MissingWeightsError, match="vgg19"):
        masrgan.build_masrgan(_ctx("paper"))


def test_generator_loss_is_equation_7(stand_in_vgg_weights):
    ctx = BuildContext("sr", "pathimgsr_x4", "smoke", 4, 3, stand_in_vgg_weights, init_checkpoint=_masrnet_checkpoint())
    module, plan = BUILDERS["patchgan"](ctx)
    hp = module.hparams
    assert (hp.w_pix, hp.w_adv, hp.w_per, hp.gan, hp.loss) == (0.01, 0.005, 1.0, "vanilla", "l1")
    per = module.perceptual
    assert per.vgg.ids == [8] and isinstance(per.crit, nn.MSELoss)   # VGG19 relu2_2, Euclidean
    assert isinstance(module.discriminator, PatchGANDiscriminator)
    assert isinstance(module.net, MASRNet) and module.net.body[0].body[0].attention.spatial is not None
    # smoke without the user's VGG19: no perceptual term, its weight on the pixel term, said in the notes
    module, plan = _smoke_build("patchgan")
    assert module.perceptual is None and (module.hparams.w_pix, module.hparams.w_per) == (1.01, 0.0)
    assert "no pretrained VGG19" in plan.notes


def test_starts_from_the_trained_masrnet_generator():
    module, plan = _smoke_build("vgg128")
    saved = torch.load(_masrnet_checkpoint())["state_dict"]
    assert all(torch.equal(v, saved[f"net.{k}"]) for k, v in module.net.state_dict().items())
    assert module.hparams.pretrain_steps == 0 and plan.max_steps == MASRGAN_SMOKE.gan_steps
    assert "pre-trained in this run" not in plan.notes


def test_without_a_checkpoint_pretrains_masrnet_in_the_run_and_says_so():
    module, plan = masrgan.build_masrgan(_ctx())
    assert module.hparams.pretrain_steps == MASRGAN_SMOKE.psnr_steps
    assert plan.max_steps == MASRGAN_SMOKE.psnr_steps + MASRGAN_SMOKE.gan_steps
    assert "MASRNet generator pre-trained in this run" in plan.notes


def test_a_checkpoint_of_another_generator_is_refused(tmp_path):
    torch.save({"state_dict": {"net.head.weight": torch.zeros(1)}}, tmp_path / "x.ckpt")
    with pytest.raises(ValueError, match="does not fit"):
        masrgan.build_masrgan(_ctx(init=tmp_path / "x.ckpt"))
    torch.save({"state_dict": {"discriminator.w": torch.zeros(1)}}, tmp_path / "y.ckpt")
    with pytest.raises(ValueError, match="no 'net.\\*' weights"):
        masrgan.build_masrgan(_ctx(init=tmp_path / "y.ckpt"))


def test_paper_schedule_restarts_halving_for_the_gan_phase():
    assert (MASRGAN_PAPER.psnr_steps, MASRGAN_PAPER.gan_steps, MASRGAN_PAPER.halve_every) == (20_000, 20_000, 2_000)
    for pretrain, expected in ((4, [1e-4, 1e-4, 5e-5, 5e-5] * 2), (0, [1e-4, 1e-4, 5e-5, 5e-5])):
        module = MASRGANModule(nn.Conv2d(3, 3, 1), nn.Conv2d(3, 1, 1), 1, None, pretrain_steps=pretrain,
                               halve_every=2, gan_steps=4)
        opts, scheds = module.configure_optimizers()
        lrs = []
        for _ in range(pretrain + 4):
            lrs.append([o.param_groups[0]["lr"] for o in opts])
            for s in scheds:
                s.step()
        assert [g for g, d in lrs] == [d for g, d in lrs]
        assert [round(g, 12) for g, d in lrs] == expected


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


def _l1(module, batch) -> float:
    with torch.no_grad():
        return torch.nn.functional.l1_loss(module(batch["lr"]).clamp(0, 1), batch["hr"]).item()


@pytest.mark.parametrize("kind", list(BUILDERS))
def test_smoke_gan_training_on_real_images(kind, shared_data):
    """The GAN phase from the MASRNet generator: every term of Eq. 7 finite, D learns, G moves but
    does not collapse (its L1 stays within 50 % of the starting generator's)."""
    module, plan = _smoke_build(kind)
    torch.manual_seed(0)
    files = sorted((shared_data / "kather" / "CRC-VAL-HE-7K").glob("*/*.png"))[::8][:4]
    data = PairedSRDataset(files, scale=4, patch=plan.patch_size)
    batch = next(iter(DataLoader(data, batch_size=4)))
    d_initial = [p.detach().clone() for p in module.discriminator.parameters()]
    g_initial = [p.detach().clone() for p in module.net.parameters()]
    before = _l1(module, batch)
    trainer = L.Trainer(max_steps=plan.max_steps * module.optimizer_steps_per_batch, accelerator="cpu",
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(module, train_dataloaders=DataLoader(data, batch_size=plan.batch_size))
    assert module.iteration == plan.max_steps
    logged = trainer.callback_metrics
    # smoke without VGG19 weights: the perceptual term is off (its weight on the pixel term)
    assert "train/per" not in logged
    assert all(torch.isfinite(logged[k]) for k in ("train/pix", "train/adv", "train/d"))
    assert any(not torch.equal(a, b) for a, b in zip(d_initial, module.discriminator.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(g_initial, module.net.parameters()))
    assert _l1(module, batch) < 1.5 * before


def test_registered_with_the_reported_method_keys():
    import yaml

    from tasks.sr.registry import METHODS

    reported = yaml.safe_load((Path(__file__).resolve().parents[3] / "leaderboards" / "reported.yaml").read_text())
    ours = {k: v for k, v in METHODS.items() if k.startswith(("masrnet", "masrgan"))}
    rows = {e["method"] for e in reported["entries"] if e["paper"] == "masrgan" and e["method"] in ours}
    assert rows == set(ours) and len(ours) == 9
    for key, spec in ours.items():
        assert spec.paper == "masrgan" and spec.datasets == ("pathimgsr_x4",)
        assert spec.needs == (("vgg19", "nrqm") if "masrgan" in key else ("nrqm",))
        assert spec.kind == ("proposed" if key in ("masrnet", "masrgan") else "ablation")
