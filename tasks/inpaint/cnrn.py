"""CNRN: coarse network + refinement network with global and local attention (Uddin & Jung, "Global and
local attention-based free-form image inpainting", Sensors 2020), a Table 3 baseline of MSSA GAN
(Liang et al. 2022, Sec. 5; its ref. [23]).

Reference: the official PyTorch code ``SayedNadim/Global-and-Local-Attention-Based-Free-Form-Image-
Inpainting``, master branch (``model/network.py``, ``model/Attention.py``, ``scripts/trainer.py``,
``train.py``, ``configs/config.yaml``), the architecture the spec describes (G 4.46 M).  The author
points to a "sensors" branch for reproduction (issue #20); its attention differs (C/8 query/key
convs, DeepFill-style fuse, a 4.37 M generator) and it shares one mask across the batch.

- Both stages (DeepFill-v1 layout, cnum 32, ELU, input RGB + ones + mask): a dilated branch (conv5x5;
  3x3 s2; 3x3 x2c; 3x3 s2; 3x3 x4c; 3x3; dilated 3x3 at 2, 4, 8, 16) beside an attention branch
  (conv5x5; 3x3 s2; 3x3 x2c; 3x3 s2 x4c; 3x3; 3x3 ReLU; attention; 3x3; 3x3); concat; 3x3 x2;
  nearest x2; 3x3 x2; nearest x2; 3x3 c, 3x3 c/2, 3x3 -> 3; clamp to [-1, 1].  The refine stage sees
  the coarse output pasted into the hole.
- Coarse attention (``GlobalAttention``): 1x1 query/key/value at C channels, scores multiplied by the
  query's hole mask ("mask pruning"), softmax over all positions; output ``a * m + (1 - m) * attended``
  (gamma a constant 1: the reference's gamma is a plain tensor, never trained).
- Refine attention (``GlobalLocalAttention``): the global attention with the hole-zeroed map as keys;
  then the background's 3x3 patches, each refined by a channel attention inside the patch
  (``GlobalAttentionPatch``), L2-normalised and matched against every position (conv), scores summed
  over 3x3 neighbours (propagation), restricted to patches without hole pixels, softmax over patches,
  and the patches pasted back (transposed conv).  The reference loops over the batch in Python; here
  one grouped convolution serves the whole batch (same result, per-sample masks).
- Discriminator: 5 spectral-norm conv5x5 s2 (64, 128, 256, 256, 256) + LeakyReLU 0.2, patch output.
- Loss (trainer.py / train.py): G = 1.2 * [0.75 * (1.2 L1_coarse + L1_refine) + 0.25 * (1 - SSIM)] +
  relativistic hinge + mean log(1 + |D(fake) - D(real)|); D = relativistic hinge + the same log term.
  The L1 terms are taken on the VALID region (``(1 - mask)``), as the code does (it looks like a bug,
  spec Sec. 3; ``l1_region='hole'`` flips it); SSIM (Gaussian 11 / 1.5, on the composited coarse and
  refined images in [-1, 1]) by kornia, which pads by reflection where the reference pads with zeros.
  Adam 2e-4, betas (0.5, 0.9) (master config; the sensors branch uses 1e-4), batch 4.
  Output composited (``x2_inpaint``).
- Parameters at paper width: G 4,455,238 (= the reference master's, spec 4.46 M); D 4,306,560.

Fidelity: faithful to the released code; adapted to MSSA's comparison: the task's data, masks and
corruption (x_M keeps its signal; the reference zeroes the hole: ``hole_fill`` None, spec Sec. 3),
the attention width 4 * cnum instead of the hard-coded 128 (equal at paper width), and MSSA's budget.

Protocol ("table"): the reference's optimiser, batch size (4) and loss weights for MSSA's 60 epochs
over the 23,080 training patches (spec Sec. 3).
"""
from __future__ import annotations

import math

import kornia
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm

from benchmark.specs import BuildContext, TrainPlan
from datamodules.kather_inpaint import EXPECTED
from tasks.inpaint.module import InpaintGANModule, plan_notes

PAPER_EPOCHS = 60                                    # MSSA Sec. 4.1, the comparison's budget
REFERENCE_PARAMS = {"generator": 4_455_238, "discriminator": 4_306_560}


