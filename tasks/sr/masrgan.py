"""MASRGAN (Chen, Wang, Jia, Ye 2023): MASRNet generator + PatchGAN discriminator, and Table 3's variants.

Paper settings (Sec. 3.3-3.4, 4.2, 4.4):

- generator: MASRNet with M = 10 ROBs of K = 20 RMABs (see :mod:`tasks.sr.masrnet`);
- discriminator: PatchGAN (Isola et al. 2017; a logit per local region, averaged by the loss);
  Table 3 swaps in "VGG16" (SRGAN's discriminator, Ledig et al. 2017) and "VGG128" (the ESRGAN /
  BasicSR VGG-style discriminator for 128x128 inputs), both judging the whole patch;
- generator loss L_G = alpha L_mae + beta L_adv + L_per (Eq. 7), alpha = 0.01, beta = 0.005;
  L_mae = L1 (Eq. 4); L_adv = -log D(G(x)) (Eq. 6: the non-saturating "vanilla" GAN, the
  discriminator on the matching binary cross-entropy); L_per = Euclidean (MSE) distance of VGG19
  features at "the second convolution (after activation) before the second max-pooling", i.e.
  relu2_2 (Eq. 5), weight 1;
- Adam lr 1e-4 (default betas 0.9/0.999) for G and D, halved every 2,000 iterations; batch 16;
  no data augmentation.

Where the paper is silent we follow the field: like SRGAN and ESRGAN, the GAN starts from the
L1-trained generator, here MASRNet's whole schedule (20,000 iterations, so MASRGAN's generator is
MASRNet before adversarial training, as Sec. 1 describes the pair); the halving schedule restarts
at lr 1e-4 when the GAN phase begins and runs 20,000 GAN iterations; HR patch 128 (VGG128's input);
discriminators at their papers' widths (64 base channels; PatchGAN with 3 stride layers, the 70x70
receptive field).  Discriminator sizes at patch 128: PatchGAN 2,765,633 parameters, VGG128
14,499,401, SRGAN "VGG16" 38,243,713 (23,563,649 at its own 96px input).
"""
from __future__ import annotations

from typing import Literal

from torch import nn
from torch.optim import Adam
from torch.optim.lr_scheduler import LambdaLR

from benchmark.specs import BuildContext, TrainPlan
from tasks.common.discriminators import PatchGANDiscriminator, SRGANDiscriminator, VGGStyleDiscriminator
from tasks.common.losses import PerceptualLoss
from tasks.sr import masrnet
from tasks.sr.module import SRGANModule

Discriminator = Literal["patchgan", "vgg128", "vgg16"]
DISCRIMINATORS: tuple[str, ...] = ("patchgan", "vgg128", "vgg16")


class PhaseHalving:
    """lr factor 0.5 ** (iterations since the phase began // ``every``); phases: L1, then GAN."""

    def __init__(self, pretrain_steps: int, every: int):
        self.pretrain_steps, self.every = pretrain_steps, every

    def __call__(self, iteration: int) -> float:
        start = self.pretrain_steps if iteration >= self.pretrain_steps else 0
        return 0.5 ** ((iteration - start) // self.every)


class MASRGANModule(SRGANModule):
    """SRGANModule with the paper's step halving, restarted at lr 1e-4 when the GAN phase begins.

    (MultiStepLR cannot restart: a single schedule over both phases would start the GAN at 2e-7.)
    """

    def __init__(self, net: nn.Module, discriminator: nn.Module, scale: int, perceptual: PerceptualLoss,
                 pretrain_steps: int, halve_every: int = 2_000, w_pix: float = 0.01, w_per: float = 1.0,
                 w_adv: float = 0.005, lr: float = 1e-4):
        super().__init__(net, discriminator, scale, perceptual, w_pix=w_pix, w_per=w_per, w_adv=w_adv,
                         gan="vanilla", pretrain_steps=pretrain_steps, lr=lr, betas=(0.9, 0.999), loss="l1")

    def configure_optimizers(self):
        hp = self.hparams
        opt_g = Adam(self.net.parameters(), lr=hp.lr, betas=tuple(hp.betas))
        opt_d = Adam(self.discriminator.parameters(), lr=hp.lr, betas=tuple(hp.betas))
        schedule = PhaseHalving(hp.pretrain_steps, hp.halve_every)
        return [opt_g, opt_d], [LambdaLR(opt_g, schedule), LambdaLR(opt_d, schedule)]


PAPER = dict(pretrain_steps=masrnet.PAPER["steps"], gan_steps=20_000, d_nf=64)
SMOKE = dict(pretrain_steps=60, gan_steps=5, d_nf=8)


def build_discriminator(kind: Discriminator, in_ch: int, nf: int, patch: int) -> nn.Module:
    """Table 3's discriminators: 'patchgan' (default), 'vgg128' (ESRGAN), 'vgg16' (SRGAN)."""
    if kind == "patchgan":
        return PatchGANDiscriminator(in_ch, nf, n_layers=3)
    if kind == "vgg128":
        return VGGStyleDiscriminator(in_ch, nf, input_size=patch)
    if kind == "vgg16":
        return SRGANDiscriminator(in_ch, nf, input_size=patch)
    raise ValueError(f"discriminator {kind!r} not in {DISCRIMINATORS}")


def build_masrgan(ctx: BuildContext, discriminator: Discriminator = "patchgan") -> tuple[MASRGANModule, TrainPlan]:
    g_cfg = masrnet.config(ctx)
    cfg = PAPER if ctx.profile == "paper" else SMOKE
    per = PerceptualLoss(("relu2_2",), criterion="mse", arch="vgg19", weights_dir=ctx.weights_dir,
                         allow_random=ctx.profile == "smoke")
    disc = build_discriminator(discriminator, ctx.in_channels, cfg["d_nf"], g_cfg["patch"])
    module = MASRGANModule(masrnet.build_network(ctx, "mix"), disc, ctx.scale, per,
                           pretrain_steps=cfg["pretrain_steps"], halve_every=g_cfg["halve_every"],
                           lr=g_cfg["lr"])
    notes = "VGG19 randomly initialised (smoke)" if per.random_init else ""
    return module, TrainPlan(max_steps=cfg["pretrain_steps"] + cfg["gan_steps"], batch_size=g_cfg["batch"],
                             patch_size=g_cfg["patch"], notes=notes)


def build_masrgan_d_vgg16(ctx: BuildContext) -> tuple[MASRGANModule, TrainPlan]:
    """Table 3, MASRGAN-VGG16: SRGAN's discriminator."""
    return build_masrgan(ctx, "vgg16")


def build_masrgan_d_vgg128(ctx: BuildContext) -> tuple[MASRGANModule, TrainPlan]:
    """Table 3, MASRGAN-VGG128: ESRGAN's VGG-style discriminator."""
    return build_masrgan(ctx, "vgg128")


def build_masrgan_d_patchgan(ctx: BuildContext) -> tuple[MASRGANModule, TrainPlan]:
    """Table 3, MASRGAN-PatchGAN: the default MASRGAN."""
    return build_masrgan(ctx, "patchgan")
