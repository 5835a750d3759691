"""DCANet (Ma et al., "DCANet: Learning Connected Attentions for Convolutional Neural Networks",
arXiv 2007.05099, 2020), MASRGAN's Table 1 baseline [33], as an SR network.

DCANet is not an SR architecture: it is a way of chaining the attention blocks of any CNN (Sec. 3,
Fig. 2): the output of the previous attention block's transformation is fed to the current block's
extraction, so attention is learnt progressively.  MASRGAN uses it as a CNN "attention-based SR"
baseline next to RCAN without naming a backbone, so the paper is silent on the host network; we do
what the field does with channel-attention add-ons for SR and put it into RCAN (Zhang et al. 2018,
MASRGAN's [16]), whose channel attention is exactly squeeze-excitation, the attention DCANet
connects in its main instance (DCA-SE).  The backbone is RCAN at its paper settings: 10 residual
groups x 20 RCABs, 64 features, reduction 16, x4 sub-pixel upsampler, images in the 0-255 range minus
the DIV2K mean (see tasks/sr/rcan.py).

Attention connection (Sec. 3.2, official models/resnet/resnet_se_dca.py ``CSELayer``): block i
extracts g_i = GAP(x_i); from the second block on, g_i is fused with the previous block's output
a_{i-1} = g_{i-1} * s_{i-1} by a 1x1 conv over the pair (learnable alpha, beta and a bias),
LayerNorm over channels and ReLU; the SE transformation (1x1 conv C -> C/16, ReLU, 1x1 conv, sigmoid)
gives s_i, which rescales the block's features and is passed on as a_i = g_i * s_i.  The chain runs
through all 200 RCABs in order, across group boundaries, as DCANet chains all blocks of a ResNet
across its stages.  The connection adds 3 + 2*64 parameters to each of 199 blocks: 15,618,424 in
all at x4 (RCAN: 15,592,355).

Training: MASRGAN's Table protocol (tasks/sr/protocol.py) in Table 1; ``recipe="own"`` follows RCAN's official recipe (the backbone's; DCANet's own schedule is for ImageNet):
L1 loss, Adam (0.9, 0.999), lr 1e-4 halved every 2e5 iterations, batch 16, HR patch 192 (LR 48),
1e6 iterations.
"""
from __future__ import annotations

import torch
from timm.layers import SEModule
from torch import nn

from benchmark.specs import BuildContext, TrainPlan
from tasks.common.layers import DIV2K_RGB_MEAN, PixelShuffleUpsampler
from tasks.sr.module import SRModule
from tasks.sr.protocol import psnr_training


class ConnectedChannelAttention(SEModule):
    """Squeeze-excitation (timm's SEModule = RCAN's channel attention) whose extraction is fused
    with the previous block's attended context when ``connected`` (DCA-SE).

    ``forward(x, previous)`` returns (rescaled x, this block's attended context a_i (B, C)).
    """

    def __init__(self, nf: int, reduction: int = 16, connected: bool = True):
        super().__init__(nf, rd_channels=nf // reduction)
        self.connect = nn.Sequential(nn.Conv2d(2, 1, 1), nn.LayerNorm(nf), nn.ReLU(inplace=True)) if connected else None

    def forward(self, x: torch.Tensor, previous: torch.Tensor | None = None):
        context = x.mean((2, 3))                                                        # g_i: (B, C)
        fused = context
        if previous is not None and self.connect is not None:
            fused = self.connect(torch.stack([context, previous], 1)[:, :, None]).flatten(1)
        gate = self.gate(self.fc2(self.act(self.bn(self.fc1(fused[:, :, None, None])))))   # s_i: (B, C, 1, 1)
        return x * gate, context * gate.flatten(1)


class ConnectedRCAB(nn.Module):
    """RCAB (conv-ReLU-conv, channel attention, identity skip) with a connected attention."""

    def __init__(self, nf: int = 64, reduction: int = 16, connected: bool = True):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(nf, nf, 3, 1, 1), nn.ReLU(inplace=True), nn.Conv2d(nf, nf, 3, 1, 1))
        self.attention = ConnectedChannelAttention(nf, reduction, connected)

    def forward(self, x: torch.Tensor, previous: torch.Tensor | None = None):
        out, context = self.attention(self.body(x), previous)
        return x + out, context


class ConnectedResidualGroup(nn.Module):
    """B connected RCABs and a 3x3 conv with a short skip; threads the attention context through."""

    def __init__(self, nf: int, n_blocks: int, reduction: int, first_connected: bool, connected: bool):
        super().__init__()
        self.blocks = nn.ModuleList(
            ConnectedRCAB(nf, reduction, connected and (i > 0 or first_connected)) for i in range(n_blocks))
        self.conv = nn.Conv2d(nf, nf, 3, 1, 1)

    def forward(self, x: torch.Tensor, previous: torch.Tensor | None = None):
        out = x
        for block in self.blocks:
            out, previous = block(out, previous)
        return x + self.conv(out), previous


class DCARCAN(nn.Module):
    """RCAN whose channel attentions are connected (DCANet); ``connected=False`` gives plain RCAN."""

    def __init__(self, in_ch: int = 3, out_ch: int = 3, nf: int = 64, n_groups: int = 10, n_blocks: int = 20,
                 reduction: int = 16, scale: int = 4, connected: bool = True, rgb_range: float = 255.0):
        super().__init__()
        self.scale, self.rgb_range = scale, rgb_range
        mean = DIV2K_RGB_MEAN if in_ch == 3 else (sum(DIV2K_RGB_MEAN) / 3,) * in_ch
        self.register_buffer("mean", torch.tensor(mean).view(1, in_ch, 1, 1), persistent=False)
        self.head = nn.Conv2d(in_ch, nf, 3, 1, 1)
        # the very first attention has no predecessor, so it has no connection (and no unused weights)
        self.groups = nn.ModuleList(ConnectedResidualGroup(nf, n_blocks, reduction, g > 0, connected)
                                    for g in range(n_groups))
        self.body_conv = nn.Conv2d(nf, nf, 3, 1, 1)
        self.tail = nn.Sequential(PixelShuffleUpsampler(nf, scale), nn.Conv2d(nf, out_ch, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.head((x - self.mean) * self.rgb_range)
        out, context = feat, None
        for group in self.groups:
            out, context = group(out, context)
        out = self.tail(feat + self.body_conv(out))
        return out / self.rgb_range + self.mean


PAPER = dict(nf=64, n_groups=10, n_blocks=20, reduction=16, patch=192, batch=16, steps=1_000_000, lr=1e-4,
             milestones=(200_000, 400_000, 600_000, 800_000))
SMOKE = dict(nf=16, n_groups=2, n_blocks=2, reduction=4, patch=32, batch=4, steps=100, lr=1e-3, milestones=())


def build_dcanet(ctx: BuildContext, recipe: str = "table") -> tuple[SRModule, TrainPlan]:
    """DCANet-in-RCAN under MASRGAN's Table protocol, or ``recipe="own"`` (RCAN's recipe, below)."""
    cfg = PAPER if ctx.profile == "paper" else SMOKE
    tr = psnr_training(ctx, cfg, recipe)
    net = DCARCAN(ctx.in_channels, ctx.in_channels, cfg["nf"], cfg["n_groups"], cfg["n_blocks"], cfg["reduction"],
                  ctx.scale)
    module = SRModule(net, ctx.scale, lr=tr["lr"], betas=(0.9, 0.999), milestones=tr["milestones"], gamma=0.5,
                      loss="l1")
    return module, TrainPlan(max_steps=tr["steps"], batch_size=tr["batch"], patch_size=tr["patch"])
