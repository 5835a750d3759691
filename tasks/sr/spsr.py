"""SPSR (Ma et al., "Structure-Preserving Super Resolution with Gradient Guidance", CVPR 2020), a GAN
baseline of MASRGAN's Table 1 (its ref. [46]).  Settings from the paper (Sec. 3-4) and the official
code (github.com/Maclory/SPSR: architecture.py, SPSR_model.py, train_spsr.json).

Gradient map (Sec. 3.1, Eq. 1-2): per channel M(I) = ||(I(x+1,y) - I(x-1,y), I(x,y+1) - I(x,y-1))||_2
(central differences, zero padding, +1e-6 inside the root as the code).  The official loss-side map
pads by 2 (a 1-pixel frame larger than the image); here every map pads by 1, so maps and images have
the same size (the discriminator is built for the patch size).

Generator (Sec. 3.2, Fig. 2): the SR branch is ESRGAN's RRDBNet (23 RRDB, 64 features, growth 32,
nearest-neighbour x2 upsampling + conv + LeakyReLU, one HR conv) without its last conv; the gradient
branch takes the LR gradient map, and after each of four RRDB-stages of the SR branch (after blocks 5,
10, 15, 20) concatenates that SR feature, runs an RRDB at 128 channels and a 3x3 conv back to 64;
then a conv with a skip, the same upsampler, two HR convs, and a 1x1 conv to the SR gradient map.
The fusion block concatenates both branches' HR features, runs an RRDB at 128 channels, a 3x3 conv to
64, conv + LeakyReLU, conv to RGB.  At x4 the generator has 24,796,230 parameters (24.8 M): SR branch
16,733,184 (RRDBNet's 16,697,987 with its last conv 64 -> 3 made 64 -> 64), gradient branch 6,456,835,
fusion block 1,606,211.

Losses (Eq. 3-7, official weights): SR image L1 1e-2, VGG19 conv5_4 (before ReLU) L1 feature loss 1,
relativistic-average GAN 5e-3 on the SR image (ESRGAN's VGG-128 discriminator with BN), gradient-space
MSE 1e-2 and relativistic GAN 5e-3 on the SR image's gradient map (a second discriminator of the
same architecture), and L1 0.5 between the gradient branch's output and the HR gradient map.

Training: MASRGAN's Table protocol (tasks/sr/protocol.py) in Table 1; its own recipe: G initialised from ESRGAN's PSNR-oriented RRDB model (here the same pixel-loss phase as our
ESRGAN, on the whole generator); for the first 5000 GAN iterations only the fusion block trains
("Branch_init_iters"); Adam lr 1e-4, beta (0.9, 0.999) for G and both discriminators; lr halved at
50k/100k/200k/300k; 5e5 iterations; batch 30 of 128x128 HR patches (train_spsr.json).
"""
from __future__ import annotations

import warnings
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.specs import BuildContext, TrainPlan
from tasks.common.discriminators import VGGStyleDiscriminator
from tasks.common.losses import PerceptualLoss, d_loss, g_loss, perceptual_or_pixel
from tasks.sr import esrgan
from tasks.sr.esrgan import RRDB
from tasks.sr.module import SRGANModule
from tasks.sr.protocol import gan_training


def gradient_map(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Per-channel gradient magnitude with central differences and zero padding (SPSR Eq. 1-2).

    Two lines of padding and slicing: kornia's spatial_gradient pads by replication and halves the
    central difference, which is not SPSR's map.
    """
    p = F.pad(x, (1, 1, 1, 1))
    dx = p[..., 1:-1, 2:] - p[..., 1:-1, :-2]
    dy = p[..., 2:, 1:-1] - p[..., :-2, 1:-1]
    return torch.sqrt(dx * dx + dy * dy + eps)


def _upconv(nf: int, scale: int) -> list[nn.Module]:
    """ESRGAN's upsampler: log2(scale) x [nearest x2, 3x3 conv, LeakyReLU(0.2)]."""
    layers: list[nn.Module] = []
    for _ in range(scale.bit_length() - 1):
        layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(nf, nf, 3, 1, 1),
                   nn.LeakyReLU(0.2, inplace=True)]
    return layers


def _conv_lrelu(nf: int) -> list[nn.Module]:
    return [nn.Conv2d(nf, nf, 3, 1, 1), nn.LeakyReLU(0.2, inplace=True)]


