"""QEGAN (Upadhyay & Awate, MICCAI 2019, "A Mixed-Supervision Multilevel GAN Framework for Image
Quality Enhancement"), MASRGAN's Table 1 GAN baseline [9].

What the paper states (abstract): a GAN that learns from training data at multiple levels of
quality (e.g. high and medium quality, the medium being cheaper to acquire) -- "mixed supervision"
of a "multilevel" network -- applied to super-resolving histopathology images.

Only the abstract was available to this implementation, so the concrete design below is a
reconstruction with the field's standard parts, and every number in it is a choice: a multilevel
generator whose levels each raise quality by one step (LQ -> MQ -> HQ, at x4 the 10x -> 20x -> 40x
steps of a slide pyramid), each level adversarially trained; layers and schedule from SRGAN (Ledig et
al. 2017), the GAN recipe the pathology SR GANs of the time build on; an SSIM term from the authors'
earlier pathology SR GAN (Upadhyay & Awate, ISBI 2019, whose abstract trains SR "to match human
perceptions of structure, luminance, and contrast"):

* Generator: log2(scale) levels, each a x2 SRResNet (SRGAN Fig. 4): 9x9 conv + PReLU, 16 residual
  blocks (conv-BN-PReLU-conv-BN), conv-BN with a long skip, x2 sub-pixel upsampler + PReLU, 9x9 conv
  to an image.  Level i+1 takes level i's image, so at x4 the LQ (10x) -> MQ (20x) -> HQ (40x) chain
  of the pathology pyramid.  64 features.
* One discriminator per level: SRGAN's discriminator (Fig. 4; tasks/common/discriminators) at that
  level's patch size (48 and 96 for SRGAN's 96x96 HR patches).
* Supervision: PathImgSR gives 10x/40x pairs only; the MQ target is the HR downsampled by 2 (MATLAB
  bicubic), which is how a WSI's 20x pyramid level is itself made from the 40x scan.
* Loss per level: L1 + (1 - SSIM)/2 (kornia's SSIM loss, 11x11 window) + 1e-3 x the standard
  (non-saturating BCE) adversarial loss (SRGAN's weight), summed over levels.
* Schedule: MASRGAN's Table protocol (tasks/sr/protocol.py) in Table 1; ``recipe="own"`` (SRGAN Sec. 3.2): Adam beta1 0.9, lr 1e-4; the generator is first trained on the pixel
  loss alone (SRGAN's SRResNet initialisation; 1e6 iterations), then 2e5 GAN iterations with the lr
  divided by 10 after the first 1e5; batch 16; HR patch 96.
"""
from __future__ import annotations

import math

import torch
from kornia.losses import ssim_loss
from torch import nn

from benchmark.specs import BuildContext, TrainPlan
from datamodules.imresize import imresize
from tasks.common.discriminators import SRGANDiscriminator
from tasks.common.layers import PixelShuffleUpsampler
from tasks.common.losses import d_loss, g_loss
from tasks.sr.module import SRGANModule
from tasks.sr.protocol import gan_training


