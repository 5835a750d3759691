"""CSNL (CSNLN): Mei et al., "Image Super-Resolution with Cross-Scale Non-Local Attention and Exhaustive
Self-Exemplars Mining", CVPR 2020 -- a Table 3 baseline of SNADN (Liang et al. 2023, §3.3, Table 3).

Fidelity: faithful to the official code (SHI-Labs/Cross-Scale-Non-Local-Attention, ``csnln.py`` and
``attention.py``), rebuilt here (not copied) and checked against it in the tests:

* Head (§3.3): two 3x3 conv + PReLU.  Input minus the DIV2K RGB mean, added back at the end (MeanShift).
* Self-Exemplars Mining cell (§3.2, Fig. 3), ONE cell whose weights are shared over ``depth`` = 12
  recurrences (the official ``self.SEM`` is called depth times):
  - in-scale non-local attention (§3.1, Eq. 1): 1x1 conv + PReLU embeddings at C/2, softmax of the raw
    dot products over all positions (the official module has no temperature here);
  - cross-scale non-local attention (§3.1, Eqs. 2-4): the features downscaled by s (bilinear) give the
    keys as 3x3 patches (L2-normalised, eps 1e-4), each query 3x3 patch of the LR features scores them
    (softmax with temperature 10), and the matching (s*3)x(s*3) patches of the un-downscaled features are
    pasted at stride s (a transposed convolution; the official code divides the sum by 6);
  - mutual-projected fusion (§3.2, Eqs. 5-6): up = CS(x); down = deconv(NL(x)); fused = down +
    ResBlock(up - down), then the back-projection (x - down_conv(fused)) -> deconv added back.
    At x4 the cell runs two x2 projections (the official ``scale == 4`` branch).
* Tail (§3.3): concatenation of the ``depth`` HR feature maps -> 3x3 conv -> RGB.
* Every PReLU is single-slope (``nn.PReLU()``), as in the official code.

Width (SNADN Table 3): n_feats = 64, attention width 64 too (the official attention modules default to
128 channels and must be given n_feats), depth 12: 776,977 (x2) / 1,654,107 (x4) parameters, printed
truncated by SNADN as 0.7 M / 1.6 M.  The official n_feats 128 gives 3.06 M / 6.57 M.

The attention is written with batched matrix products instead of the official per-image loops:
the cross-scale paste is ``fold`` of (patches x attention), the same sum as its ``conv_transpose2d``;
the in-scale attention uses ``scaled_dot_product_attention`` (no (HW)^2 matrix on fused kernels).

Training protocol (the one of SNADN's Table 3; SNADN §3.1 states its own settings only): the core task
protocol of tasks/dualsr/module.py (same split, LR operator and 100 epochs for every row), CSNLN's own
loss and optimiser from its code: L1, Adam 1e-4 (0.9, 0.999), lr x0.5 at every 20% of training
(official: every 200 of 1,000 epochs), batch 16, HR patch 96 (x2) / 128 (x4; the authors' advice for
memory, their issue #1).  100 epochs of 16,000 patches at batch 16 = 100,000 iterations.

Smoke profile: n_feats 8, depth 1, lr 4e-3 (halved at 75 %); 2,400 iterations on 32 px crops (x2) and
1,200 on 48 px crops (x4): both attentions are quadratic in the LR pixels (a 224 px test image costs 120
GFLOPs at n_feats 16 / depth 2), so CPU smoke rows stay tiny.  At 600 iterations neither scale beat
bicubic (x2 28.37 dB against 29.88); at these budgets both do (30.15 / 23.98).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.specs import BuildContext, TrainPlan
from tasks.common.layers import DIV2K_RGB_MEAN
from tasks.dualsr.module import PlainSRModule


def _conv_prelu(cin: int, cout: int, k: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, 1, k // 2), nn.PReLU())


class _PReLUResBlock(nn.Module):
    """conv3x3 - PReLU - conv3x3 + identity (EDSR ResBlock with CSNLN's PReLU)."""

    def __init__(self, nf: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(nf, nf, 3, 1, 1), nn.PReLU(), nn.Conv2d(nf, nf, 3, 1, 1))

    def forward(self, x):
        return x + self.body(x)


class InScaleAttention(nn.Module):
    """In-scale non-local attention (§3.1): softmax over all positions of <theta(x_i), phi(x_j)>, applied to
    g(x); theta, phi = 1x1 conv + PReLU to C/reduction, g = 1x1 conv + PReLU to C.  No residual."""

    def __init__(self, channels: int, reduction: int = 2):
        super().__init__()
        self.match1 = _conv_prelu(channels, channels // reduction, 1)
        self.match2 = _conv_prelu(channels, channels // reduction, 1)
        self.assembly = _conv_prelu(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q = self.match1(x).flatten(2).transpose(1, 2)[:, None]          # B, 1, HW, C/2
        k = self.match2(x).flatten(2).transpose(1, 2)[:, None]
        v = self.assembly(x).flatten(2).transpose(1, 2)[:, None]        # B, 1, HW, C
        out = F.scaled_dot_product_attention(q, k, v, scale=1.0)
        return out[:, 0].transpose(1, 2).reshape(b, c, h, w)


class CrossScaleAttention(nn.Module):
    """Cross-scale non-local attention (§3.1, Eqs. 2-4): LR features x (C, H, W) -> (C, sH, sW).

    Keys: ksize x ksize patches of phi(bilinear_down_s(x)), L2-normalised; queries: ksize x ksize patches of
    theta(x); values: the (s*ksize)^2 patches of g(x) at stride s whose centres map onto the keys' centres.
    Each query position pastes the attention-weighted value patch at stride s into the output, / 6.
    """

    def __init__(self, channels: int, scale: int = 2, reduction: int = 2, ksize: int = 3,
                 softmax_scale: float = 10.0, eps: float = 1e-4):
        super().__init__()
        self.scale, self.ksize, self.softmax_scale, self.eps = scale, ksize, softmax_scale, eps
        self.match1 = _conv_prelu(channels, channels // reduction, 1)
        self.match2 = _conv_prelu(channels, channels // reduction, 1)
        self.assembly = _conv_prelu(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        s, k = self.scale, self.ksize
        if h % s or w % s:
            raise ValueError(f"CrossScaleAttention x{s} needs sides divisible by {s}, got {h}x{w}")
        values = F.unfold(self.assembly(x), s * k, padding=s, stride=s)                   # B, C*(sk)^2, L
        small = self.match2(F.interpolate(x, scale_factor=1 / s, mode="bilinear"))
        keys = F.unfold(small, k, padding=k // 2).transpose(1, 2)                         # B, L, C/2*k^2
        keys = keys / keys.norm(dim=2, keepdim=True).clamp_min(self.eps)
        queries = F.unfold(self.match1(x), k, padding=k // 2).transpose(1, 2)             # B, HW, C/2*k^2
        pasted = F.scaled_dot_product_attention(queries[:, None], keys[:, None], values.transpose(1, 2)[:, None],
                                                scale=self.softmax_scale)[:, 0]            # B, HW, C*(sk)^2
        out = F.fold(pasted.transpose(1, 2), (h * s, w * s), s * k, padding=s, stride=s)
        return out / 6.0


class _MutualProjection(nn.Module):
    """Mutual-projected fusion (§3.2, Eq. 5): x2 upsampled features from the in-scale and cross-scale
    branches, fused by projecting their difference through a residual block."""

    def __init__(self, nf: int):
        super().__init__()
        self.cross_scale = CrossScaleAttention(nf, scale=2)
        self.in_scale = InScaleAttention(nf)
        self.upsample = nn.Sequential(nn.ConvTranspose2d(nf, nf, 6, 2, 2), nn.PReLU())
        self.encoder = _PReLUResBlock(nf)

    def forward(self, x):
        down = self.upsample(self.in_scale(x))
        return down + self.encoder(self.cross_scale(x) - down)


class SelfExemplarMiningCell(nn.Module):
    """SEM cell (§3.2, Fig. 3): mutual projection(s) up to HR + back-projection of the LR error.
    Returns (LR features for the next recurrence, HR features for the tail)."""

    def __init__(self, nf: int, scale: int):
        super().__init__()
        if scale not in (2, 4):
            raise ValueError(f"CSNL supports x2 and x4, got x{scale}")
        self.scale = scale
        # declared in the official order (so parameters line up with its state dict in the tests)
        self.project = _MutualProjection(nf)
        self.down1 = nn.Sequential(nn.Conv2d(nf, nf, 6, 2, 2), nn.PReLU())
        if scale == 2:
            self.down_final = nn.Sequential(nn.Conv2d(nf, nf, 6, 2, 2), nn.PReLU())
        self.error_up = nn.Sequential(nn.ConvTranspose2d(nf, nf, 6, 2, 2), nn.PReLU())
        self.post = _conv_prelu(nf, nf, 3)
        if scale == 4:  # the official x4 cell: a second x2 projection, back-projected from the LR at stride 4
            self.project2 = _MutualProjection(nf)
            self.down2 = nn.Sequential(nn.Conv2d(nf, nf, 8, 4, 2), nn.PReLU())
            self.down_final = nn.Sequential(nn.Conv2d(nf, nf, 8, 4, 2), nn.PReLU())
            self.error_up2 = nn.Sequential(nn.ConvTranspose2d(nf, nf, 8, 4, 2), nn.PReLU())

    def forward(self, x):
        up = self.project(x)
        hr = up + self.error_up(x - self.down1(up))
        if self.scale == 4:
            up = self.project2(hr)
            hr = up + self.error_up2(x - self.down2(up))
        return self.post(self.down_final(hr)), hr


class CSNLN(nn.Module):
    def __init__(self, scale: int, n_feats: int = 64, depth: int = 12, in_ch: int = 3):
        super().__init__()
        self.depth = depth
        self.register_buffer("rgb_mean", torch.tensor(DIV2K_RGB_MEAN[:in_ch]).view(1, -1, 1, 1), persistent=False)
        self.head = nn.Sequential(_conv_prelu(in_ch, n_feats, 3), _conv_prelu(n_feats, n_feats, 3))
        self.sem = SelfExemplarMiningCell(n_feats, scale)        # one cell, shared over the recurrences
        self.tail = nn.Conv2d(n_feats * depth, in_ch, 3, 1, 1)

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        x = self.head(lr - self.rgb_mean)
        hrs = []
        for _ in range(self.depth):
            x, hr = self.sem(x)
            hrs.append(hr)
        return self.tail(torch.cat(hrs, 1)) + self.rgb_mean


PAPER = dict(n_feats=64, depth=12, batch=16, patch={2: 96, 4: 128}, lr=1e-4)
SMOKE = dict(n_feats=8, depth=1, batch=4, patch={2: 32, 4: 48}, lr=4e-3, steps={2: 2400, 4: 1200})


def _paper_steps(batch: int) -> int:
    return 100 * 16_000 // batch           # the task's 100 epochs of 16,000 training patches


def build_csnl(ctx: BuildContext) -> tuple[PlainSRModule, TrainPlan]:
    cfg = PAPER if ctx.profile == "paper" else SMOKE
    steps = _paper_steps(cfg["batch"]) if ctx.profile == "paper" else cfg["steps"][ctx.scale]
    # official: lr x0.5 every 200 of 1,000 epochs -> at every fifth of training
    milestones = tuple(steps * k // 5 for k in range(1, 5)) if ctx.profile == "paper" else (steps * 3 // 4,)
    module = PlainSRModule(CSNLN(ctx.scale, cfg["n_feats"], cfg["depth"], ctx.in_channels), ctx.scale, lr=cfg["lr"],
                           betas=(0.9, 0.999), milestones=milestones, gamma=0.5, loss="l1")
    if ctx.profile == "paper":
        return module, TrainPlan(max_steps=steps, batch_size=cfg["batch"], patch_size=cfg["patch"][ctx.scale])
    return module, TrainPlan(max_steps=steps, batch_size=cfg["batch"], patch_size=cfg["patch"][ctx.scale],
                             val_every_n_steps=steps,  # one validation: a 224 px pass costs seconds
                             notes=f"smoke: n_feats {cfg['n_feats']}, depth {cfg['depth']}, {steps} it., "
                                   f"lr {cfg['lr']:g} halved at 75 %")
