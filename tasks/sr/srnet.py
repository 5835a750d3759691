"""SRNet and SRNet-w of rVTT (Tom et al., "Learning a deep convolution network with Turing test
adversaries for microscopy image super resolution", ISBI 2019): the generator G and its
non-adversarial training on J_recon (Sec. 3, eq. 1; Table 1 columns "SRNet" and "SRNet-w").

Paper settings (Sec. 3 "Architecture", "Loss function"; Sec. 3.0.1 "Training"):
  G: "similar to [ESRGAN]: residual-in-residual dense blocks followed by strided convolutions for
     upsampling".  The size is not stated, so ESRGAN's is used: 23 RRDB, 64 features, growth 32,
     residual scaling 0.2.  The upsampling stages are fractionally-strided (transposed) 4x4 stride-2
     convolutions + LeakyReLU(0.2), one per factor 2 (the paper's "strided convolutions"), where
     ESRGAN has nearest-neighbour x2 + 3x3 conv.  16,755,331 (16.76 M) parameters at x4 (ESRGAN's
     RRDBNet: 16.70 M); the paper states no count.
  J_recon = eta * |I_SR - I_HR| + L_perception (eq. 1).  eta is not stated: eq. 1 is ESRGAN's loss
     (ESRGAN names the L1 weight eta too), so eta = 1e-2 as there.  L_perception is "the VGG perception
     loss of [Johnson et al. 2016]", as cited: Johnson's feature reconstruction loss for SR, the squared
     L2 distance of ImageNet-VGG16 relu2_2 features normalised by their size (C*H*W: an MSE), weight 1.
  SRNet-w ("SRNet-w has edge weighting in J_recon()", Table 1 caption): adds the edge term of ref. [2]
     (Rivenson et al., Optica 2017, "mean square error with an edge weighting term"; its text was not
     available here to check the exact form or weight): lambda_e * mean ||S(I_SR) - S(I_HR)||^2 with S
     the Sobel x/y derivatives (kornia, normalised to a per-pixel derivative) of every channel.  The
     term pulls the SR edges towards the HR edges (penalising the output's own gradient, the other
     reading, would blur them, against SRNet-w's higher PSNR/SSIM in Table 1).  lambda_e = 0.1: its
     gradient is then ~half that of eta * L1 (measured at bicubic-quality SR on 128 px CRCH patches),
     an auxiliary term.  At lambda_e = 1 (5x the pixel gradient) the smoke SRNet-w fell 0.9 dB below
     SRNet, against Table 1 where SRNet-w is the higher of the two.
  Adam lr 1e-4 for 500,000 iterations, lr x0.5 every 100,000 (Sec. 3.0.1).  Not stated, so ESRGAN's:
     betas (0.9, 0.99), HR patch 128, batch 16.
"""
from __future__ import annotations

from typing import Sequence

import kornia
import torch
import torch.nn.functional as F
from torch import nn

from benchmark.specs import BuildContext, TrainPlan
from tasks.common.losses import PerceptualLoss
from tasks.sr.esrgan import RRDB
from tasks.sr.module import SRModule


class SRNet(nn.Module):
    """G of rVTT: first conv, ``nb`` RRDBs + trunk conv (long skip), log2(scale) x (4x4 stride-2
    transposed conv + LeakyReLU(0.2)), conv + LeakyReLU, last conv."""

    def __init__(self, in_ch: int = 3, out_ch: int = 3, nf: int = 64, nb: int = 23, gc: int = 32, scale: int = 4):
        super().__init__()
        if scale not in (2, 4, 8, 16):
            raise ValueError(f"SRNet supports power-of-two scales >= 2, got {scale}")
        self.scale = scale
        self.conv_first = nn.Conv2d(in_ch, nf, 3, 1, 1)
        self.body = nn.Sequential(*(RRDB(nf, gc) for _ in range(nb)))
        self.conv_body = nn.Conv2d(nf, nf, 3, 1, 1)
        self.ups = nn.ModuleList(nn.ConvTranspose2d(nf, nf, 4, 2, 1) for _ in range(scale.bit_length() - 1))
        self.conv_hr = nn.Conv2d(nf, nf, 3, 1, 1)
        self.conv_last = nn.Conv2d(nf, out_ch, 3, 1, 1)
        self.act = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        for up in self.ups:
            feat = self.act(up(feat))
        return self.conv_last(self.act(self.conv_hr(feat)))


