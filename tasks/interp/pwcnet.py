"""PWC-Net (Sun, Yang, Liu, Kautz, "PWC-Net: CNNs for Optical Flow Using Pyramid, Warping, and Cost
Volume", CVPR 2018), the PWC-DC variant DAIN uses as its flow estimator (reference: baowenbo/DAIN
``PWCNet/PWCNet.py`` = NVlabs/PWC-Net's PyTorch port): a 6-level feature pyramid (16..196 channels, three
convs per level), at each level a cost volume (:func:`tasks.interp.ops.correlation`, md = 4, 81
channels, LeakyReLU 0.1) of the first frame's features against the second's warped by the upsampled
coarser flow, a DenseNet-style flow decoder, and a dilated context network at level 2.  Output: flow
at 1/4 resolution in units of 1/20 px (DAIN multiplies by div_flow = 20 and upsamples x4).

Module names are the official ones so that ``pwc_net.pth.tar`` loads (``load_state_dict``); 9,374,340
parameters (tests/tasks/interp/test_dain.py).  Pure PyTorch: the CUDA correlation package is replaced by
the unfold-free shift-and-multiply op.  Input H, W must be multiples of 64.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tasks.interp.ops import correlation


def _conv(i: int, o: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(i, o, 3, stride, dilation, dilation=dilation), nn.LeakyReLU(0.1))


def _predict_flow(i: int) -> nn.Conv2d:
    return nn.Conv2d(i, 2, 3, 1, 1)


def _deconv(i: int, o: int) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(i, o, 4, 2, 1)


def backward_warp(x: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Sample x at p + flow (bilinear), zeroed where the sample leaves the image (mask < 0.9999), as the
    reference ``warp``."""
    b, _, h, w = x.shape
    ys, xs = torch.meshgrid(torch.arange(h, device=x.device, dtype=x.dtype),
                            torch.arange(w, device=x.device, dtype=x.dtype), indexing="ij")
    gx = 2 * (xs + flow[:, 0]) / max(w - 1, 1) - 1
    gy = 2 * (ys + flow[:, 1]) / max(h - 1, 1) - 1
    grid = torch.stack([gx, gy], -1)
    out = F.grid_sample(x, grid, align_corners=True)
    mask = F.grid_sample(torch.ones_like(x[:, :1]), grid, align_corners=True)
    return out * (mask >= 0.9999).to(x.dtype)


class PWCDCNet(nn.Module):
    """forward(cat(im1, im2) on channels, (B, 6, H, W)) -> flow2 (B, 2, H/4, W/4)."""

    def __init__(self, md: int = 4):
        super().__init__()
        self.md = md
        chans = [(3, 16), (16, 32), (32, 64), (64, 96), (96, 128)]
        for lvl, (i, o) in enumerate(chans, start=1):
            setattr(self, f"conv{lvl}a", _conv(i, o, 2))
            setattr(self, f"conv{lvl}aa", _conv(o, o))
            setattr(self, f"conv{lvl}b", _conv(o, o))
        self.conv6aa, self.conv6a, self.conv6b = _conv(128, 196, 2), _conv(196, 196), _conv(196, 196)
        self.leakyRELU = nn.LeakyReLU(0.1)
        nd = (2 * md + 1) ** 2
        dd = [128, 256, 352, 416, 448]                                 # cumsum of 128, 128, 96, 64, 32
        for lvl, feat in ((6, None), (5, 128), (4, 96), (3, 64), (2, 32)):
            od = nd if feat is None else nd + feat + 4
            for j, o in enumerate((128, 128, 96, 64, 32)):
                setattr(self, f"conv{lvl}_{j}", _conv(od + (dd[j - 1] if j else 0), o))
            setattr(self, f"predict_flow{lvl}", _predict_flow(od + dd[4]))
            setattr(self, f"deconv{lvl}", _deconv(2, 2))
            if lvl > 2:
                setattr(self, f"upfeat{lvl}", _deconv(od + dd[4], 2))
        od = nd + 32 + 4 + dd[4]
        self.dc_conv1 = _conv(od, 128)
        self.dc_conv2 = _conv(128, 128, dilation=2)
        self.dc_conv3 = _conv(128, 128, dilation=4)
        self.dc_conv4 = _conv(128, 96, dilation=8)
        self.dc_conv5 = _conv(96, 64, dilation=16)
        self.dc_conv6 = _conv(64, 32)
        self.dc_conv7 = _predict_flow(32)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(m.weight, mode="fan_in")
                nn.init.zeros_(m.bias)

    def _pyramid(self, im: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for lvl in range(1, 6):
            im = getattr(self, f"conv{lvl}b")(getattr(self, f"conv{lvl}aa")(getattr(self, f"conv{lvl}a")(im)))
            feats.append(im)
        feats.append(self.conv6b(self.conv6a(self.conv6aa(im))))
        return feats                                                   # levels 1..6

    def _decode(self, lvl: int, x: torch.Tensor) -> torch.Tensor:
        for j in range(5):
            x = torch.cat([getattr(self, f"conv{lvl}_{j}")(x), x], 1)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % 64 or x.shape[-2] % 64:
            raise ValueError(f"PWC-Net needs H, W divisible by 64, got {tuple(x.shape[-2:])}")
        feats = [t.chunk(2, 0) for t in self._pyramid(torch.cat([x[:, :3], x[:, 3:]], 0))]  # both frames at once
        c1, c2 = [a for a, _ in feats], [b for _, b in feats]
        corr = self.leakyRELU(correlation(c1[5], c2[5], self.md))
        x = self._decode(6, corr)
        flow = self.predict_flow6(x)
        up_flow, up_feat = self.deconv6(flow), self.upfeat6(x)
        for lvl, scale in ((5, 0.625), (4, 1.25), (3, 2.5), (2, 5.0)):
            warped = backward_warp(c2[lvl - 1], up_flow * scale)
            corr = self.leakyRELU(correlation(c1[lvl - 1], warped, self.md))
            x = self._decode(lvl, torch.cat([corr, c1[lvl - 1], up_flow, up_feat], 1))
            flow = getattr(self, f"predict_flow{lvl}")(x)
            if lvl > 2:
                up_flow, up_feat = getattr(self, f"deconv{lvl}")(flow), getattr(self, f"upfeat{lvl}")(x)
        x = self.dc_conv4(self.dc_conv3(self.dc_conv2(self.dc_conv1(x))))
        return flow + self.dc_conv7(self.dc_conv6(self.dc_conv5(x)))


def load_pwc(net: PWCDCNet, path) -> None:
    """``pwc_net.pth.tar`` (a state dict, possibly under 'state_dict')."""
    data = torch.load(path, map_location="cpu", weights_only=True)
    net.load_state_dict(data.get("state_dict", data))
