"""RCAN (Zhang et al., "Image Super-Resolution Using Very Deep Residual Channel Attention Networks",
ECCV 2018), a CNN baseline of MASRGAN's Table 1 (its ref. [16]).

Network (Sec. 3, Fig. 2-4): 3x3 head conv; residual-in-residual body of G = 10 residual groups, each
B = 20 residual channel-attention blocks (RCAB: conv-ReLU-conv, channel attention, identity skip) and
a 3x3 conv with a short skip; a body conv with the long skip; sub-pixel upsampler (ESPCN) and a 3x3
conv to RGB.  C = 64 features, channel-attention reduction r = 16 (Sec. 4.1).  As in the official
(EDSR-PyTorch based) code, images are taken to the 0-255 range and the DIV2K RGB mean
(0.4488, 0.4371, 0.4040) is subtracted at the input and added back at the output.  At x4 the network
has 15,592,355 trainable parameters (the official code reports 15,592,379: it also counts the 24
frozen weights of its two 1x1 MeanShift convs, which are buffers here).

Training: in MASRGAN's Table 1 the Table protocol (tasks/sr/protocol.py); RCAN's own recipe (Sec. 4.1,
the separately registered "RCAN (own recipe)"): L1 loss; Adam beta (0.9, 0.999), eps 1e-8; lr 1e-4 halved every 2e5
iterations; batch 16 of 48x48 LR patches (192x192 HR at x4); the official script runs 1000 epochs of
1000 iterations (1e6).  The paper starts x3/x4 training from its x2 model; here x4 trains from
scratch (the benchmark has one scale per dataset).  The paper's random flips/rotations are the
dataset's business (PathImgSR trains without augmentation, MASRGAN Sec. 4.2).
"""
from __future__ import annotations

import torch
from torch import nn

from benchmark.specs import BuildContext, TrainPlan
from tasks.common.layers import PixelShuffleUpsampler
from tasks.sr.module import SRModule
from tasks.sr.protocol import psnr_training

DIV2K_MEAN = (0.4488, 0.4371, 0.4040)


class ChannelAttention(nn.Module):
    """CA gate (Eq. 5-9): global average pool, 1x1 conv C -> C/r, ReLU, 1x1 conv -> C, sigmoid.

    Hand-written rather than timm's SEModule (the same layers) because it returns the gate alone,
    so that RCAB can fuse "features * gate + skip" into one addcmul.
    """

    def __init__(self, nf: int = 64, reduction: int = 16):
        super().__init__()
        self.gate = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(nf, nf // reduction, 1), nn.ReLU(inplace=True),
                                  nn.Conv2d(nf // reduction, nf, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gate(x)


class RCAB(nn.Module):
    """Residual channel-attention block (Eq. 10-12): x + CA(f) * f with f = conv(ReLU(conv(x)))."""

    def __init__(self, nf: int = 64, reduction: int = 16):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(nf, nf, 3, 1, 1), nn.ReLU(inplace=True), nn.Conv2d(nf, nf, 3, 1, 1))
        self.attention = ChannelAttention(nf, reduction)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.body(x)
        return torch.addcmul(x, f, self.attention(f))  # one fused kernel for gate and skip


class ResidualGroup(nn.Module):
    """B RCABs and a 3x3 conv, with a short skip connection (Eq. 4)."""

    def __init__(self, nf: int = 64, n_blocks: int = 20, reduction: int = 16):
        super().__init__()
        self.body = nn.Sequential(*(RCAB(nf, reduction) for _ in range(n_blocks)), nn.Conv2d(nf, nf, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).add_(x)


class RCAN(nn.Module):
    """Head conv, G residual groups + conv with the long skip, sub-pixel upsampler, conv to RGB."""

    def __init__(self, in_ch: int = 3, out_ch: int = 3, nf: int = 64, n_groups: int = 10, n_blocks: int = 20,
                 reduction: int = 16, scale: int = 4, rgb_range: float = 255.0):
        super().__init__()
        self.scale, self.rgb_range = scale, rgb_range
        mean = DIV2K_MEAN if in_ch == 3 else (sum(DIV2K_MEAN) / 3,) * in_ch
        self.register_buffer("mean", torch.tensor(mean).view(1, in_ch, 1, 1), persistent=False)
        self.head = nn.Conv2d(in_ch, nf, 3, 1, 1)
        self.body = nn.Sequential(*(ResidualGroup(nf, n_blocks, reduction) for _ in range(n_groups)),
                                  nn.Conv2d(nf, nf, 3, 1, 1))
        self.tail = nn.Sequential(PixelShuffleUpsampler(nf, scale), nn.Conv2d(nf, out_ch, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.head((x - self.mean) * self.rgb_range)
        out = self.tail(self.body(feat).add_(feat))
        return out.div_(self.rgb_range).add_(self.mean)


PAPER = dict(nf=64, n_groups=10, n_blocks=20, reduction=16, patch=192, batch=16, steps=1_000_000, lr=1e-4,
             milestones=(200_000, 400_000, 600_000, 800_000))
SMOKE = dict(nf=16, n_groups=2, n_blocks=2, reduction=4, patch=32, batch=4, steps=100, lr=1e-3, milestones=())


def build_rcan(ctx: BuildContext, recipe: str = "table") -> tuple[SRModule, TrainPlan]:
    """RCAN under MASRGAN's Table protocol (:mod:`tasks.sr.protocol`), or ``recipe="own"``: the
    paper's 1e6 iterations of 192 px patches (the "RCAN (own recipe)" variant)."""
    cfg = PAPER if ctx.profile == "paper" else SMOKE
    tr = psnr_training(ctx, cfg, recipe)
    net = RCAN(ctx.in_channels, ctx.in_channels, cfg["nf"], cfg["n_groups"], cfg["n_blocks"], cfg["reduction"],
               ctx.scale)
    module = SRModule(net, ctx.scale, lr=tr["lr"], betas=(0.9, 0.999), milestones=tr["milestones"], gamma=0.5,
                      loss="l1")
    return module, TrainPlan(max_steps=tr["steps"], batch_size=tr["batch"], patch_size=tr["patch"])


def build_rcan_own(ctx: BuildContext) -> tuple[SRModule, TrainPlan]:
    return build_rcan(ctx, "own")
