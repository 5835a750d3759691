"""ESRGAN (Wang et al., ECCV-W 2018): RRDBNet generator + VGG-style discriminator, relativistic GAN.

Training: MASRGAN's Table protocol (tasks/sr/protocol.py) in Table 1; ``recipe="own"`` is the paper's.
Paper settings (Sec. 3-4 and the official BasicSR configs train_RRDBNet_PSNR_x4 / train_ESRGAN_x4): 23 RRDB, 64 features,
growth 32, residual scaling 0.2, nearest-neighbour upsampling x2 stages; PSNR-oriented pre-training
with L1 (lr 2e-4 halved every 2e5 iterations, 1e6 iterations), then L = L_percep(conv5_4, before activation) + 5e-3 L_G^Ra + 1e-2 L1; Adam 1e-4,
beta (0.9, 0.99), HR patch 128, batch 16, 400k GAN iterations, lr halved at 50k/100k/200k/300k.
RRDBNet at these settings has 16.70 M parameters.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.specs import BuildContext, TrainPlan
from tasks.common.discriminators import VGGStyleDiscriminator
from tasks.common.losses import PerceptualLoss, perceptual_or_pixel
from tasks.sr.module import SRGANModule, SRModule
from tasks.sr.protocol import gan_training


class ResidualDenseBlock(nn.Module):
    """Five 3x3 convs with dense connections, LeakyReLU(0.2), residual scaled by 0.2."""

    def __init__(self, nf: int = 64, gc: int = 32):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(nf + i * gc, gc if i < 4 else nf, 3, 1, 1) for i in range(5))
        self.act = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x):
        feats = [x]
        for i, conv in enumerate(self.convs):
            out = conv(torch.cat(feats, 1))
            if i < 4:
                feats.append(self.act(out))
        return x + 0.2 * out


class RRDB(nn.Module):
    """Residual-in-residual dense block: three RDBs and a 0.2-scaled outer residual."""

    def __init__(self, nf: int = 64, gc: int = 32):
        super().__init__()
        self.body = nn.Sequential(*(ResidualDenseBlock(nf, gc) for _ in range(3)))

    def forward(self, x):
        return x + 0.2 * self.body(x)


class RRDBNet(nn.Module):
    """First conv, ``nb`` RRDBs + trunk conv (long skip), log2(scale) x (nearest x2 + conv), two convs."""

    def __init__(self, in_ch: int = 3, out_ch: int = 3, nf: int = 64, nb: int = 23, gc: int = 32, scale: int = 4):
        super().__init__()
        if scale not in (1, 2, 4, 8, 16):
            raise ValueError(f"RRDBNet supports power-of-two scales, got {scale}")
        self.scale = scale
        self.conv_first = nn.Conv2d(in_ch, nf, 3, 1, 1)
        self.body = nn.Sequential(*(RRDB(nf, gc) for _ in range(nb)))
        self.conv_body = nn.Conv2d(nf, nf, 3, 1, 1)
        self.ups = nn.ModuleList(nn.Conv2d(nf, nf, 3, 1, 1) for _ in range(scale.bit_length() - 1))
        self.conv_hr = nn.Conv2d(nf, nf, 3, 1, 1)
        self.conv_last = nn.Conv2d(nf, out_ch, 3, 1, 1)
        self.act = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x):
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        for conv in self.ups:
            feat = self.act(conv(F.interpolate(feat, scale_factor=2, mode="nearest")))
        return self.conv_last(self.act(self.conv_hr(feat)))


PAPER = dict(nf=64, nb=23, gc=32, patch=128, batch=16, pretrain_steps=1_000_000, gan_steps=400_000, lr=1e-4,
             milestones=(50_000, 100_000, 200_000, 300_000), d_nf=64,
             pretrain_lr=2e-4, pretrain_milestones=(200_000, 400_000, 600_000, 800_000))
SMOKE = dict(nf=16, nb=2, gc=8, patch=32, batch=4, pretrain_steps=60, gan_steps=8, lr=1e-3, milestones=(), d_nf=8,
             pretrain_lr=2e-3, pretrain_milestones=())


def build_esrgan(ctx: BuildContext, recipe: str = "table") -> tuple[SRGANModule, TrainPlan]:
    """ESRGAN under MASRGAN's Table protocol (its RRDBNet pre-trained on L1 for the protocol's PSNR phase,
    then the GAN phase with the halving restarted), or ``recipe="own"``: the paper's PSNR-oriented
    pre-training (L1, lr 2e-4 halved every 2e5 of 1e6 iterations) then 400k GAN iterations at lr 1e-4
    halved at 50k/100k/200k/300k (the "ESRGAN (own recipe)" variant)."""
    cfg = PAPER if ctx.profile == "paper" else SMOKE
    tr = gan_training(ctx, cfg, recipe)
    restart_scale = tr["restart_scale"]
    if recipe == "own":  # one optimizer over both phases: base lr 2e-4, the GAN phase restarts at half of it
        tr |= dict(lr=cfg["pretrain_lr"], restart_at=cfg["pretrain_steps"],
                   milestones=tuple(cfg["pretrain_milestones"]) + tr["milestones"])
        restart_scale = cfg["lr"] / cfg["pretrain_lr"]
    net = RRDBNet(ctx.in_channels, ctx.in_channels, cfg["nf"], cfg["nb"], cfg["gc"], ctx.scale)
    disc = VGGStyleDiscriminator(ctx.in_channels, cfg["d_nf"], input_size=tr["patch"])
    per = PerceptualLoss(("conv5_4",), arch="vgg19", weights_dir=ctx.weights_dir,
                         allow_random=ctx.profile == "smoke")
    per, w_pix, w_per, notes = perceptual_or_pixel(per, w_pix=1e-2, w_per=1.0)
    module = SRGANModule(net, disc, ctx.scale, per, w_pix=w_pix, w_per=w_per, w_adv=5e-3, gan="ragan",
                         pretrain_steps=tr["pretrain_steps"], lr=tr["lr"], betas=(0.9, 0.99),
                         milestones=tr["milestones"], restart_at=tr["restart_at"], restart_scale=restart_scale)
    return module, TrainPlan(max_steps=tr["pretrain_steps"] + tr["gan_steps"], batch_size=tr["batch"],
                             patch_size=tr["patch"], notes=notes)


def build_esrgan_own(ctx: BuildContext) -> tuple[SRGANModule, TrainPlan]:
    return build_esrgan(ctx, "own")
