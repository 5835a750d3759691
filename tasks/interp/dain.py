"""DAIN-Ls: DAIN (Bao, Lai, Ma, Zhang, Gao, Yang, "Depth-Aware Video Frame Interpolation", CVPR 2019)
retrained with SSAN's loss, a baseline of SSAN's Tables 4 and 5.

Network (DAIN Sec. 3, Fig. 3; reference baowenbo/DAIN ``networks/DAIN.py``, t = 0.5):
- flow: PWC-Net (:mod:`tasks.interp.pwcnet`) both ways, x20 (div_flow) x t, bilinear x4 up;
- depth: MegaDepth hourglass (:mod:`tasks.interp.megadepth`) -> log-depth, weight 1e-6 + 1/exp(log d);
- depth-aware flow projection (eq. 1-3, :func:`tasks.interp.ops.depth_flow_projection`);
- kernel estimation: MonoNet5 U-Net (6 -> 16 ... 512 ... 16 channels, max-pool / bilinear-up with
  skip-add) with two heads -> 16-channel 4x4 kernels per frame;
- context: ``S2DF_3dense`` (7x7 conv + two dilated residual blocks, dense concat: 195 ch) + log-depth;
- adaptive warping layer (Sec. 3.4, :func:`tasks.interp.ops.adaptive_warp`) of frames and contexts
  (the contexts with detached flow and kernels, as the reference);
- frame synthesis: ``MultipleBasicBlock_4`` (437 -> 128: 7x7 conv, 3 residual blocks, 3x3 conv) added to
  the mean of the two warped frames; the loss is on this rectified output.
Module names are the official ones so ``pwc_net.pth.tar``, ``best_generalization_net_G.pth`` and DAIN's
``best.pth`` load.  24,031,656 parameters (tests/tasks/interp/test_dain.py; the DAIN paper: 24.0 M).
Pure PyTorch: the CUDA layers (Correlation, DepthFlowProjection with FlowFillhole, FilterInterpolation)
are :mod:`tasks.interp.ops` ops, each checked against a per-pixel loop.

Gray EM: replicated to 3 channels at the input, the 3 output channels averaged back (spec Sec. 3.2).
Padding (replicate, centred): at evaluation as ``demo_MiddleBury.py``, to a multiple of 128 or by 32 each
side when already divisible (512 -> 576, 128 -> 192); in training only to PWC-Net's multiple of 64, as DAIN
trains on unpadded 256x256 crops (64 -> 64: 4x cheaper than the demo's 128 in smoke).

Training: SSAN's table protocol (:mod:`tasks.interp.protocol`) with DAIN's module learning-rate ratios
kept relative to SSAN's 1e-3 (DAIN: kernel/context nets 2e-3, rectify 1e-3, flow and depth x0.01):
kernel/context 1e-3, rectify 5e-4, PWC-Net and MegaDepth 1e-5.  DAIN's training code always starts
PWC-Net and MegaDepth from their pretrained weights, so the paper profile requires
``MIRBENCH_WEIGHTS/dain/{pwc_net.pth.tar, best_generalization_net_G.pth}`` and stops with a clear error
without them; smoke starts from a random init (its notes say so; depth and flow are then meaningless)
and runs the kernel, context and synthesis nets at reduced width with PWC-Net and MegaDepth frozen
(``freeze_pretrained``, kept in eval mode; at DAIN's x0.01 learning rate a smoke run would not move
them) to stay within the smoke budget.

Smoke initialisation (:meth:`DAIN.identity_init`, smoke only).  With the reference's random init and no
pretrained weights, the first smoke leaderboard scored 6.39 dB / IE 116: a random PWC-Net's flow (x20
div_flow x t: 2.9 px mean, 17 px max on a 64^2 crop) warps to arbitrary places, and the randomly
initialised kernel heads give 16 taps of mean ~0, so the "warped frames" are near 0 instead of images
(output mean -0.005 for a target of ~0.5); ten steps of the synthesis net cannot undo that.  Smoke
therefore starts where a pretrained DAIN effectively starts on EM, from the identity: PWC-Net's two
flow outputs (``predict_flow2``, ``dc_conv7``) zeroed, so the (frozen) flow is 0 and the projection
and adaptive warp keep every pixel in place; the kernel heads' last conv set to the four centre taps
(bias 1 at taps (1,1), (1,2), (2,1), (2,2), weights 0), which makes the adaptive warp exactly bilinear
sampling; and the synthesis net's last conv zeroed, so DAIN's output starts as 0.5 (warp_0 + warp_2),
the average of the neighbours, and learns the rectification from there (tests/tasks/interp/test_dain.py).
With the flow frozen at 0 the smoke row measures the kernel/context/synthesis part of DAIN, not its
motion compensation; its notes say so.  The ``depth`` flag ``"const"`` (plain FlowProjection, weight 1) is the spec's ablation for EM,
where MegaDepth's outdoor depth has no meaning.

Fidelity: faithful (official architecture; outputs of PWC-Net and the hourglass match the reference
modules given the same weights, tests/tasks/interp/test_dain.py).
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.specs import BuildContext
from benchmark.weights import MissingWeightsError
from tasks.interp.megadepth import hourglass, load_megadepth
from tasks.interp.ops import adaptive_warp, depth_flow_projection
from tasks.interp.protocol import table_protocol
from tasks.interp.pwcnet import PWCDCNet, load_pwc

WEIGHTS = {"pwc": ("dain/pwc_net.pth.tar", "DAIN's PWCNet/pwc_net.pth.tar (github.com/baowenbo/DAIN README)"),
           "megadepth": ("dain/best_generalization_net_G.pth",
                         "DAIN's MegaDepth/checkpoints/test_local/best_generalization_net_G.pth (DAIN README)")}


def _conv_relu(i, o):
    return [nn.Conv2d(i, o, 3, 1, 1), nn.ReLU()]


def mononet5(cin: int, cout: int, width: int = 16) -> tuple[nn.ModuleList, nn.ModuleList, nn.ModuleList]:
    """DAIN ``get_MonoNet5``: a flat layer list (the reference's keys) of conv+ReLU (+ max-pool) down to
    width*32 channels, five bilinear-up + conv + ReLU back to width, and two conv-ReLU-conv heads."""
    w = [width * 2 ** i for i in range(6)]                            # 16 ... 512
    layers = _conv_relu(cin, w[0])
    for i in range(5):
        layers += _conv_relu(w[i], w[i + 1]) + [nn.MaxPool2d(2)]
    layers += _conv_relu(w[5], w[5])
    for i in range(5, 0, -1):
        layers += [nn.Upsample(scale_factor=2, mode="bilinear")] + _conv_relu(w[i], w[i - 1])
    head = lambda: nn.ModuleList([nn.Conv2d(w[0], w[0], 3, 1, 1), nn.ReLU(), nn.Conv2d(w[0], cout, 3, 1, 1)])
    return nn.ModuleList(layers), head(), head()


def _run_mononet(layers: nn.ModuleList, x: torch.Tensor) -> torch.Tensor:
    """The reference's stack logic: a pooling layer pushes its input, an upsample adds the popped one."""
    stack = []
    for layer in layers:
        if isinstance(layer, nn.MaxPool2d):
            stack.append(x)
        x = layer(x)
        if isinstance(layer, nn.Upsample):
            x = x + stack.pop()
    return x


class BasicBlock(nn.Module):
    """ResNet basic block without BN (DAIN's Resblock/S2DF ``BasicBlock``): conv3x3 (dilated) - ReLU -
    conv3x3 + identity, ReLU; no biases."""

    def __init__(self, c: int, dilation: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, 1, dilation, dilation=dilation, bias=False)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(c, c, 3, 1, 1, bias=False)

    def forward(self, x):
        return self.relu(self.conv2(self.relu(self.conv1(x))) + x)


class ContextNet(nn.Module):
    """``S2DF_3dense``: cat(input, 7x7 conv, dilated block (4), dilated block (8)) -> 3 + 3 width ch."""

    def __init__(self, width: int = 64):
        super().__init__()
        self.block1 = nn.Sequential(nn.Conv2d(3, width, 7, 1, 3, bias=False), nn.ReLU())
        self.block2 = BasicBlock(width, 4)
        self.block3 = BasicBlock(width, 8)

    def forward(self, x):
        y1 = self.block1(x)
        y2 = self.block2(y1)
        return torch.cat([x, y1, y2, self.block3(y2)], 1)


class RectifyNet(nn.Module):
    """``MultipleBasicBlock_4``: 7x7 conv + ReLU, three basic blocks, 3x3 conv to 3 channels."""

    def __init__(self, cin: int, width: int = 128):
        super().__init__()
        self.block1 = nn.Sequential(nn.Conv2d(cin, width, 7, 1, 3), nn.ReLU())
        self.block2, self.block3, self.block4 = BasicBlock(width), BasicBlock(width), BasicBlock(width)
        self.block5 = nn.Sequential(nn.Conv2d(width, 3, 3, 1, 1))

    def forward(self, x):
        return self.block5(self.block4(self.block3(self.block2(self.block1(x)))))


def _pad_size(n: int, training: bool) -> int:
    if training:  # DAIN trains on 256x256 crops without padding: pad only to PWC-Net's multiple of 64
        return -(-n // 64) * 64
    return n + 64 if n % 128 == 0 else (n // 128 + 1) * 128     # demo_MiddleBury.py


class DAIN(nn.Module):
    """prev, next (B,1,H,W) gray -> middle (B,1,H,W)."""

    def __init__(self, filter_width: int = 16, ctx_width: int = 64, rectify_width: int = 128, depth: str = "megadepth",
                 freeze_pretrained: bool = False):
        super().__init__()
        if depth not in ("megadepth", "const"):
            raise ValueError(f"depth must be 'megadepth' or 'const', got {depth!r}")
        self.initScaleNets_filter, self.initScaleNets_filter1, self.initScaleNets_filter2 = mononet5(6, 16, filter_width)
        self.ctxNet = ContextNet(ctx_width)
        ctx_ch = 3 * ctx_width + 3 + 1                                # + log-depth
        self.rectifyNet = RectifyNet(3 + 3 + 3 + 2 + 2 + 16 * 2 + 2 * ctx_ch, rectify_width)
        for m in self.modules():                                      # the reference's _initialize_weights
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        self.flownets = PWCDCNet()
        self.div_flow, self.timestep = 20.0, 0.5
        self.depth_kind = depth
        self.depthNet = hourglass() if depth == "megadepth" else None
        self.random_init_note = "PWC-Net and MegaDepth random (smoke: no pretrained DAIN weights)"
        self.freeze_pretrained = freeze_pretrained
        if freeze_pretrained:  # smoke: random and frozen (at DAIN's x0.01 lr a few steps would not move them)
            for p in self.pretrained_parameters():
                p.requires_grad_(False)
            self.random_init_note += ", frozen"

    def train(self, mode: bool = True):
        super().train(mode)
        if self.freeze_pretrained:  # frozen: no BatchNorm statistics from training batches either
            for name in ("flownets", "depthNet"):
                if getattr(self, name) is not None:
                    getattr(self, name).eval()
        return self

    @torch.no_grad()
    def identity_init(self) -> None:
        """Smoke: zero flow, bilinear kernels, zero rectification -> output = mean of the neighbours
        (module docstring, "Smoke initialisation")."""
        for layer in (self.flownets.predict_flow2, self.flownets.dc_conv7, self.rectifyNet.block5[0]):
            layer.weight.zero_()
            layer.bias.zero_()
        for head in (self.initScaleNets_filter1, self.initScaleNets_filter2):
            head[-1].weight.zero_()
            head[-1].bias.zero_()
            head[-1].bias[[5, 6, 9, 10]] = 1.0
        self.random_init_note += "; smoke identity init (flow 0, bilinear kernels, zero rectification)"

    def pretrained_parameters(self) -> list[nn.Parameter]:
        return [p for n in ("flownets", "depthNet") if getattr(self, n) is not None
                for p in getattr(self, n).parameters()]

    def load_pretrained(self, weights_dir: Path) -> None:
        for key, loader, net in (("pwc", load_pwc, self.flownets), ("megadepth", load_megadepth, self.depthNet)):
            if net is None:
                continue
            rel, source = WEIGHTS[key]
            path = Path(weights_dir) / rel
            if not path.is_file():
                raise MissingWeightsError(f"dain_{key}", path, source, why="DAIN-Ls paper profile")
            loader(net, path)
        self.random_init_note = ""

    def param_groups(self, lr: float) -> list[dict]:
        slow = self.pretrained_parameters()
        rect = list(self.rectifyNet.parameters())
        ids = {id(p) for p in slow + rect}
        rest = [p for p in self.parameters() if id(p) not in ids]
        groups = [{"params": rest, "lr": lr}, {"params": rect, "lr": lr * 0.5}]
        return groups + ([] if self.freeze_pretrained else [{"params": slow, "lr": lr * 0.01}])

    def _flow(self, pair: torch.Tensor) -> torch.Tensor:
        flow = self.flownets(pair) * (self.div_flow * self.timestep)
        return F.interpolate(flow, scale_factor=4, mode="bilinear")

    def forward(self, prev: torch.Tensor, nxt: torch.Tensor) -> torch.Tensor:
        h, w = prev.shape[-2:]
        ph, pw = _pad_size(h, self.training), _pad_size(w, self.training)
        top, left = (ph - h) // 2, (pw - w) // 2
        pad = (left, pw - w - left, top, ph - h - top)
        x0 = F.pad(prev.expand(-1, 3, -1, -1), pad, mode="replicate")
        x2 = F.pad(nxt.expand(-1, 3, -1, -1), pad, mode="replicate")
        b = x0.shape[0]
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_pretrained):
            if self.depthNet is not None:
                log_depth = self.depthNet(torch.cat([x0, x2], 0))
            else:
                log_depth = x0.new_zeros(2 * b, 1, ph, pw)
            flows = self._flow(torch.cat([torch.cat([x0, x2], 1), torch.cat([x2, x0], 1)], 0))  # both directions
        ld0, ld2 = log_depth[:b], log_depth[b:]
        ctx0 = torch.cat([self.ctxNet(x0), ld0.detach()], 1)
        ctx2 = torch.cat([self.ctxNet(x2), ld2.detach()], 1)
        feat = _run_mononet(self.initScaleNets_filter, torch.cat([x0, x2], 1))
        filt0, filt2 = feat, feat
        for layer in self.initScaleNets_filter1:
            filt0 = layer(filt0)
        for layer in self.initScaleNets_filter2:
            filt2 = layer(filt2)
        off0 = depth_flow_projection(flows[:b], 1e-6 + torch.exp(-ld0))
        off2 = depth_flow_projection(flows[b:], 1e-6 + torch.exp(-ld2))
        ctx0 = adaptive_warp(ctx0, off0.detach(), filt0.detach())
        ctx2 = adaptive_warp(ctx2, off2.detach(), filt2.detach())
        ref0, ref2 = adaptive_warp(x0, off0, filt0), adaptive_warp(x2, off2, filt2)
        blend = 0.5 * (ref0 + ref2)
        out = self.rectifyNet(torch.cat([blend, ref0, ref2, off0, off2, filt0, filt2, ctx0, ctx2], 1)) + blend
        return out[..., top:top + h, left:left + w].mean(1, keepdim=True)


PAPER_NET = dict(filter_width=16, ctx_width=64, rectify_width=128)
SMOKE_NET = dict(filter_width=4, ctx_width=8, rectify_width=16, freeze_pretrained=True)
SMOKE_STEPS = 40
SMOKE_BATCH = 2      # a DAIN step costs ~5 SSAN steps on CPU


def build_dain(ctx: BuildContext):
    """DAIN-Ls (SSAN Table 4/5 baseline) under the table protocol."""
    if ctx.profile == "paper":
        net = DAIN(**PAPER_NET)
        net.load_pretrained(ctx.weights_dir)
        note = "PWC-Net and MegaDepth from DAIN's pretrained weights"
    else:
        net = DAIN(**SMOKE_NET)
        net.identity_init()
        note = ("smoke: kernel/context/synthesis nets at reduced width (4/8/16), PWC-Net/MegaDepth frozen; "
                "starts at the neighbours' mean, flow stays 0 (no motion compensation measured)")
    # smoke validates once, at the end: a 128^2 DAIN evaluation costs ~3.5 s on one core, so the runner's
    # default 8 passes over the 24 validation crops would take ~11 minutes
    return table_protocol(ctx, net, SMOKE_STEPS, note, smoke_batch=SMOKE_BATCH, smoke_val_every=SMOKE_STEPS)
