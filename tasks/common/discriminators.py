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