class SRResNetBlock(nn.Module):
    """SRGAN residual block: conv-BN-PReLU-conv-BN plus the input."""

    def __init__(self, nf: int = 64):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(nf, nf, 3, 1, 1), nn.BatchNorm2d(nf), nn.PReLU(nf),
                                  nn.Conv2d(nf, nf, 3, 1, 1), nn.BatchNorm2d(nf))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class QualityLevel(nn.Module):
    """One quality level: a x2 SRResNet from an image to the next level's image."""

    def __init__(self, in_ch: int = 3, out_ch: int = 3, nf: int = 64, n_blocks: int = 16):
        super().__init__()
        self.head = nn.Sequential(nn.Conv2d(in_ch, nf, 9, 1, 4), nn.PReLU(nf))
        self.body = nn.Sequential(*(SRResNetBlock(nf) for _ in range(n_blocks)),
                                  nn.Conv2d(nf, nf, 3, 1, 1), nn.BatchNorm2d(nf))
        self.tail = nn.Sequential(PixelShuffleUpsampler(nf, 2, act=lambda: nn.PReLU(nf)),
                                  nn.Conv2d(nf, out_ch, 9, 1, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.head(x)
        return self.tail(feat + self.body(feat))


class MultilevelGenerator(nn.Module):
    """log2(scale) chained x2 levels; ``forward`` gives the last level, ``forward_levels`` all."""

    def __init__(self, in_ch: int = 3, out_ch: int = 3, nf: int = 64, n_blocks: int = 16, scale: int = 4):
        super().__init__()
        n_levels = int(math.log2(scale))
        if 2 ** n_levels != scale or n_levels < 1:
            raise ValueError(f"the multilevel generator needs a power-of-two scale, got x{scale}")
        self.levels = nn.ModuleList(QualityLevel(in_ch if i == 0 else out_ch, out_ch, nf, n_blocks)
                                    for i in range(n_levels))

    def forward_levels(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for level in self.levels:
            x = level(x)
            outs.append(x)
        return outs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_levels(x)[-1]


class MultilevelGANModule(SRGANModule):
    """SRGANModule with one discriminator per quality level (``discriminator``: their ModuleList)
    and per-level targets made from the HR image; G loss = sum over levels of
    w_pix L1 + w_ssim SSIM-loss + w_adv adversarial.  One G step and one D step (all levels) per batch."""

    def __init__(self, net: MultilevelGenerator, discriminator: nn.ModuleList, scale: int, w_pix: float = 1.0,
                 w_ssim: float = 1.0, w_adv: float = 1e-3, gan: str = "vanilla", pretrain_steps: int = 0,
                 lr: float = 1e-4, betas=(0.9, 0.999), milestones=(), gamma: float = 0.1, restart_at: int = 0,
                 restart_scale: float = 1.0):
        super().__init__(net, discriminator, scale, perceptual=None, w_pix=w_pix, w_per=0.0, w_adv=w_adv, gan=gan,
                         pretrain_steps=pretrain_steps, lr=lr, betas=betas, milestones=milestones, gamma=gamma,
                         loss="l1", restart_at=restart_at, restart_scale=restart_scale)
        self.save_hyperparameters(ignore=["net", "discriminator"])

    def level_targets(self, hr: torch.Tensor) -> list[torch.Tensor]:
        n = len(self.net.levels)
        return [imresize(hr, 0.5 ** (n - 1 - i)).clamp(0, 1) if i < n - 1 else hr for i in range(n)]

    def generator_loss(self, outs, targets) -> dict[str, torch.Tensor]:
        hp = self.hparams
        parts = {"pix": sum(hp.w_pix * self.pixel(o, t) for o, t in zip(outs, targets)),
                 "ssim": sum(hp.w_ssim * ssim_loss(o, t, window_size=11) for o, t in zip(outs, targets))}
        parts["adv"] = sum(hp.w_adv * g_loss(d(t).detach(), d(o), hp.gan)
                           for d, o, t in zip(self.discriminator, outs, targets))
        return parts

    def training_step(self, batch, batch_idx):
        outs = self.net.forward_levels(batch["lr"])
        targets = self.level_targets(batch["hr"])
        if self.iteration < self.hparams.pretrain_steps:
            return self.pixel_phase_step(sum(self.pixel(o, t) for o, t in zip(outs, targets)))
        return self.adversarial_step(
            lambda: self.generator_loss(outs, targets),
            lambda: sum(d_loss(d(t), d(o.detach()), self.hparams.gan)
                        for d, o, t in zip(self.discriminator, outs, targets)))


PAPER = dict(nf=64, n_blocks=16, d_nf=64, patch=96, batch=16, pretrain_steps=1_000_000, gan_steps=200_000,
             milestones=(100_000,), lr=1e-4)
SMOKE = dict(nf=16, n_blocks=1, d_nf=8, patch=32, batch=4, pretrain_steps=60, gan_steps=6, milestones=(), lr=1e-3)


def build_qegan(ctx: BuildContext, recipe: str = "table") -> tuple[MultilevelGANModule, TrainPlan]:
    """QEGAN under MASRGAN's Table protocol (pixel phase, then the GAN phase with the halving restarted),
    or ``recipe="own"`` (the SRGAN schedule above)."""
    cfg = PAPER if ctx.profile == "paper" else SMOKE
    tr = gan_training(ctx, cfg, recipe)
    net = MultilevelGenerator(ctx.in_channels, ctx.in_channels, cfg["nf"], cfg["n_blocks"], ctx.scale)
    n = len(net.levels)
    discs = nn.ModuleList(SRGANDiscriminator(ctx.in_channels, cfg["d_nf"], input_size=tr["patch"] >> (n - 1 - i))
                          for i in range(n))
    module = MultilevelGANModule(net, discs, ctx.scale, w_pix=1.0, w_ssim=1.0, w_adv=1e-3, gan="vanilla",
                                 pretrain_steps=tr["pretrain_steps"], lr=tr["lr"], betas=(0.9, 0.999),
                                 milestones=tr["milestones"], gamma=0.5 if recipe == "table" else 0.1,
                                 restart_at=tr["restart_at"], restart_scale=tr["restart_scale"])
    return module, TrainPlan(max_steps=tr["pretrain_steps"] + tr["gan_steps"], batch_size=tr["batch"],
                             patch_size=tr["patch"])
