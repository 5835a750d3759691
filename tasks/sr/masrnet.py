"""MASRNet (Chen, Wang, Jia, Ye 2023, "Pathological image super-resolution using mix-attention GAN").

The generator of MASRGAN, trained alone on L1 (Sec. 3.1-3.2, Fig. 2-3, Sec. 4.2):

- a 3x3 conv extracts F_0 (Eq. 1); M = 10 residual overlap blocks (ROBs, Eq. 2), each K = 20 residual
  mix-attention blocks (RMABs); F_0 + trunk(F_M) is upsampled by deconvolution and a 3x3 conv gives
  the image (Eq. 3);
- an RMAB is conv3x3 - ReLU - conv3x3 followed by the mix-attention module, plus its identity;
- the mix-attention module splits the channels into groups; on every group, channel attention
  (GAP - FC - ReLU - FC - sigmoid) and spatial attention (conv - sigmoid) weight the features in
  parallel and the two weighted maps are merged; the groups are re-assembled and the channels
  shuffled so that the next RMAB sees the features in a different grouping;
- Table 2's ablation removes the channel branch, the spatial branch, or the whole module.
- Training (Sec. 3.4, 4.2): L1 (MAE) loss, Adam lr 1e-4 (default betas 0.9/0.999) halved every
  2,000 iterations, batch 16, no data augmentation.

Where the paper is silent we follow RCAN (Zhang et al. 2018), whose 10 x 20 residual-in-residual
trunk MASRNet keeps (same M, K): 64 feature channels; a 3x3 conv closes every ROB before its skip
and closes the trunk before the long skip (Eq. 3 writes F_0 + H_ROB(F_M); we read it as RCAN's
F_0 + Conv(F_M)); no mean shift (inputs are [0, 1] pathology images, not DIV2K).  Mix-attention:
4 groups of 16 channels; channel squeeze 16 -> 4 per group (reduction 4: RCAN's reduction 16 would
leave one hidden unit per group); spatial attention a 7x7 conv per group (CBAM's spatial kernel,
Woo et al. 2018) on the group's features; the two weighted maps are added (scSE's merge, Roy et al.
2018); channel shuffle as ShuffleNet's.  Upsampling: one transposed conv of stride s, kernel 2s,
padding s/2 (DBPN's x4 deconvolution, kernel a multiple of the stride against checkerboards), no
activation (RCAN's upsampler is linear too).  Training: the Table protocol (tasks/sr/protocol.py): HR
patch 128, 20,000 iterations (9 halvings: the last 2,000 run at lr 2e-7).

Channel shuffle: a NO-OP here, said plainly.  The paper shuffles after the grouped attention "so that
the next RMAB sees the features in a different grouping", but the next RMAB begins with a dense 3x3
conv (Fig. 3 shows no grouped convolution), which sees every channel whatever their order.
Relabelling every feature channel of the network by the inverse shuffle maps it onto the network
without the shuffle: the dense convs absorb the relabelling in their weights, the identity skips and
the attention are unchanged by it.  So the network with the shuffle computes exactly the functions
the network without it computes (test_masrnet maps one onto the other's weights and compares outputs).  It would act
only with grouped convolutions around it (ResNeXt / ShuffleNet), which the paper does not describe;
we keep the paper's dense convs and keep the shuffle, as drawn, for the record.
At the paper settings MASRNet has 16,189,539 parameters (mix; none 15,443,139, channel 15,561,539,
spatial 16,071,139); the paper prints no count and no official code is public.
"""
from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from benchmark.specs import BuildContext, TrainPlan
from tasks.sr.module import SRModule
from tasks.sr.protocol import psnr_training

Attention = Literal["none", "channel", "spatial", "mix"]
ATTENTIONS: tuple[str, ...] = ("none", "channel", "spatial", "mix")