def sobel_edge_loss(sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of the Sobel x/y derivatives of every channel (ref. [2]'s edge term)."""
    grad = kornia.filters.spatial_gradient
    return F.mse_loss(grad(sr, mode="sobel"), grad(hr, mode="sobel").detach())


class ReconstructionLoss(nn.Module):
    """J_recon of eq. 1, returned by parts: ``pix`` = eta * L1, ``per`` = w_per * VGG perceptual and,
    for SRNet-w (``edge_weight`` > 0), ``edge`` = edge_weight * :func:`sobel_edge_loss`."""

    def __init__(self, perceptual: PerceptualLoss | None, eta: float = 1e-2, w_per: float = 1.0,
                 edge_weight: float = 0.0):
        super().__init__()
        self.perceptual, self.eta, self.w_per, self.edge_weight = perceptual, eta, w_per, edge_weight

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> dict[str, torch.Tensor]:
        parts = {"pix": self.eta * F.l1_loss(sr, hr)}
        if self.perceptual is not None and self.w_per:
            parts["per"] = self.w_per * self.perceptual(sr, hr)
        if self.edge_weight:
            parts["edge"] = self.edge_weight * sobel_edge_loss(sr, hr)
        return parts


class SRNetModule(SRModule):
    """SRModule trained on J_recon (eq. 1, Fig. 2a "Stage 1") instead of a bare pixel loss."""

    def __init__(self, net: nn.Module, scale: int, recon: ReconstructionLoss, lr: float = 1e-4,
                 betas: Sequence[float] = (0.9, 0.99), milestones: Sequence[int] = (), gamma: float = 0.5):
        super().__init__(net, scale, lr=lr, betas=betas, milestones=milestones, gamma=gamma, loss="l1")
        self.save_hyperparameters(ignore=["net", "recon"])
        self.recon = recon

    def training_step(self, batch, batch_idx):
        parts = self.recon(self(batch["lr"]), batch["hr"])
        loss = sum(parts.values())
        self.log_dict({f"train/{k}": v for k, v in parts.items()} | {"train/loss": loss}, prog_bar=True)
        return loss


PAPER = dict(nf=64, nb=23, gc=32, patch=128, batch=16, steps=500_000,
             milestones=(100_000, 200_000, 300_000, 400_000), eta=1e-2, edge_weight=0.1, lr=1e-4)
SMOKE = dict(nf=16, nb=2, gc=8, patch=64, batch=4, steps=1200, milestones=(600,), eta=1e-2, edge_weight=0.1, lr=2e-3)


def build_generator(ctx: BuildContext, cfg: dict) -> SRNet:
    return SRNet(ctx.in_channels, ctx.in_channels, cfg["nf"], cfg["nb"], cfg["gc"], ctx.scale)


def build_reconstruction_loss(ctx: BuildContext, cfg: dict, edge: bool) -> ReconstructionLoss:
    """J_recon with the paper's VGG16 term; in smoke without the user's VGG16 weights the VGG term is
    off and eta * L1 (and the edge term) are scaled by 1 / eta, so that J_recon keeps its unit weight
    against w_adv * J_adv in rVTT.  A random VGG16 is no stand-in here: with a He-initialised one the
    smoke SRNet's output saturated (7 dB on six test images after 600 steps in development)."""
    per = PerceptualLoss(("relu2_2",), criterion="mse", arch="vgg16", weights_dir=ctx.weights_dir,
                         allow_random=ctx.profile == "smoke")
    edge_weight = cfg["edge_weight"] if edge else 0.0
    if per.random_init:
        return ReconstructionLoss(None, eta=1.0, w_per=0.0, edge_weight=edge_weight / cfg["eta"])
    return ReconstructionLoss(per, eta=cfg["eta"], w_per=1.0, edge_weight=edge_weight)


def vgg_note(recon: ReconstructionLoss) -> str:
    if recon.perceptual is None:
        return "smoke: no pretrained VGG16, J_recon = L1 (+ edge) scaled by 1/eta in place of the VGG term"
    return ""


def _builder(edge: bool):
    def build(ctx: BuildContext) -> tuple[SRNetModule, TrainPlan]:
        cfg = PAPER if ctx.profile == "paper" else SMOKE
        recon = build_reconstruction_loss(ctx, cfg, edge)
        module = SRNetModule(build_generator(ctx, cfg), ctx.scale, recon, lr=cfg["lr"], betas=(0.9, 0.99),
                             milestones=cfg["milestones"], gamma=0.5)
        return module, TrainPlan(max_steps=cfg["steps"], batch_size=cfg["batch"], patch_size=cfg["patch"],
                                 notes=vgg_note(recon))
    build.__name__ = "build_srnet_w" if edge else "build_srnet"
    return build


build_srnet = _builder(edge=False)
build_srnet_w = _builder(edge=True)