def _gen_conv(cin: int, cout: int, k: int = 3, s: int = 1, rate: int = 1, act: str = "elu") -> nn.Sequential:
    layers = [nn.Conv2d(cin, cout, k, s, rate * (k // 2), dilation=rate)]
    if act != "none":
        layers.append(nn.ELU(inplace=True) if act == "elu" else nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def _resize_mask(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(mask, size=size, mode="nearest")


class GlobalAttention(nn.Module):
    """Mask-pruned self-attention over all positions (reference ``GlobalAttention``)."""

    def __init__(self, dim: int):
        super().__init__()
        self.query, self.key, self.value = (nn.Conv2d(dim, dim, 1) for _ in range(3))

    def forward(self, a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        n, c, h, w = a.shape
        m = _resize_mask(mask, (h, w)).flatten(2)                        # B, 1, N (1 = hole)
        q = self.query(a).flatten(2).transpose(1, 2)                     # B, N, C
        k = self.key(b).flatten(2)                                       # B, C, N
        scores = (q @ k) * m.transpose(1, 2)                             # rows of hole queries kept, others 0
        out = self.value(a).flatten(2) @ scores.softmax(-1).transpose(1, 2)
        m = m.view(n, 1, h, w)
        return a * m + (1 - m) * out.view(n, c, h, w)


class PatchChannelAttention(nn.Module):
    """``GlobalAttentionPatch``: channel attention inside each 3x3 patch, x (P, C, 9), m (P, C, 9)."""

    def __init__(self, dim: int):
        super().__init__()
        self.query, self.key, self.value = (nn.Linear(dim, dim) for _ in range(3))   # = 1x1 convs

    def forward(self, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        xt = x.transpose(1, 2)                                           # P, 9, C
        q, k, v = (f(xt).transpose(1, 2) for f in (self.query, self.key, self.value))   # P, C, 9
        energy = ((q @ k.transpose(1, 2)) @ m).softmax(-1)               # P, C, 9
        return x * m + (1 - m) * energy * v


class GlobalLocalAttention(nn.Module):
    """Reference ``GlobalLocalAttention`` (3x3 patches, propagation 3), batched with grouped convolutions."""

    def __init__(self, dim: int, patch: int = 3, propagate: int = 3):
        super().__init__()
        self.patch, self.propagate = patch, propagate
        self.feature_attention = GlobalAttention(dim)
        self.patch_attention = PatchChannelAttention(dim)

    def forward(self, f: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        n, c, h, w = f.shape
        k, pad = self.patch, self.patch // 2
        m = _resize_mask(mask, (h, w))
        background = f * (1 - m)
        fg = self.feature_attention(f, background, mask)
        kernels = F.unfold(background, k, padding=pad).view(n, c, k * k, -1).permute(0, 3, 1, 2) + 1e-7
        mk = F.unfold(m, k, padding=pad).view(n, 1, k * k, -1).permute(0, 3, 1, 2)          # B, L, 1, 9
        length = kernels.shape[1]
        kernels = self.patch_attention(kernels.reshape(n * length, c, k * k),
                                       mk.expand(-1, -1, c, -1).reshape(n * length, c, k * k))
        kernels = kernels / kernels.pow(2).sum((1, 2), keepdim=True).sqrt()
        kernels = kernels.view(n * length, c, k, k)
        scores = F.conv2d(fg.reshape(1, n * c, h, w), kernels, padding=pad, groups=n)        # 1, B*L, H, W
        if self.propagate != 1:  # a ones kernel on every score map = sum over the 3x3 neighbourhood
            scores = F.avg_pool2d(scores, self.propagate, 1, self.propagate // 2,
                                  count_include_pad=True) * self.propagate ** 2
        valid = (mk.mean((2, 3)) == 0).to(f.dtype).view(n, length, 1, 1)                   # patches w/o hole
        scores = scores.view(n, length, h, w) * valid
        attn = scores.softmax(1) * valid
        out = F.conv_transpose2d(attn.view(1, n * length, h, w), kernels, padding=pad, groups=n)
        return out.view(n, c, h, w)


class CNRNStage(nn.Module):
    """One stage (coarse: global attention; refine: global + local attention) at width ``cnum``."""

    def __init__(self, cnum: int = 32, refine: bool = False, in_ch: int = 5):
        super().__init__()
        c, c2, c4 = cnum, 2 * cnum, 4 * cnum
        self.dilated = nn.Sequential(
            _gen_conv(in_ch, c, 5), _gen_conv(c, c, 3, 2), _gen_conv(c, c2), _gen_conv(c2, c2, 3, 2),
            _gen_conv(c2, c4), _gen_conv(c4, c4), *(_gen_conv(c4, c4, rate=r) for r in (2, 4, 8, 16)))
        self.attention_in = nn.Sequential(
            _gen_conv(in_ch, c, 5), _gen_conv(c, c, 3, 2), _gen_conv(c, c2), _gen_conv(c2, c4, 3, 2),
            _gen_conv(c4, c4), _gen_conv(c4, c4, act="relu"))
        self.attention = GlobalLocalAttention(c4) if refine else GlobalAttention(c4)
        self.attention_out = nn.Sequential(_gen_conv(c4, c4), _gen_conv(c4, c4))
        self.merge = nn.Sequential(_gen_conv(2 * c4, c4), _gen_conv(c4, c4))
        self.up1 = nn.Sequential(_gen_conv(c4, c2), _gen_conv(c2, c2))
        self.up2 = nn.Sequential(_gen_conv(c2, c), _gen_conv(c, c // 2), _gen_conv(c // 2, 3, act="none"))
        self.refine = refine

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        xnow = torch.cat([x, torch.ones_like(mask), mask], 1)
        hallu = self.dilated(xnow)
        a = self.attention_in(xnow)
        a = self.attention(a, mask) if self.refine else self.attention(a, a, mask)
        y = self.merge(torch.cat([hallu, self.attention_out(a)], 1))
        y = self.up1(F.interpolate(y, scale_factor=2, mode="nearest"))
        y = self.up2(F.interpolate(y, scale_factor=2, mode="nearest"))
        return y.clamp(-1, 1)


class CNRNGenerator(nn.Module):
    """Coarse then refine; returns [coarse, refined] raw outputs in [-1, 1]."""

    def __init__(self, cnum: int = 32):
        super().__init__()
        self.coarse = CNRNStage(cnum, refine=False)
        self.fine = CNRNStage(cnum, refine=True)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
        x1 = self.coarse(x, mask)
        return [x1, self.fine(x1 * mask + x * (1 - mask), mask)]


class CNRNDiscriminator(nn.Sequential):
    """Five spectral-norm conv5x5 stride 2 + LeakyReLU 0.2 (64, 128, 256, 256, 256): a patch of logits."""

    def __init__(self, nf: int = 64, in_ch: int = 3):
        chans = [in_ch, nf, 2 * nf, 4 * nf, 4 * nf, 4 * nf]
        layers = []
        for cin, cout in zip(chans[:-1], chans[1:]):
            layers += [spectral_norm(nn.Conv2d(cin, cout, 5, 2, 2)), nn.LeakyReLU(0.2, inplace=True)]
        super().__init__(*layers)


def _relativistic_hinge(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """(mean relu(1 - (pos - mean neg)) + mean relu(1 + (neg - mean pos))) / 2 (the reference's)."""
    return (F.relu(1 - (pos - neg.mean())).mean() + F.relu(1 + (neg - pos.mean())).mean()) / 2


class CNRNModule(InpaintGANModule):
    """The reference's G and D objectives (see the module docstring)."""

    def __init__(self, net, discriminator, l1_region: str = "valid", w_coarse: float = 1.2,
                 w_rec: float = 1.2, **kw):
        if l1_region not in ("valid", "hole"):
            raise ValueError(f"l1_region {l1_region!r}: expected 'valid' (reference) or 'hole'")
        super().__init__(net, discriminator, gan="relativistic hinge", **kw)
        self.save_hyperparameters(ignore=["net", "discriminator"])

    def reconstruction_losses(self, batch, outs):
        hp, mask, gt = self.hparams, batch["mask"], self.target(batch)
        region = 1 - mask if hp.l1_region == "valid" else mask
        l1 = hp.w_coarse * F.l1_loss(outs[0] * region, gt * region) + F.l1_loss(outs[1] * region, gt * region)
        ssim = sum(1 - kornia.metrics.ssim(gt, self.composited(o, batch), 11).mean() for o in outs) / 2
        return {"l1": hp.w_rec * 0.75 * l1, "ssim": hp.w_rec * 0.25 * ssim}

    def adversarial_loss(self, batch, outs):
        d = self.discriminator
        fake, real = d(self.composited(outs[-1], batch)), d(self.target(batch))
        return _relativistic_hinge(fake, real) + torch.log1p((fake - real).abs()).mean()

    def discriminator_loss(self, batch, outs):
        d = self.discriminator
        real, fake = d(self.target(batch)), d(self.composited(outs[-1].detach(), batch))
        return _relativistic_hinge(real, fake) + torch.log1p((real - fake).abs()).mean()


PAPER = dict(cnum=32, d_nf=64, batch=4, lr=2e-4, patch=0)
SMOKE = dict(cnum=8, d_nf=8, batch=4, lr=1e-3, patch=64, steps=60)


def build_cnrn(ctx: BuildContext) -> tuple[CNRNModule, TrainPlan]:
    paper = ctx.profile == "paper"
    cfg = PAPER if paper else SMOKE
    module = CNRNModule(CNRNGenerator(cfg["cnum"]), CNRNDiscriminator(cfg["d_nf"]), composite=True, hole_fill=None,
                        lr=cfg["lr"], betas=(0.5, 0.9))
    steps = PAPER_EPOCHS * math.ceil(EXPECTED["NCT-CRC-HE-100K"] / cfg["batch"]) if paper else cfg["steps"]
    notes = plan_notes(module, ctx, "L1 on the valid region (reference)", "" if paper else "smoke cnum 8")
    return module, TrainPlan(max_steps=steps, batch_size=cfg["batch"], patch_size=cfg["patch"], notes=notes)
