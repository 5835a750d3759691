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
  no data augmentation (the Table protocol, tasks/sr/protocol.py).

Where the paper is silent we follow the field: like SRGAN and ESRGAN, the GAN starts from the
L1-trained generator, here the trained MASRNet itself (MethodSpec.init_from = "masrnet": one
pre-training shared by MASRGAN and its Table 3 variants, so MASRGAN's generator is MASRNet before
adversarial training, as Sec. 1 describes the pair); the halving starts again at lr 1e-4 and runs
20,000 GAN iterations; HR patch 128 (VGG128's input);
discriminators at their papers' widths (64 base channels; PatchGAN with 3 stride layers, the 70x70
receptive field).  Discriminator sizes at patch 128: PatchGAN 2,765,633 parameters, VGG128
14,499,401, SRGAN "VGG16" 38,243,713 (23,563,649 at its own 96px input).
"""
from __future__ import annotations

from typing import Literal

from torch import nn

from benchmark.specs import BuildContext, TrainPlan
from tasks.common.discriminators import PatchGANDiscriminator, SRGANDiscriminator, VGGStyleDiscriminator
from tasks.common.losses import PerceptualLoss, perceptual_or_pixel
from tasks.sr import masrnet
from tasks.sr.module import SRGANModule, load_generator
from tasks.sr.protocol import halving_milestones, masrgan_protocol

Discriminator = Literal["patchgan", "vgg128", "vgg16"]
DISCRIMINATORS: tuple[str, ...] = ("patchgan", "vgg128", "vgg16")


class MASRGANModule(SRGANModule):
    """SRGANModule with MASRGAN's losses (Eq. 4-7) and the Table protocol's step halving.

    From a trained MASRNet (``pretrain_steps`` 0) the GAN phase halves from ``gan_lr`` (the Table
    protocol's 1e-4) every ``halve_every`` iterations; with ``pretrain_steps`` > 0 the generator is
    first trained on L1 at ``lr`` in this run and the halving restarts at ``gan_lr`` when the GAN
    phase begins.
    """

    def __init__(self, net: nn.Module, discriminator: nn.Module, scale: int, perceptual: PerceptualLoss | None,
                 pretrain_steps: int, halve_every: int = 2_000, gan_steps: int = 20_000, w_pix: float = 0.01,
                 w_per: float = 1.0, w_adv: float = 0.005, lr: float = 1e-4, gan_lr: float | None = None):
        gan_lr = gan_lr or lr
        milestones = halving_milestones(pretrain_steps, halve_every) + tuple(
            pretrain_steps + m for m in halving_milestones(gan_steps, halve_every))
        super().__init__(net, discriminator, scale, perceptual, w_pix=w_pix, w_per=w_per, w_adv=w_adv,
                         gan="vanilla", pretrain_steps=pretrain_steps, lr=lr if pretrain_steps else gan_lr,
                         betas=(0.9, 0.999), loss="l1", milestones=milestones, gamma=0.5, restart_at=pretrain_steps,
                         restart_scale=gan_lr / lr if pretrain_steps else 1.0)
        self.save_hyperparameters(ignore=["net", "discriminator", "perceptual"])


D_NF = {"paper": 64, "smoke": 8}      # discriminator base width


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
    """MASRGAN from the trained MASRNet generator (``ctx.init_checkpoint``: the runner's final MASRNet
    checkpoint, MethodSpec.init_from = "masrnet"), then the Table protocol's GAN phase.

    Without a checkpoint (a direct call, a unit test) the generator is pre-trained in this run on L1
    for the protocol's PSNR phase first: the same recipe (Sec. 1: MASRGAN's generator is MASRNet),
    run in one process instead of two; the plan's notes say so.
    """
    p = masrgan_protocol(ctx)
    per = PerceptualLoss(("relu2_2",), criterion="mse", arch="vgg19", weights_dir=ctx.weights_dir,
                         allow_random=ctx.profile == "smoke")
    disc = build_discriminator(discriminator, ctx.in_channels, D_NF[ctx.profile], p.patch)
    net = masrnet.build_network(ctx, "mix")
    per, w_pix, w_per, note = perceptual_or_pixel(per, w_pix=0.01, w_per=1.0)
    notes = [note] if note else []
    if ctx.init_checkpoint is not None:
        load_generator(net, ctx.init_checkpoint)
        pretrain = 0
    else:
        pretrain = p.psnr_steps
        notes.append("MASRNet generator pre-trained in this run (no init checkpoint)")
    module = MASRGANModule(net, disc, ctx.scale, per, w_pix=w_pix, w_per=w_per, pretrain_steps=pretrain, halve_every=p.halve_every,
                           gan_steps=p.gan_steps, lr=p.lr, gan_lr=p.gan_lr)
    return module, TrainPlan(max_steps=pretrain + p.gan_steps, batch_size=p.batch, patch_size=p.patch,
                             notes="; ".join(notes))


def build_masrgan_d_vgg16(ctx: BuildContext) -> tuple[MASRGANModule, TrainPlan]:
    """Table 3, MASRGAN-VGG16: SRGAN's discriminator."""
    return build_masrgan(ctx, "vgg16")


def build_masrgan_d_vgg128(ctx: BuildContext) -> tuple[MASRGANModule, TrainPlan]:
    """Table 3, MASRGAN-VGG128: ESRGAN's VGG-style discriminator."""
    return build_masrgan(ctx, "vgg128")


def build_masrgan_d_patchgan(ctx: BuildContext) -> tuple[MASRGANModule, TrainPlan]:
    """Table 3, MASRGAN-PatchGAN: the default MASRGAN."""
    return build_masrgan(ctx, "patchgan")
