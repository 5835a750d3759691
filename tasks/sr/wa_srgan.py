"""WA-SRGAN (Shahidi, "Breast Cancer Histopathology Image Super-Resolution Using Wide-Attention GAN
With Improved Wasserstein Gradient Penalty and Perceptual Loss", IEEE Access 9, 2021), a GAN baseline
of MASRGAN's Table 1 (its ref. [41]).

What the paper states (abstract): SRGAN (Ledig et al. 2017) with *widened* residual blocks and a
*self-attention layer* that picks out the important parts of the LR features *before up-sampling*;
trained with the improved Wasserstein loss with gradient penalty (WGAN-GP, Gulrajani et al. 2017) and
a VGG perceptual loss; weight normalisation beat batch normalisation (SSIM); HR images 256x256
(Camelyon16).  No official code is public and the full text is not in this workspace, so everything
else follows the two papers WA-SRGAN builds on, each choice named here:

Generator (SRGAN, Ledig et al. Fig. 4, with the changes above): 9x9 conv to 64 + PReLU; 16 wide
residual blocks, each WN-conv3x3 64 -> 64*k, PReLU, WN-conv3x3 64*k -> 64, identity skip (widened
inside the residual branch, as wide-activation SR blocks do; k = 2, the smallest widening of Zagoruyko
& Komodakis's WRN; no dropout, as SR networks use none); WN-conv3x3 with the long skip; SAGAN
self-attention (Zhang et al. 2019; query/key at C/8, zero-initialised gate); log2(scale) x
[conv 64 -> 256, PixelShuffle(2), PReLU]; 9x9 conv to RGB (linear output instead of SRGAN's tanh,
as images are in [0, 1]).

Critic: SRGAN's discriminator (eight 3x3 convs 64-64s2-128-128s2-256-256s2-512-512s2, LeakyReLU
0.2) with weight normalisation in place of BN (WGAN-GP Sec. 4 forbids BN in the critic: the penalty
is per sample) and no sigmoid; its Dense(1024)-LeakyReLU-Dense(1) head is applied after global average
pooling (as 1x1 convs), which keeps the head size-independent (SRGAN's flatten would give a 134 M
parameter layer at 256x256).

Schedule: MASRGAN's Table protocol (tasks/sr/protocol.py) in Table 1; ``recipe="own"`` as follows.
Losses and schedule: L_G = VGG19 relu5_4 MSE (SRGAN's "VGG54" content loss; weight 1 as features
come from ImageNet-normalised inputs, SRGAN's 1/12.75^2 rescaling is for its 0-255 features)
+ 1e-3 * (-E[D(G(x))]) (SRGAN's adversarial weight); L_D = E[D(G(x))] - E[D(y)] + 10 * GP
(WGAN-GP Algorithm 1: lambda 10, n_critic 5, Adam lr 1e-4, beta (0, 0.9)).  The critic steps on every
batch, the generator on every 5th (Algorithm 1 draws a fresh batch for each critic step).  The
generator starts from an MSE-trained network (SRGAN Sec. 3.2: SRResNet, 1e6 iterations, Adam
lr 1e-4, beta (0.9, 0.999)); GAN phase 2e5 generator updates at lr 1e-4 then 1e-5 after the first
1e5 (SRGAN Sec. 3.2), i.e. 1e6 batches with n_critic 5; batch 16 (SRGAN) of 256x256 HR patches.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from benchmark.specs import BuildContext, TrainPlan
from tasks.common.layers import PixelShuffleUpsampler, SelfAttention2d
from tasks.common.losses import PerceptualLoss, perceptual_or_pixel
from tasks.sr.module import SRGANModule
from tasks.sr.protocol import gan_training


def _wn_conv(cin: int, cout: int, k: int = 3, stride: int = 1) -> nn.Module:
    return weight_norm(nn.Conv2d(cin, cout, k, stride, k // 2))


class WideResidualBlock(nn.Module):
    """x + WN-conv(k*C -> C)(PReLU(WN-conv(C -> k*C)(x)))."""

    def __init__(self, nf: int = 64, widen: int = 2):
        super().__init__()
        self.body = nn.Sequential(_wn_conv(nf, nf * widen), nn.PReLU(), _wn_conv(nf * widen, nf))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class WideAttentionGenerator(nn.Module):
    """SRGAN generator with wide WN residual blocks and self-attention before the upsampler."""

    def __init__(self, in_ch: int = 3, out_ch: int = 3, nf: int = 64, n_blocks: int = 16, widen: int = 2,
                 scale: int = 4):
        super().__init__()
        self.head = nn.Sequential(nn.Conv2d(in_ch, nf, 9, 1, 4), nn.PReLU())
        self.body = nn.Sequential(*(WideResidualBlock(nf, widen) for _ in range(n_blocks)), _wn_conv(nf, nf))
        self.attention = SelfAttention2d(nf)
        self.tail = nn.Sequential(PixelShuffleUpsampler(nf, scale, act=nn.PReLU), nn.Conv2d(nf, out_ch, 9, 1, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.head(x)
        return self.tail(self.attention(feat + self.body(feat)))


class WassersteinCritic(nn.Module):
    """SRGAN discriminator without BN (weight-normalised) and without sigmoid: a real-valued score."""

    def __init__(self, in_ch: int = 3, nf: int = 64, hidden: int = 1024):
        super().__init__()
        widths = [nf, nf, 2 * nf, 2 * nf, 4 * nf, 4 * nf, 8 * nf, 8 * nf]
        layers, c = [], in_ch
        for i, w in enumerate(widths):
            layers += [_wn_conv(c, w, 3, 1 + i % 2), nn.LeakyReLU(0.2, inplace=True)]
            c = w
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(c, hidden, 1), nn.LeakyReLU(0.2, inplace=True),
                                  nn.Conv2d(hidden, 1, 1), nn.Flatten())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def gradient_penalty(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """WGAN-GP (Gulrajani et al. 2017, Eq. 3): E[(||grad_x D(x)||_2 - 1)^2] at random points x on the
    lines between real and fake samples."""
    eps = torch.rand(real.shape[0], 1, 1, 1, device=real.device, dtype=real.dtype)
    x = (eps * real + (1 - eps) * fake).requires_grad_(True)
    grad, = torch.autograd.grad(critic(x).sum(), x, create_graph=True)
    return ((grad.flatten(1).norm(2, dim=1) - 1) ** 2).mean()


class WGANGPSRModule(SRGANModule):
    """SR generator + Wasserstein critic with gradient penalty, manual optimisation.

    Per batch (after ``pretrain_steps`` of pixel-loss training): one critic step; every ``n_critic``-th
    batch also one generator step.  Both optimizers are stepped every batch (a step without gradients
    changes nothing), so ``optimizer_steps_per_batch`` stays 2 as the runner expects.
    """

    def __init__(self, net: nn.Module, discriminator: nn.Module, scale: int, perceptual: PerceptualLoss | None,
                 w_pix: float = 0.0, w_per: float = 1.0, w_adv: float = 1e-3, gp_weight: float = 10.0,
                 n_critic: int = 5, pretrain_steps: int = 0, lr: float = 1e-4,
                 pretrain_betas: Sequence[float] = (0.9, 0.999), betas: Sequence[float] = (0.0, 0.9),
                 milestones: Sequence[int] = (), gamma: float = 0.1, loss: str = "mse", restart_at: int = 0,
                 restart_scale: float = 1.0):
        super().__init__(net, discriminator, scale, perceptual, w_pix=w_pix, w_per=w_per, w_adv=w_adv, gan="wgan-gp",
                         pretrain_steps=pretrain_steps, lr=lr, betas=betas, milestones=milestones, gamma=gamma,
                         loss=loss, restart_at=restart_at, restart_scale=restart_scale)
        self.save_hyperparameters(ignore=["net", "discriminator", "perceptual"])

    def configure_optimizers(self):
        hp = self.hparams
        first = hp.pretrain_betas if hp.pretrain_steps else hp.betas
        opt_g = torch.optim.Adam(self.net.parameters(), lr=hp.lr, betas=tuple(first))
        opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=hp.lr, betas=tuple(hp.betas))
        scheds = [self._schedule(o) for o in (opt_g, opt_d)]
        return [opt_g, opt_d], scheds

    def generator_loss(self, sr, hr) -> dict[str, torch.Tensor]:
        hp = self.hparams
        parts = {"adv": -hp.w_adv * self.discriminator(sr).mean()}
        if hp.w_pix:
            parts["pix"] = hp.w_pix * self.pixel(sr, hr)
        if self.perceptual is not None and hp.w_per:
            parts["per"] = hp.w_per * self.perceptual(sr, hr)
        return parts

    def training_step(self, batch, batch_idx):
        hp = self.hparams
        if self.iteration < hp.pretrain_steps:
            return super().training_step(batch, batch_idx)
        opt_g, opt_d = self.optimizers()
        opt_g.optimizer.param_groups[0]["betas"] = tuple(hp.betas)  # SRResNet -> WGAN-GP Adam betas
        lr, hr = batch["lr"], batch["hr"]
        update_g = (self.iteration - hp.pretrain_steps) % hp.n_critic == hp.n_critic - 1
        with torch.set_grad_enabled(update_g):
            sr = self(lr)
        fake = sr.detach()
        wasserstein = self.discriminator(fake).mean() - self.discriminator(hr).mean()
        loss_d = wasserstein + hp.gp_weight * gradient_penalty(self.discriminator, hr, fake)
        opt_d.zero_grad()
        self.manual_backward(loss_d)
        opt_d.step()
        opt_g.zero_grad()
        logs = {"train/d": loss_d.detach(), "train/w_dist": -wasserstein.detach()}
        loss = loss_d.detach()
        if update_g:
            self.discriminator.requires_grad_(False)
            parts = self.generator_loss(sr, hr)
            loss_g = sum(parts.values())
            self.manual_backward(loss_g)
            self.discriminator.requires_grad_(True)
            logs |= {f"train/{k}": v.detach() for k, v in parts.items()}
            loss = loss + loss_g.detach()
        opt_g.step()  # without gradients (critic-only batches) Adam leaves every parameter as it is
        for s in self.lr_schedulers():
            s.step()
        self.log_dict(logs, prog_bar=True)
        return {"loss": loss}


PAPER = dict(nf=64, n_blocks=16, widen=2, d_nf=64, patch=256, batch=16, pretrain_steps=1_000_000,
             gan_steps=1_000_000, n_critic=5, milestones=(500_000,), lr=1e-4)
SMOKE = dict(nf=16, n_blocks=1, widen=2, d_nf=8, patch=32, batch=4, pretrain_steps=60, gan_steps=10, n_critic=5,
             milestones=(), lr=1e-3)


def build_wa_srgan(ctx: BuildContext, recipe: str = "table") -> tuple[WGANGPSRModule, TrainPlan]:
    """WA-SRGAN under MASRGAN's Table protocol (pixel phase, then the GAN phase with the halving
    restarted), or ``recipe="own"`` (the SRGAN / WGAN-GP schedule above)."""
    cfg = PAPER if ctx.profile == "paper" else SMOKE
    tr = gan_training(ctx, cfg, recipe)
    net = WideAttentionGenerator(ctx.in_channels, ctx.in_channels, cfg["nf"], cfg["n_blocks"], cfg["widen"], ctx.scale)
    critic = WassersteinCritic(ctx.in_channels, cfg["d_nf"])
    per = PerceptualLoss(("relu5_4",), criterion="mse", arch="vgg19", weights_dir=ctx.weights_dir,
                         allow_random=ctx.profile == "smoke")
    per, w_pix, w_per, notes = perceptual_or_pixel(per, w_pix=0.0, w_per=1.0)
    module = WGANGPSRModule(net, critic, ctx.scale, per, w_pix=w_pix, w_per=w_per, w_adv=1e-3, gp_weight=10.0,
                            n_critic=cfg["n_critic"], pretrain_steps=tr["pretrain_steps"], lr=tr["lr"],
                            milestones=tr["milestones"], gamma=0.5 if recipe == "table" else 0.1,
                            restart_at=tr["restart_at"], restart_scale=tr["restart_scale"])
    return module, TrainPlan(max_steps=tr["pretrain_steps"] + tr["gan_steps"], batch_size=tr["batch"],
                             patch_size=tr["patch"], notes=notes)
