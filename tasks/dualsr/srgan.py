"""SRGAN: Ledig et al., "Photo-Realistic Single Image Super-Resolution Using a Generative Adversarial
Network", CVPR 2017 -- a Table 3 baseline of SNADN (Liang et al. 2023, §3.3, Table 3, "SRgan").

Fidelity: faithful to the paper (Fig. 4, §2.2, §3.2); layer-for-layer the PyTorch SRGAN ports.
* Generator = SRResNet (Fig. 4): 9x9 conv 3->64 + PReLU; 16 residual blocks (conv3x3-BN-PReLU-
  conv3x3-BN + identity); conv3x3-BN + the long skip; log2(s) x [conv3x3 64->256, PixelShuffle(2),
  PReLU]; 9x9 conv 64->3.  Single-slope PReLUs (``nn.PReLU()``): 1,549,462 (x4) / 1,401,749 (x2)
  parameters.  (tasks/sr/qegan's SRResNet level uses per-channel PReLUs, +1,197 parameters, hence a
  block of its own here.)  SNADN prints 1.6 M for both scales: x4 rounds to it (the other rows of
  Table 3 are truncated), x2 looks like the x4 count reused (spec §3).  Linear output (no tanh): the
  benchmark's images are in [0, 1] and the metrics clamp.
* Discriminator (Fig. 4): tasks/common/discriminators.SRGANDiscriminator at the HR patch size.
* Losses (§2.2, Eqs. 3-6): SRGAN-VGG54, the paper's SRGAN: content = MSE of VGG19 phi_5,4 (relu5_4)
  feature maps rescaled by 1/12.75 (i.e. weight 1/12.75^2 on the MSE); adversarial = 1e-3 x
  -log D(G(LR)) (the non-saturating "vanilla" loss); D on the standard BCE.
* Schedule (§3.2): the generator is first trained as SRResNet on the pixel MSE (the paper's 1e6
  iterations), then the GAN for 1e5 iterations at lr 1e-4 and 1e5 at 1e-5; Adam beta1 0.9, batch 16,
  HR 96x96 crops.

Training protocol (SNADN Table 3; SNADN states its own settings only, §3.1): the task's common budget
of 100 epochs over the 16,000 training patches at each method's own batch (16) = 100,000 iterations,
split as SRGAN's own 1e6 : 2e5 schedule is: 83,333 iterations of SRResNet MSE pre-training, then 16,667
GAN iterations, lr x0.1 halfway through the GAN phase.  Pre-training and GAN run in one module
(``PlainSRGANModule``, tasks/common/gan.ManualGANSteps).  VGG19 from MIRBENCH_WEIGHTS (``needs``).
"""
from __future__ import annotations

import torch
from torch import nn

from benchmark.specs import BuildContext, TrainPlan
from tasks.common.discriminators import SRGANDiscriminator
from tasks.common.layers import PixelShuffleUpsampler
from tasks.common.losses import PerceptualLoss, perceptual_or_pixel
from tasks.dualsr.module import PlainSRGANModule

VGG54_SCALE = 1 / 12.75   # Ledig §3.2 footnote: VGG feature maps rescaled by 1/12.75 (MSE of them)


class _ResidualBlock(nn.Module):
    """SRResNet block: conv3x3-BN-PReLU-conv3x3-BN + identity (Fig. 4)."""

    def __init__(self, nf: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(nf, nf, 3, 1, 1), nn.BatchNorm2d(nf), nn.PReLU(),
                                  nn.Conv2d(nf, nf, 3, 1, 1), nn.BatchNorm2d(nf))

    def forward(self, x):
        return x + self.body(x)


class SRResNet(nn.Module):
    """SRGAN's generator (Fig. 4)."""

    def __init__(self, scale: int, nf: int = 64, n_blocks: int = 16, in_ch: int = 3):
        super().__init__()
        self.head = nn.Sequential(nn.Conv2d(in_ch, nf, 9, 1, 4), nn.PReLU())
        self.body = nn.Sequential(*(_ResidualBlock(nf) for _ in range(n_blocks)),
                                  nn.Conv2d(nf, nf, 3, 1, 1), nn.BatchNorm2d(nf))
        self.tail = nn.Sequential(PixelShuffleUpsampler(nf, scale, act=nn.PReLU), nn.Conv2d(nf, in_ch, 9, 1, 4))

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        feat = self.head(lr)
        return self.tail(feat + self.body(feat))


def _epochs_to_iterations(epochs: int, n_train: int, batch: int) -> int:
    return epochs * n_train // batch


_PAPER_ITERS = _epochs_to_iterations(100, 16_000, 16)                    # 100,000
PAPER = dict(nf=64, n_blocks=16, nf_d=64, batch=16, patch=96, lr=1e-4, steps=_PAPER_ITERS,
             pretrain=_PAPER_ITERS * 10 // 12)                             # SRGAN's 1e6 : 2e5
# smoke: 64 px crops at both scales (SRResNet's BatchNorm statistics from 32 px crops cost x2 5 dB on the
# whole 224 px test images) and 800 pixel iterations (21.68 / 22.67 dB at 32 px / 600 before)
SMOKE = dict(nf=16, n_blocks=4, nf_d=16, batch=4, patch={2: 64, 4: 64}, lr=2e-3, steps=820, pretrain=800,
             gan_lr_scale=0.1)


def build_srgan(ctx: BuildContext) -> tuple[PlainSRGANModule, TrainPlan]:
    cfg = PAPER if ctx.profile == "paper" else SMOKE
    patch = cfg["patch"][ctx.scale] if isinstance(cfg["patch"], dict) else cfg["patch"]
    per = PerceptualLoss(("relu5_4",), weights=[VGG54_SCALE ** 2], criterion="mse", arch="vgg19",
                         weights_dir=ctx.weights_dir, allow_random=ctx.profile == "smoke")
    # smoke without the user's VGG19: content = pixel MSE (the shared rule, tasks/common/losses)
    per, w_pix, w_per, note = perceptual_or_pixel(per, w_pix=0.0, w_per=1.0)
    gan_iters = cfg["steps"] - cfg["pretrain"]
    # paper: lr x0.1 halfway through the GAN phase; smoke: the short GAN phase at lr x gan_lr_scale
    if ctx.profile == "paper":
        milestones, gamma = (cfg["pretrain"] + gan_iters // 2,), 0.1
    else:
        milestones, gamma = (cfg["pretrain"],), cfg["gan_lr_scale"]
    module = PlainSRGANModule(SRResNet(ctx.scale, cfg["nf"], cfg["n_blocks"], ctx.in_channels),
                              SRGANDiscriminator(ctx.in_channels, cfg["nf_d"], input_size=patch), ctx.scale, per,
                              w_pix=w_pix, w_per=w_per, w_adv=1e-3, gan="vanilla", pretrain_steps=cfg["pretrain"],
                              lr=cfg["lr"], betas=(0.9, 0.999), milestones=milestones,
                              gamma=gamma, loss="mse")
    notes = note
    if ctx.profile == "paper":
        return module, TrainPlan(max_steps=cfg["steps"], batch_size=cfg["batch"], patch_size=patch, notes=notes)
    notes = "; ".join(n for n in (notes, f"smoke: SRResNet {cfg['pretrain']} it. at lr {cfg['lr']:g}, then "
                                  f"GAN {gan_iters} it. at lr {cfg['lr'] * gamma:g}") if n)
    return module, TrainPlan(max_steps=cfg["steps"], batch_size=cfg["batch"], patch_size=patch, notes=notes,
                             val_every_n_steps=cfg["steps"])
