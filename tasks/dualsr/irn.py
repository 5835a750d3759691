"""IRN, Invertible Image Rescaling (Xiao et al., ECCV 2020): SNADN Table 3 baseline.

Faithful to the official code (pkuxmq/Invertible-Image-Rescaling ``Inv_arch.py``,
``Subnet_constructor.py``, ``IRN_model.py``, ``train_IRN_x{2,4}.yml``): per x2 level a fixed Haar
transform (band-major channels, /4) then ``InvBlockExp`` x 8 with DenseBlock subnets (5 convs, growth
32, LeakyReLU 0.2, xavier x 0.1, last conv zero), split 3 / rest, clamp 1.0; x4 = two levels
(3 -> 12 -> 48 channels).  Trainable parameters 1,667,952 (x2) / 4,355,136 (x4), asserted (the Haar
kernel is a buffer here, a frozen Parameter upstream).  Losses (tasks/dualsr/module.DualModule):
lambda_fit_forw 4 (x2) / 16 (x4) on the sum-L2 LR fit, lambda_rec_back 1 (sum-Charbonnier), lambda_ce_forw
1 (sum z^2 / B); straight-through quantised LR into the up pass with z ~ N(0, 1); Adam 2e-4
(0.9, 0.999), weight decay 1e-5, gradient clip 10.  Training length follows SNADN's data protocol
(100 epochs of the 16,000-patch split at IRN's batch 16 and GT crop 144 = 100k iterations, halved at
20/40/60/80 %), not IRN's 500k iterations on DIV2K (spec Sec. 3, N).  Smoke: growth 8, 600
iterations (SNADN's smoke budget) at lr 3e-3 (x2) / 1.5e-3 (x4), halved at 60 / 80 %, and the full 8 blocks per level: the up
pass can damp the sampled N(0, 1) latent by at most exp(-clamp) per block, so 4 blocks leave a noise
floor near 30 dB at x2 whatever the training (bicubic scores 29.9 on the smoke sample; tested).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.specs import BuildContext, TrainPlan
from tasks.dualsr.invertible import InvBlockExp, InvertibleRescaler
from tasks.dualsr.module import DualModule, rescale_plan

PARAMS = {2: 1_667_952, 4: 4_355_136}  # official trainable counts


def _xavier(convs, scale: float) -> None:
    for c in convs:
        nn.init.xavier_normal_(c.weight)
        c.weight.data.mul_(scale)
        nn.init.zeros_(c.bias)


class DenseBlock(nn.Module):
    """IRN ``DenseBlock``: 4 densely connected 3x3 convs of growth ``gc`` and a zero-initialised 3x3 output."""

    def __init__(self, cin: int, cout: int, gc: int = 32):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(cin + i * gc, gc, 3, padding=1) for i in range(4))
        self.out = nn.Conv2d(cin + 4 * gc, cout, 3, padding=1)
        _xavier(self.convs, 0.1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for conv in self.convs:
            feats.append(F.leaky_relu(conv(torch.cat(feats, 1)), 0.2))
        return self.out(torch.cat(feats, 1))


class HaarDownsampling(nn.Module):
    """IRN ``HaarDownsampling``: (B, C, H, W) -> (B, 4C, H/2, W/2), bands LL, HL, LH, HH band-major."""

    def __init__(self, channels: int):
        super().__init__()
        k = torch.tensor([[[1, 1], [1, 1]], [[1, -1], [1, -1]], [[1, 1], [-1, -1]], [[1, -1], [-1, 1]]],
                         dtype=torch.float32).unsqueeze(1)
        self.channels = channels
        self.register_buffer("kernel", k.repeat(channels, 1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor, rev: bool = False) -> torch.Tensor:
        b, c = x.shape[:2]
        k = self.kernel.to(x.dtype)
        if not rev:
            y = F.conv2d(x, k, stride=2, groups=self.channels) / 4.0        # (B, C*4, ...) channel-major
            return y.view(b, self.channels, 4, *y.shape[-2:]).transpose(1, 2).reshape(b, c * 4, *y.shape[-2:])
        y = x.view(b, 4, self.channels, *x.shape[-2:]).transpose(1, 2).reshape(b, c, *x.shape[-2:])
        return F.conv_transpose2d(y, k, stride=2, groups=self.channels)


class IRN(InvertibleRescaler):
    def __init__(self, scale: int, blocks: int = 8, gc: int = 32, clamp: float = 1.0):
        if scale not in (2, 4):
            raise ValueError(f"IRN is built for x2 / x4, got x{scale}")
        ops, c = [], 3
        for _ in range({2: 1, 4: 2}[scale]):
            ops.append(HaarDownsampling(c))
            c *= 4
            ops += [InvBlockExp(lambda ci, co: DenseBlock(ci, co, gc), c, 3, clamp) for _ in range(blocks)]
        super().__init__(ops, scale)


PAPER = dict(blocks=8, gc=32, batch=16, patch=144, epochs=100, train_size=16_000)  # IRN: batch 16, GT crop 144
SMOKE = dict(blocks=8, gc=8, batch=4, steps=600, patch={2: 32, 4: 32}, lr={2: 3e-3, 4: 1.5e-3}, milestones=(360, 480))


def build_irn(ctx: BuildContext, protocol: str = "sr") -> tuple[DualModule, TrainPlan]:
    lam_fit = {2: 4.0, 4: 16.0}[ctx.scale]
    if ctx.profile == "paper":
        net = IRN(ctx.scale, PAPER["blocks"], PAPER["gc"])
        n = sum(p.numel() for p in net.parameters())
        assert n == PARAMS[ctx.scale], f"IRN x{ctx.scale}: {n} parameters, official {PARAMS[ctx.scale]}"
        steps = PAPER["epochs"] * PAPER["train_size"] // PAPER["batch"]
        module = DualModule(net, ctx.scale, protocol, lam_fit=lam_fit,
                            milestones=[steps * k // 5 for k in range(1, 5)])
        plan = TrainPlan(max_steps=steps, batch_size=PAPER["batch"], patch_size=PAPER["patch"], val_every_n_steps=5_000)
    else:
        net = IRN(ctx.scale, SMOKE["blocks"], SMOKE["gc"])
        module = DualModule(net, ctx.scale, protocol, lam_fit=lam_fit, lr=SMOKE["lr"][ctx.scale], milestones=SMOKE["milestones"])
        plan = TrainPlan(max_steps=SMOKE["steps"], batch_size=SMOKE["batch"], patch_size=SMOKE["patch"][ctx.scale],
                         val_every_n_steps=SMOKE["steps"],
                         notes=f"smoke: {SMOKE['blocks']} blocks/level, growth {SMOKE['gc']}, "
                               f"{SMOKE['steps']} it., lr {SMOKE['lr'][ctx.scale]:g}")
    return module, rescale_plan(module, plan, protocol, ctx.init_checkpoint, "evaluates the trained `irn` network")


def build_irn_rescale(ctx: BuildContext) -> tuple[DualModule, TrainPlan]:
    return build_irn(ctx, "rescale")
