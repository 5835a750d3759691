"""Discriminators shared by the GAN methods."""
from __future__ import annotations

import math

import torch
from torch import nn


def _conv_bn_lrelu(cin: int, cout: int, k: int, s: int, bn: bool = True) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, s, k // 2 if k % 2 else 1, bias=not bn)]
    if bn:
        layers.append(nn.BatchNorm2d(cout))
    layers.append(nn.LeakyReLU(0.2, inplace=True))
    return layers


class VGGStyleDiscriminator(nn.Module):
    """ESRGAN's VGG-style discriminator ("VGG128", Wang et al. 2018, Fig. 4 / official code).

    Stages of (3x3 stride 1, 4x4 stride 2) convolutions with BN + LeakyReLU(0.2), channels doubling
    from ``nf`` to 8*nf, until the map is 4x4; then Linear(…, 100) - LeakyReLU - Linear(100, 1).
    ``input_size`` must be a power-of-two multiple of 4 (128 for the paper's 128x128 HR patches).
    """

    def __init__(self, in_ch: int = 3, nf: int = 64, input_size: int = 128, hidden: int = 100):
        super().__init__()
        stages = int(math.log2(input_size // 4))
        if 4 * 2 ** stages != input_size:
            raise ValueError(f"input_size {input_size} is not 4 * 2^k")
        layers, c = _conv_bn_lrelu(in_ch, nf, 3, 1, bn=False), nf
        for i in range(stages):
            cout = min(nf * 2 ** i, nf * 8)
            if i:
                layers += _conv_bn_lrelu(c, cout, 3, 1)
            layers += _conv_bn_lrelu(cout, cout, 4, 2)
            c = cout
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(c * 16, hidden), nn.LeakyReLU(0.2, True),
                                        nn.Linear(hidden, 1))
        self.input_size = input_size

    def forward(self, x):
        if x.shape[-1] != self.input_size or x.shape[-2] != self.input_size:
            raise ValueError(f"VGGStyleDiscriminator built for {self.input_size}px, got {tuple(x.shape[-2:])}")
        return self.classifier(self.features(x))


class PatchGANDiscriminator(nn.Module):
    """pix2pix 70x70 PatchGAN (Isola et al. 2017): a logit per overlapping patch.

    4x4 convolutions, stride 2 for the first ``n_layers`` then stride 1, BN + LeakyReLU(0.2).
    """

    def __init__(self, in_ch: int = 3, ndf: int = 64, n_layers: int = 3):
        super().__init__()
        layers = [nn.Conv2d(in_ch, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for i in range(1, n_layers + 1):
            prev, mult = mult, min(2 ** i, 8)
            stride = 2 if i < n_layers else 1
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride, 1, bias=False),
                       nn.BatchNorm2d(ndf * mult), nn.LeakyReLU(0.2, True)]
        layers.append(nn.Conv2d(ndf * mult, 1, 4, 1, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


class SRGANDiscriminator(nn.Module):
    """SRGAN's VGG-style discriminator (Ledig et al. 2017, Fig. 4), called "VGG16" by MASRGAN (Table 3).

    k3n64s1 + LeakyReLU(0.2); seven 3x3 conv + BN + LeakyReLU blocks with (channels, stride)
    (nf, 2), (2nf, 1), (2nf, 2), (4nf, 1), (4nf, 2), (8nf, 1), (8nf, 2); then Dense(1024) -
    LeakyReLU(0.2) - Dense(1).  Returns the logit: the paper's final sigmoid lives in the
    BCE-with-logits losses.  The dense layer sees the flattened map, so ``input_size`` (a multiple
    of 16; 96 in SRGAN) is fixed at construction.
    """

    def __init__(self, in_ch: int = 3, nf: int = 64, input_size: int = 96, hidden: int = 1024):
        super().__init__()
        if input_size % 16:
            raise ValueError(f"input_size {input_size} is not a multiple of 16")
        layers, c = [nn.Conv2d(in_ch, nf, 3, 1, 1), nn.LeakyReLU(0.2, inplace=True)], nf
        for cout, stride in ((nf, 2), (2 * nf, 1), (2 * nf, 2), (4 * nf, 1), (4 * nf, 2), (8 * nf, 1), (8 * nf, 2)):
            layers += _conv_bn_lrelu(c, cout, 3, stride)
            c = cout
        self.features = nn.Sequential(*layers)
        side = input_size // 16
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(c * side * side, hidden),
                                        nn.LeakyReLU(0.2, inplace=True), nn.Linear(hidden, 1))
        self.input_size = input_size

    def forward(self, x):
        if x.shape[-1] != self.input_size or x.shape[-2] != self.input_size:
            raise ValueError(f"SRGANDiscriminator built for {self.input_size}px, got {tuple(x.shape[-2:])}")
        return self.classifier(self.features(x))


class RelativisticTester(nn.Module):
    """A relativistic pair test T(a, b) = sigmoid(C(a) - C(b)) on a single-image critic C
    (Jolicoeur-Martineau 2019, the relativistic standard GAN): the probability that ``a`` is more
    realistic than ``b``.  Used as rVTT's visual Turing testers T1 / T2 (Tom et al. 2019, Sec. 3:
    losses "as proposed in" the relativistic GAN, testers "similar to" ESRGAN's VGG-style network).

    ``forward`` returns the logit C(a) - C(b), for BCE-with-logits losses.  T(a, b) = 1 - T(b, a).
    """

    def __init__(self, critic: nn.Module):
        super().__init__()
        self.critic = critic

    def forward(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        if first.shape != second.shape:
            raise ValueError(f"a relativistic test needs equal shapes, got {tuple(first.shape)}, {tuple(second.shape)}")
        scores = self.critic(torch.cat([first, second])).view(2, -1)   # one critic pass for both images
        return scores[0] - scores[1]


def crop_boxes(x: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
    """The per-sample square ``box`` (B, 3) = (top, left, size) crops of x (B, C, H, W): (B, C, size, size).
    One size per batch (the inpainting hole); gathered with one index, no Python loop over the batch."""
    size = int(box[0, 2])
    if not bool((box[:, 2] == size).all()):
        raise ValueError("crop_boxes needs one box size per batch")
    ar = torch.arange(size, device=x.device)
    rows = (box[:, 0:1].to(x.device) + ar)[:, None, :, None]                 # B, 1, s, 1
    cols = (box[:, 1:2].to(x.device) + ar)[:, None, None, :]                 # B, 1, 1, s
    b = torch.arange(x.shape[0], device=x.device)[:, None, None, None]
    return x.permute(0, 2, 3, 1)[b, rows, cols].squeeze(1).permute(0, 3, 1, 2)


class GlobalLocalDiscriminator(nn.Module):
    """Context discriminator of GLCIC (Iizuka et al. 2017, Sec. 3.2, Table 2) and DMFN (Hui et al. 2020,
    Sec. 3.3; official ``Discriminator``): a global conv stack on the whole image and a local one on the
    hole's box crop, each 5x5 stride-2 conv + BN + activation down to 4x4, flattened into an FC of
    ``fc`` units; the two vectors are concatenated and a final FC gives one logit.

    GLCIC: ReLU, FC 1024 + ReLU each, concat -> FC 1.  DMFN: LeakyReLU 0.2, FC 512 each, concat ->
    LeakyReLU -> FC 1, and the local stack's feature maps returned for its feature-matching loss (``features=True``).
    The numbers of convs follow from the sizes (log2(size / 4)), so one class covers 256 px (the papers)
    and 128 px (MSSA's data).
    """

    def __init__(self, global_size: int, local_size: int, nf: int = 64, fc: int = 1024, in_ch: int = 3,
                 act: str = "relu", max_mult: int = 8):
        super().__init__()
        self.sizes = (global_size, local_size)
        self.global_convs = self._stack(in_ch, nf, global_size, act, max_mult)
        self.local_convs = self._stack(in_ch, nf, local_size, act, max_mult)
        cg = self.global_convs[-1][0].out_channels
        cl = self.local_convs[-1][0].out_channels
        self.global_fc = nn.Linear(cg * 16, fc)
        self.local_fc = nn.Linear(cl * 16, fc)
        # the activation after the concatenation = one after each FC (elementwise)
        self.classifier = nn.Sequential(nn.ReLU() if act == "relu" else nn.LeakyReLU(0.2), nn.Linear(2 * fc, 1))

    @staticmethod
    def _stack(in_ch: int, nf: int, size: int, act: str, max_mult: int) -> nn.ModuleList:
        n = int(math.log2(size // 4))
        if 4 * 2 ** n != size:
            raise ValueError(f"discriminator input {size} is not 4 * 2^k")
        layers, c = nn.ModuleList(), in_ch
        for i in range(n):
            cout = nf * min(2 ** i, max_mult)
            a = nn.ReLU(inplace=True) if act == "relu" else nn.LeakyReLU(0.2, inplace=True)
            layers.append(nn.Sequential(nn.Conv2d(c, cout, 5, 2, 2), nn.BatchNorm2d(cout), a))
            c = cout
        return layers

    def forward(self, whole: torch.Tensor, local: torch.Tensor, features: bool = False):
        if whole.shape[-1] != self.sizes[0] or local.shape[-1] != self.sizes[1]:
            raise ValueError(f"GlobalLocalDiscriminator built for {self.sizes}, got "
                             f"{whole.shape[-1]} / {local.shape[-1]}")
        g = whole
        for layer in self.global_convs:
            g = layer(g)
        feats, h = [], local
        for layer in self.local_convs:
            h = layer(h)
            feats.append(h)
        logit = self.classifier(torch.cat([self.local_fc(h.flatten(1)), self.global_fc(g.flatten(1))], 1))
        return (logit, feats) if features else logit
