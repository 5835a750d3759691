"""SepConv-Ls: SepConv (Niklaus, Mai, Liu, "Video Frame Interpolation via Adaptive Separable
Convolution", ICCV 2017) retrained with SSAN's loss, a baseline of SSAN's Tables 4 and 5.

Network (SepConv Sec. 3.1, Fig. 2; reference sniklaus/sepconv-slomo ``run.py``): a U-Net encoder of
3-conv blocks (32/64/128/256/512, avg-pool), a decoder (512/256/128/64, bilinear x2 + conv, skip-add),
four subnets (Conv 64-64-64-K with ReLU, bilinear x2, Conv K-K) estimating per-pixel K-tap vertical and
horizontal kernels for each frame, and I_t = sepconv(I_{t-1}; kv1, kh1) + sepconv(I_{t+1}; kv2, kh2) (eq. 3;
no normalisation, no mask).  The CuPy kernel is replaced by :func:`tasks.interp.ops.local_separable_conv`.
Input handling as ``run.py``: replicate-pad by K//2, then to a multiple of 32 (``run.py`` pads to 128; any
multiple of the 5 poolings works), crop the output back.  Gray EM: the first conv takes the two gray
frames (2 channels); official RGB weights load with each frame's three input-channel weights summed,
which is exactly the RGB network applied to gray replicated x3 (the filtering is per channel).
K = 51 at paper size: 21.67 M parameters (21.68 M for RGB; tests/tasks/interp/test_sepconv.py).

Training: SSAN's table protocol (:mod:`tasks.interp.protocol`): the paper retrains SepConv "with the
style balance loss" ("-Ls") in its own environment.  Whether it starts from the official weights is
not stated; the paper profile trains from scratch like every other row of the table, and
``MIRBENCH_WEIGHTS/sepconv/network-lf.pytorch`` (optional) can initialise it via :func:`load_official`.
Smoke: base width 8 instead of 32, K = 13, random init.

Fidelity: faithful (official architecture and module names; pure-PyTorch operator checked against a
per-pixel loop).
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.specs import BuildContext
from tasks.interp.ops import local_separable_conv
from tasks.interp.protocol import table_protocol


def _basic(i: int, o: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(i, o, 3, 1, 1), nn.ReLU(), nn.Conv2d(o, o, 3, 1, 1), nn.ReLU(),
                         nn.Conv2d(o, o, 3, 1, 1), nn.ReLU())


def _upsample(c: int) -> nn.Sequential:
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
                         nn.Conv2d(c, c, 3, 1, 1), nn.ReLU())


def _subnet(c: int, k: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c, c, 3, 1, 1), nn.ReLU(), nn.Conv2d(c, c, 3, 1, 1), nn.ReLU(),
                         nn.Conv2d(c, k, 3, 1, 1), nn.ReLU(),
                         nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True), nn.Conv2d(k, k, 3, 1, 1))


class SepConvNet(nn.Module):
    """prev, next (B,C,H,W) -> middle.  Attribute names are the official ``module*`` ones."""

    def __init__(self, in_ch: int = 1, kernel_size: int = 51, width: int = 32):
        super().__init__()
        self.kernel_size = kernel_size
        w = [width * 2 ** i for i in range(5)]                       # 32, 64, 128, 256, 512
        ins = [2 * in_ch] + w[:-1]
        for i in range(5):
            setattr(self, f"moduleConv{i + 1}", _basic(ins[i], w[i]))
            setattr(self, f"modulePool{i + 1}", nn.AvgPool2d(2, 2))
        dec_in = [w[4], w[4], w[3], w[2]]                            # Deconv5..2: 512->512, 512->256, ...
        dec_out = [w[4], w[3], w[2], w[1]]
        for lvl, i, o in zip((5, 4, 3, 2), dec_in, dec_out):
            setattr(self, f"moduleDeconv{lvl}", _basic(i, o))
            setattr(self, f"moduleUpsample{lvl}", _upsample(o))
        for name in ("moduleVertical1", "moduleVertical2", "moduleHorizontal1", "moduleHorizontal2"):
            setattr(self, name, _subnet(w[1], kernel_size))

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i in range(1, 6):
            x = getattr(self, f"moduleConv{i}")(x)
            skips.append(x)
            x = getattr(self, f"modulePool{i}")(x)
        for lvl in (5, 4, 3, 2):
            x = getattr(self, f"moduleUpsample{lvl}")(getattr(self, f"moduleDeconv{lvl}")(x)) + skips[lvl - 1]
        return x

    def forward(self, prev: torch.Tensor, nxt: torch.Tensor) -> torch.Tensor:
        h, w = prev.shape[-2:]
        p = self.kernel_size // 2
        extra_h, extra_w = (-(h + 2 * p)) % 32, (-(w + 2 * p)) % 32
        pad = (p, p + extra_w, p, p + extra_h)
        first, second = F.pad(prev, pad, mode="replicate"), F.pad(nxt, pad, mode="replicate")
        feat = self._features(torch.cat([first, second], 1))
        out = 0
        for image, v, hz in ((first, self.moduleVertical1, self.moduleHorizontal1),
                             (second, self.moduleVertical2, self.moduleHorizontal2)):
            # only the kernels of the output window are needed: the once-padded frame already holds the
            # K//2 replicate border that run.py's second padding would add (identical result, less work)
            kv, kh = v(feat)[..., p:p + h, p:p + w], hz(feat)[..., p:p + h, p:p + w]
            out = out + local_separable_conv(image[..., :h + 2 * p, :w + 2 * p], kv, kh)
        return out


def load_official(net: SepConvNet, path: Path) -> None:
    """Load sniklaus' ``network-{l1,lf}.pytorch`` (keys ``module*``, or ``net*`` in newer releases) into a
    gray or RGB network; for gray, each frame's RGB input weights are summed (see the module docstring)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = {("module" + k[3:] if k.startswith("net") else k): v for k, v in state.items()}
    key = "moduleConv1.0.weight"
    want = net.state_dict()[key].shape[1]
    if state[key].shape[1] == 6 and want == 2:
        w = state[key]
        state[key] = torch.cat([w[:, :3].sum(1, keepdim=True), w[:, 3:].sum(1, keepdim=True)], 1)
    net.load_state_dict(state)


PAPER_NET = dict(kernel_size=51, width=32)
SMOKE_NET = dict(kernel_size=13, width=8)
SMOKE_STEPS = 300


def build_sepconv(ctx: BuildContext):
    """SepConv-Ls (SSAN Table 4/5 baseline) under the table protocol."""
    sizes = PAPER_NET if ctx.profile == "paper" else SMOKE_NET
    net = SepConvNet(ctx.in_channels, **sizes)
    note = "" if ctx.profile == "paper" else "smoke: base width 8, K 13, random init"
    return table_protocol(ctx, net, SMOKE_STEPS, note)