class SPSRNet(nn.Module):
    """SR branch (RRDBNet trunk) + gradient branch + fusion block.  ``forward`` returns the SR image;
    ``forward_train`` also returns the gradient branch's HR gradient map."""

    def __init__(self, in_ch: int = 3, out_ch: int = 3, nf: int = 64, nb: int = 23, gc: int = 32, scale: int = 4):
        super().__init__()
        if nb < 4 or scale not in (1, 2, 4, 8, 16):
            raise ValueError(f"SPSRNet needs >= 4 RRDBs and a power-of-two scale, got nb={nb}, x{scale}")
        self.taps = [(i + 1) * (nb // 4) for i in range(4)]  # 5, 10, 15, 20 for 23 blocks
        # SR branch
        self.conv_first = nn.Conv2d(in_ch, nf, 3, 1, 1)
        self.trunk = nn.ModuleList(RRDB(nf, gc) for _ in range(nb))
        self.trunk_conv = nn.Conv2d(nf, nf, 3, 1, 1)
        self.sr_up = nn.Sequential(*_upconv(nf, scale), *_conv_lrelu(nf), nn.Conv2d(nf, nf, 3, 1, 1))
        # gradient branch
        self.grad_first = nn.Conv2d(in_ch, nf, 3, 1, 1)
        self.grad_stages = nn.ModuleList(nn.Sequential(RRDB(2 * nf, gc), nn.Conv2d(2 * nf, nf, 3, 1, 1))
                                         for _ in range(4))
        self.grad_conv = nn.Conv2d(nf, nf, 3, 1, 1)
        self.grad_up = nn.Sequential(*_upconv(nf, scale), *_conv_lrelu(nf), nn.Conv2d(nf, nf, 3, 1, 1))
        self.grad_out = nn.Conv2d(nf, out_ch, 1)
        # fusion block
        self.fusion = nn.Sequential(RRDB(2 * nf, gc), nn.Conv2d(2 * nf, nf, 3, 1, 1), *_conv_lrelu(nf),
                                    nn.Conv2d(nf, out_ch, 3, 1, 1))

    def forward_train(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        grad_lr = gradient_map(x)
        feat = self.conv_first(x)
        h, taps = feat, []
        for i, block in enumerate(self.trunk, 1):
            h = block(h)
            if i in self.taps:
                taps.append(h)
        sr_feat = self.sr_up(feat + self.trunk_conv(h))
        g0 = self.grad_first(grad_lr)
        g = g0
        for stage, tap in zip(self.grad_stages, taps):
            g = stage(torch.cat([g, tap], 1))
        grad_feat = self.grad_up(g0 + self.grad_conv(g))
        sr = self.fusion(torch.cat([grad_feat, sr_feat], 1))
        return sr, self.grad_out(grad_feat)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_train(x)[0]


class SPSRModule(SRGANModule):
    """SPSR training with three optimizers (G, image D, gradient D), manual optimisation."""

    optimizer_steps_per_batch = 3

    def __init__(self, net: SPSRNet, discriminator: nn.Module, grad_discriminator: nn.Module, scale: int,
                 perceptual: PerceptualLoss | None, w_pix: float = 1e-2, w_per: float = 1.0, w_adv: float = 5e-3,
                 w_grad_pix: float = 1e-2, w_grad_adv: float = 5e-3, w_branch: float = 0.5,
                 pretrain_steps: int = 0, branch_init_steps: int = 5000, lr: float = 1e-4,
                 betas: Sequence[float] = (0.9, 0.999), milestones: Sequence[int] = (), gamma: float = 0.5,
                 restart_at: int = 0, restart_scale: float = 1.0):
        with warnings.catch_warnings():  # the parents' save_hyperparameters see (and warn of) this module
            warnings.filterwarnings("ignore", message=".*'grad_discriminator' is an instance of `nn.Module`")
            super().__init__(net, discriminator, scale, perceptual, w_pix=w_pix, w_per=w_per, w_adv=w_adv,
                             gan="ragan", pretrain_steps=pretrain_steps, lr=lr, betas=betas, milestones=milestones,
                             gamma=gamma, restart_at=restart_at, restart_scale=restart_scale)
        self.save_hyperparameters(ignore=["net", "discriminator", "grad_discriminator", "perceptual"])
        self.grad_discriminator = grad_discriminator

    def configure_optimizers(self):
        hp = self.hparams
        opts = [torch.optim.Adam(m.parameters(), lr=hp.lr, betas=tuple(hp.betas))
                for m in (self.net, self.discriminator, self.grad_discriminator)]
        return opts, [self._schedule(o) for o in opts]

    def _only_fusion_trains(self, flag: bool) -> None:
        self.net.requires_grad_(not flag)
        self.net.fusion.requires_grad_(True)

    def generator_loss(self, sr, hr, branch=None, grad_sr=None, grad_hr=None) -> dict[str, torch.Tensor]:
        hp = self.hparams
        parts = {"pix": hp.w_pix * self.pixel(sr, hr), "grad_pix": hp.w_grad_pix * F.mse_loss(grad_sr, grad_hr),
                 "branch": hp.w_branch * F.l1_loss(branch, grad_hr),
                 "adv": hp.w_adv * g_loss(self.discriminator(hr).detach(), self.discriminator(sr), "ragan"),
                 "grad_adv": hp.w_grad_adv * g_loss(self.grad_discriminator(grad_hr).detach(),
                                                    self.grad_discriminator(grad_sr), "ragan")}
        if self.perceptual is not None and hp.w_per:
            parts["per"] = hp.w_per * self.perceptual(sr, hr)
        return parts

    def training_step(self, batch, batch_idx):
        hp = self.hparams
        opt_g, opt_d, opt_dg = self.optimizers()
        lr, hr = batch["lr"], batch["hr"]
        if self.iteration < hp.pretrain_steps:  # PSNR-oriented initialisation
            loss = self.pixel(self(lr), hr)
            opt_g.zero_grad()
            self.manual_backward(loss)
            for opt in (opt_g, opt_d, opt_dg):  # the discriminators have no gradients: nothing moves
                opt.step()
            for s in self.lr_schedulers():
                s.step()
            self.log("train/pix", loss, prog_bar=True)
            return {"loss": loss.detach()}
        self._only_fusion_trains(self.iteration < hp.pretrain_steps + hp.branch_init_steps)
        sr, branch = self.net.forward_train(lr)
        grad_sr, grad_hr = gradient_map(sr), gradient_map(hr)
        discriminators = (self.discriminator, self.grad_discriminator)
        for d in discriminators:
            d.requires_grad_(False)
        parts = self.generator_loss(sr, hr, branch, grad_sr, grad_hr)
        loss_g = sum(parts.values())
        opt_g.zero_grad()
        self.manual_backward(loss_g)
        opt_g.step()
        for d in discriminators:
            d.requires_grad_(True)
        losses_d = {}
        for name, d, opt, real, fake in (("d", self.discriminator, opt_d, hr, sr),
                                         ("d_grad", self.grad_discriminator, opt_dg, grad_hr, grad_sr)):
            loss_d = d_loss(d(real), d(fake.detach()), "ragan")
            opt.zero_grad()
            self.manual_backward(loss_d)
            opt.step()
            losses_d[name] = loss_d.detach()
        for s in self.lr_schedulers():
            s.step()
        self.log_dict({f"train/{k}": v.detach() for k, v in (parts | losses_d).items()}, prog_bar=True)
        return {"loss": (loss_g.detach() + sum(losses_d.values()))}


PAPER = dict(nf=64, nb=23, gc=32, patch=128, batch=30, pretrain_steps=esrgan.PAPER["pretrain_steps"],
             branch_init_steps=5000, gan_steps=500_000, milestones=(50_000, 100_000, 200_000, 300_000), d_nf=64, lr=1e-4)
SMOKE = dict(nf=8, nb=4, gc=4, patch=32, batch=4, pretrain_steps=60, branch_init_steps=2, gan_steps=6,
             milestones=(), d_nf=8, lr=1e-3)


def build_spsr(ctx: BuildContext, recipe: str = "table") -> tuple[SPSRModule, TrainPlan]:
    """SPSR under MASRGAN's Table protocol (pixel phase, then the GAN phase with the halving restarted),
    or ``recipe="own"`` (the official train_spsr.json schedule above)."""
    cfg = PAPER if ctx.profile == "paper" else SMOKE
    tr = gan_training(ctx, cfg, recipe)
    net = SPSRNet(ctx.in_channels, ctx.in_channels, cfg["nf"], cfg["nb"], cfg["gc"], ctx.scale)
    disc, grad_disc = (VGGStyleDiscriminator(ctx.in_channels, cfg["d_nf"], input_size=tr["patch"]) for _ in range(2))
    per = PerceptualLoss(("conv5_4",), arch="vgg19", weights_dir=ctx.weights_dir, allow_random=ctx.profile == "smoke")
    per, w_pix, w_per, notes = perceptual_or_pixel(per, w_pix=1e-2, w_per=1.0)
    module = SPSRModule(net, disc, grad_disc, ctx.scale, per, w_pix=w_pix, w_per=w_per, pretrain_steps=tr["pretrain_steps"],
                        branch_init_steps=cfg["branch_init_steps"], lr=tr["lr"], betas=(0.9, 0.999),
                        milestones=tr["milestones"], gamma=0.5, restart_at=tr["restart_at"],
                        restart_scale=tr["restart_scale"])
    return module, TrainPlan(max_steps=tr["pretrain_steps"] + tr["gan_steps"], batch_size=tr["batch"],
                             patch_size=tr["patch"], notes=notes)