class MixAttention(nn.Module):
    """Grouped parallel channel + spatial attention with channel shuffle (Sec. 3.2, Fig. 3).

    ``attention`` selects Table 2's rows: 'channel' or 'spatial' keep one branch, 'mix' both
    (merged by addition).  The per-group FCs are 1x1 convs with ``groups`` (hand-written: timm's
    SE modules have no grouped form).
    """

    def __init__(self, channels: int = 64, groups: int = 4, hidden: int = 4, spatial_kernel: int = 7,
                 attention: Attention = "mix"):
        super().__init__()
        if attention not in ("channel", "spatial", "mix"):
            raise ValueError(f"MixAttention needs a 'channel', 'spatial' or 'mix' attention, got {attention!r}")
        if channels % groups:
            raise ValueError(f"{channels} channels do not split into {groups} groups")
        self.groups = groups
        self.channel = None
        self.spatial = None
        if attention in ("channel", "mix"):
            self.channel = nn.Sequential(nn.AdaptiveAvgPool2d(1),
                                         nn.Conv2d(channels, groups * hidden, 1, groups=groups),
                                         nn.ReLU(inplace=True),
                                         nn.Conv2d(groups * hidden, channels, 1, groups=groups),
                                         nn.Sigmoid())
        if attention in ("spatial", "mix"):
            self.spatial = nn.Sequential(nn.Conv2d(channels, groups, spatial_kernel, 1, spatial_kernel // 2,
                                                   groups=groups),
                                         nn.Sigmoid())
        self.shuffle = nn.ChannelShuffle(groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        weighted = []
        if self.channel is not None:
            weighted.append(x * self.channel(x))
        if self.spatial is not None:  # one (H, W) map per group, broadcast over the group's channels
            maps = self.spatial(x).view(b, self.groups, 1, h, w)
            weighted.append((x.view(b, self.groups, c // self.groups, h, w) * maps).view(b, c, h, w))
        return self.shuffle(sum(weighted[1:], weighted[0]))


class ResidualMixAttentionBlock(nn.Module):
    """RMAB (Sec. 3.1): x + MixAttention(conv3x3(ReLU(conv3x3(x)))); attention 'none' drops the module."""

    def __init__(self, nf: int = 64, groups: int = 4, hidden: int = 4, spatial_kernel: int = 7,
                 attention: Attention = "mix"):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(nf, nf, 3, 1, 1), nn.ReLU(inplace=True), nn.Conv2d(nf, nf, 3, 1, 1))
        self.attention = (nn.Identity() if attention == "none"
                          else MixAttention(nf, groups, hidden, spatial_kernel, attention))

    def forward(self, x):
        return x + self.attention(self.body(x))


class ResidualOverlapBlock(nn.Module):
    """ROB (Sec. 3.1, Fig. 2): K RMABs and a 3x3 conv inside a residual connection."""

    def __init__(self, nf: int = 64, n_rmab: int = 20, **rmab_kwargs):
        super().__init__()
        self.body = nn.Sequential(*(ResidualMixAttentionBlock(nf, **rmab_kwargs) for _ in range(n_rmab)),
                                  nn.Conv2d(nf, nf, 3, 1, 1))

    def forward(self, x):
        return x + self.body(x)


class MASRNet(nn.Module):
    """conv3x3 -> M ROBs -> conv3x3 (+ F_0 long skip) -> deconvolution x``scale`` -> conv3x3 (Eq. 1-3)."""

    def __init__(self, in_ch: int = 3, out_ch: int = 3, nf: int = 64, n_rob: int = 10, n_rmab: int = 20,
                 groups: int = 4, hidden: int = 4, spatial_kernel: int = 7, attention: Attention = "mix",
                 scale: int = 4):
        super().__init__()
        if attention not in ATTENTIONS:
            raise ValueError(f"attention {attention!r} not in {ATTENTIONS}")
        if scale < 2 or scale % 2:
            raise ValueError(f"the stride-s deconvolution (kernel 2s, padding s/2) needs an even scale, got {scale}")
        self.scale = scale
        self.head = nn.Conv2d(in_ch, nf, 3, 1, 1)
        self.body = nn.Sequential(*(ResidualOverlapBlock(nf, n_rmab, groups=groups, hidden=hidden,
                                                         spatial_kernel=spatial_kernel, attention=attention)
                                    for _ in range(n_rob)))
        self.body_conv = nn.Conv2d(nf, nf, 3, 1, 1)
        self.upsample = nn.ConvTranspose2d(nf, nf, 2 * scale, scale, scale // 2)
        self.tail = nn.Conv2d(nf, out_ch, 3, 1, 1)

    def forward(self, x):
        feat = self.head(x)
        feat = feat + self.body_conv(self.body(feat))
        return self.tail(self.upsample(feat))


# network sizes; training: the Table protocol of tasks/sr/protocol.py (MASRGAN's own Sec. 4.2)
PAPER = dict(nf=64, n_rob=10, n_rmab=20, groups=4, hidden=4, spatial_kernel=7)
SMOKE = dict(nf=16, n_rob=1, n_rmab=2, groups=2, hidden=2, spatial_kernel=3)


def config(ctx: BuildContext) -> dict:
    return PAPER if ctx.profile == "paper" else SMOKE


def build_network(ctx: BuildContext, attention: Attention = "mix") -> MASRNet:
    cfg = config(ctx)
    return MASRNet(ctx.in_channels, ctx.in_channels, cfg["nf"], cfg["n_rob"], cfg["n_rmab"], cfg["groups"],
                   cfg["hidden"], cfg["spatial_kernel"], attention, ctx.scale)


def build_masrnet(ctx: BuildContext, attention: Attention = "mix") -> tuple[SRModule, TrainPlan]:
    """MASRNet on L1 (Sec. 4.2): Adam 1e-4, halved every 2,000 iterations, batch 16 (the Table protocol)."""
    tr = psnr_training(ctx, {}, "table")
    module = SRModule(build_network(ctx, attention), ctx.scale, lr=tr["lr"], betas=(0.9, 0.999),
                      milestones=tr["milestones"], gamma=0.5, loss="l1")
    return module, TrainPlan(max_steps=tr["steps"], batch_size=tr["batch"], patch_size=tr["patch"])


def build_masrnet_att_none(ctx: BuildContext) -> tuple[SRModule, TrainPlan]:
    """Table 2, row 1: neither channel nor spatial attention."""
    return build_masrnet(ctx, "none")


def build_masrnet_att_channel(ctx: BuildContext) -> tuple[SRModule, TrainPlan]:
    """Table 2, row 2: channel attention only."""
    return build_masrnet(ctx, "channel")


def build_masrnet_att_spatial(ctx: BuildContext) -> tuple[SRModule, TrainPlan]:
    """Table 2, row 3: spatial attention only."""
    return build_masrnet(ctx, "spatial")


def build_masrnet_att_mix(ctx: BuildContext) -> tuple[SRModule, TrainPlan]:
    """Table 2, row 4: channel + spatial (mix-attention) = the full MASRNet."""
    return build_masrnet(ctx, "mix")
