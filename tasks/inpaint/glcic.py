"""GLCIC: Globally and Locally Consistent Image Completion (Iizuka et al., SIGGRAPH 2017), a Table 3
baseline of MSSA GAN (Liang et al. 2022, Sec. 5).

The official code (``satoshiiizuka/siggraph2017_inpainting``) is inference-only; the training follows
the paper (Sec. 3, Algorithm 1) and the PyTorch reference ``otenim/GLCIC-PyTorch``.

- Completion network (paper Table 1): conv5x5 64; 3x3 s2 128; 3x3 128; 3x3 s2 256; 3x3 256 x 2;
  dilated 3x3 256 at rates 2, 4, 8, 16; 3x3 256 x 2; deconv4x4 128; 3x3 128; deconv4x4 64; 3x3 32;
  3x3 3 + sigmoid.  BN + ReLU after every layer but the last.  Input: the image and the binary mask
  (4 channels).  The sigmoid output in [0, 1] is returned as 2 * sigmoid - 1 (the task's [-1, 1]).
- Context discriminators (Table 2): global 5x5 stride-2 convs 64, 128, 256, 512, 512 (+512 at 256 px)
  -> FC 1024; local on the hole's box 64, 128, 256, 512 (+512) -> FC 1024; concat -> FC 1 (sigmoid in
  the BCE).  :class:`tasks.common.discriminators.GlobalLocalDiscriminator`.
- Loss (eq. 1-3): weighted MSE on the hole, L(x, M_c) = ||M_c (.) (C(x, M_c) - x)||^2 (mean over all
  pixels, as the reference), and alpha = 0.0004 times the GAN loss for both networks; ADADELTA.
- Training (Algorithm 1): T_C iterations of C alone on the MSE, then T_D iterations of D alone, then
  both; the paper's 90k / 10k / 500k total become 18 % / 2 % / 80 % of the budget
  (``InpaintGANModule`` ``pretrain_steps`` and ``d_only_steps``).  D judges the raw completion output
  and the local patch is the hole box (the same box on the real image: the boxes are random).
- Output composited (the paper pastes the completion into the hole).  The Poisson blending
  post-process is dropped, as MMagic's and otenim's trainings do.
- Parameters at paper width: C 6,072,131 (= otenim's CompletionNetwork, spec 6.07 M); D 31,953,409 at
  128 px (spec 31.95 M) and
  45,063,681 at the paper's 256 px (spec 45.06 M).

Fidelity: faithful to the paper's architecture, losses and schedule; adapted to MSSA's comparison: the
task's data, masks and corruption (x_M keeps its signal in the hole; the reference refills the hole
with the training-set mean pixel: ``hole_fill`` None, spec Sec. 3), 128 px inputs (one fewer global
conv; local D on the 64 px hole) and the MSSA budget (below) instead of 500k iterations.

Protocol ("table"): the reference's optimiser (ADADELTA), batch size (96) and loss weight alpha, for
MSSA's 60 epochs over the 23,080 training patches (spec Sec. 3).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.specs import BuildContext, TrainPlan
from datamodules.kather_inpaint import EXPECTED
from tasks.common.discriminators import GlobalLocalDiscriminator, crop_boxes
from tasks.common.losses import d_loss, g_loss
from tasks.inpaint.module import InpaintGANModule, from_net, plan_notes

PAPER_EPOCHS = 60                                    # MSSA Sec. 4.1, the comparison's budget
PHASES = (0.18, 0.02)                                # T_C = 90k and T_D = 10k of 500k iterations (Sec. 4)
REFERENCE_PARAMS = {"generator": 6_072_131, "discriminator": 31_953_409}   # 128 px D


def _cbr(cin: int, cout: int, k: int = 3, s: int = 1, d: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, s, d * (k // 2), dilation=d), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


def _deconv(cin: int, cout: int) -> list[nn.Module]:
    return [nn.ConvTranspose2d(cin, cout, 4, 2, 1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class CompletionNetwork(nn.Module):
    """GLCIC Table 1 at width ``nf`` (64 in the paper)."""

    def __init__(self, nf: int = 64):
        super().__init__()
        c1, c2, c4 = nf, 2 * nf, 4 * nf
        layers = _cbr(4, c1, 5) + _cbr(c1, c2, 3, 2) + _cbr(c2, c2) + _cbr(c2, c4, 3, 2) + _cbr(c4, c4) + _cbr(c4, c4)
        for rate in (2, 4, 8, 16):
            layers += _cbr(c4, c4, d=rate)
        layers += _cbr(c4, c4) + _cbr(c4, c4) + _deconv(c4, c2) + _cbr(c2, c2) + _deconv(c2, c1) + _cbr(c1, nf // 2)
        layers += [nn.Conv2d(nf // 2, 3, 3, 1, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x, mask):
        return 2 * torch.sigmoid(self.net(torch.cat([x, mask], 1))) - 1


class GLCICModule(InpaintGANModule):
    """Hole MSE + alpha * GAN with the global + local context discriminator; ADADELTA for both nets."""

    def __init__(self, net, discriminator, alpha: float = 4e-4, **kw):
        super().__init__(net, discriminator, gan_weight=alpha, gan="vanilla", **kw)
        self.save_hyperparameters(ignore=["net", "discriminator"])

    def _d(self, img: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
        return self.discriminator(img, crop_boxes(img, box))

    def reconstruction_losses(self, batch, outs):
        mask = batch["mask"]  # MSE in the reference's [0, 1] range, hole pixels only, mean over all pixels
        return {"mse": F.mse_loss(from_net(outs[-1]) * mask, batch["image"] * mask)}

    def adversarial_loss(self, batch, outs):
        fake = self._d(outs[-1], batch["box"])
        return self.hparams.gan_weight * g_loss(fake.detach(), fake, "vanilla")

    def discriminator_loss(self, batch, outs):
        real = self._d(self.target(batch), batch["box"])
        fake = self._d(outs[-1].detach(), batch["box"])
        return self.hparams.gan_weight * d_loss(real, fake, "vanilla")

    def configure_optimizers(self):
        hp = self.hparams  # ADADELTA (Sec. 3.3) with torch's defaults (lr 1, rho 0.9)
        opt_g = torch.optim.Adadelta(self.generator_parameters(), lr=hp.lr)
        opt_d = torch.optim.Adadelta(self.discriminator.parameters(), lr=hp.lr_d or hp.lr)
        return [opt_g, opt_d]


PAPER = dict(nf=64, d_nf=64, batch=96, lr=1.0, patch=0)
SMOKE = dict(nf=8, d_nf=8, batch=4, lr=10.0, patch=64, steps=60)   # ADADELTA lr 10: 60 steps learn (SR smoke: 10x lr)


def build_glcic(ctx: BuildContext) -> tuple[GLCICModule, TrainPlan]:
    paper = ctx.profile == "paper"
    cfg = PAPER if paper else SMOKE
    size = 128 if paper else cfg["patch"]        # D sees the training images: 128 px (smoke: 64 px crops)
    disc = GlobalLocalDiscriminator(size, size // 2, cfg["d_nf"], fc=16 * cfg["d_nf"], act="relu")
    steps = PAPER_EPOCHS * math.ceil(EXPECTED["NCT-CRC-HE-100K"] / cfg["batch"]) if paper else cfg["steps"]
    t_c, t_d = (round(f * steps) for f in PHASES)
    module = GLCICModule(CompletionNetwork(cfg["nf"]), disc, alpha=4e-4, composite=True, hole_fill=None,
                         lr=cfg["lr"], pretrain_steps=t_c, d_only_steps=max(t_d, 1))
    return module, TrainPlan(max_steps=steps, batch_size=cfg["batch"], patch_size=cfg["patch"],
                             notes=plan_notes(module, ctx, f"phases T_C {t_c} / T_D {max(t_d, 1)} / joint {steps - t_c - max(t_d, 1)}",
                                              "" if paper else "smoke widths 8"))
