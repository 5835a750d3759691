"""Losses shared by the tasks: pixel, perceptual (VGG), adversarial variants, style, TV."""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.vgg import cfgs, make_layers

from benchmark.weights import require

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
# torchvision feature indices of the named VGG19 / VGG16 layers
_VGG19_LAYERS = {"relu1_2": 3, "relu2_2": 8, "relu3_4": 17, "relu4_4": 26, "conv5_4": 34, "relu5_4": 35,
                 "relu3_3": 15, "relu4_3": 24, "relu5_1": 29, "conv4_4": 25}
_VGG16_LAYERS = {"relu1_2": 3, "relu2_2": 8, "relu3_3": 15, "relu4_3": 22, "relu5_3": 29, "conv5_3": 28}


class CharbonnierLoss(nn.Module):
    def __init__(self, eps: float = 1e-3):
        super().__init__()
        self.eps = eps

    def forward(self, x, y):
        return torch.sqrt((x - y) ** 2 + self.eps ** 2).mean()


def pixel_loss(kind: str) -> nn.Module:
    return {"l1": nn.L1Loss(), "mse": nn.MSELoss(), "charbonnier": CharbonnierLoss()}[kind]


def _he_init(features: nn.Module) -> None:
    """Variance-preserving (He, fan-in) init of a random VGG.  PyTorch's default conv init shrinks the
    activations ~3x per layer, so a default random VGG's conv5_4 features are ~1e-7 and the perceptual /
    style terms vanish, leaving the adversarial term alone against a 1e-2 pixel loss (the smoke GANs
    then drift off their PSNR generator).  With He init the features keep the input's scale (rms ~1.5
    at relu2_2..conv5_4): random-weight features are a usable stand-in for a perceptual loss (He, Wang &
    Hopcroft, NeurIPS 2016), so the loss terms keep roughly their paper balance."""
    for m in features.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            nn.init.zeros_(m.bias)


class VGGFeatures(nn.Module):
    """Frozen ImageNet VGG features at named layers, inputs in [0, 1] RGB.

    Weights come from MIRBENCH_WEIGHTS (torchvision's file).  ``allow_random=True`` (smoke profile
    only) falls back to a seeded, He-initialised random VGG (:func:`_he_init`) and sets
    ``self.random_init`` so results say so.
    """

    def __init__(self, layers: tuple[str, ...] = ("conv5_4",), arch: str = "vgg19",
                 weights_dir: Path | None = None, allow_random: bool = False):
        super().__init__()
        table = _VGG19_LAYERS if arch == "vgg19" else _VGG16_LAYERS
        self.ids = [table[name] for name in layers]
        try:
            path = require(arch, weights_dir, why="perceptual loss")
        except FileNotFoundError:
            if not allow_random:
                raise
            path = None
        with torch.random.fork_rng():
            torch.manual_seed(0)  # a random VGG (smoke only) is at least the same one every run
            features = make_layers(cfgs["E" if arch == "vgg19" else "D"])  # the conv part only
            if path is None:
                _he_init(features)
        if path is not None:
            state = torch.load(path, map_location="cpu", weights_only=True)
            features.load_state_dict({k[len("features."):]: v for k, v in state.items() if k.startswith("features.")})
        self.random_init = path is None
        self.features = features[: max(self.ids) + 1].eval()
        for p in self.features.parameters():
            p.requires_grad_(False)
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True):
        super().train(mode)
        self.features.eval()
        return self

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = (x - self.mean) / self.std
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.ids:
                out.append(x)
        return out


class PerceptualLoss(nn.Module):
    """Johnson et al. 2016 feature reconstruction loss: distance of VGG features (L1 or MSE)."""

    def __init__(self, layers=("conv5_4",), weights=None, criterion: str = "l1", **vgg_kwargs):
        super().__init__()
        self.vgg = VGGFeatures(tuple(layers), **vgg_kwargs)
        self.weights = weights or [1.0] * len(layers)
        self.crit = pixel_loss(criterion)

    @property
    def random_init(self) -> bool:
        return self.vgg.random_init

    def forward(self, x, y):
        fx, fy = self.vgg(x), self.vgg(y.detach())
        return sum(w * self.crit(a, b) for w, a, b in zip(self.weights, fx, fy))


def gram(x: torch.Tensor) -> torch.Tensor:
    b, c, h, w = x.shape
    f = x.flatten(2)
    return f @ f.transpose(1, 2) / (c * h * w)


def tv_loss(x: torch.Tensor) -> torch.Tensor:
    return (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., :, 1:] - x[..., :, :-1]).abs().mean()


def d_loss(real: torch.Tensor, fake: torch.Tensor, kind: str) -> torch.Tensor:
    """Discriminator loss on logits.  kind: 'vanilla' (BCE), 'lsgan', 'ragan' (relativistic average)."""
    if kind == "vanilla":
        return 0.5 * (F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
                      + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake)))
    if kind == "lsgan":
        return 0.5 * (((real - 1) ** 2).mean() + (fake ** 2).mean())
    if kind == "ragan":
        return 0.5 * (F.binary_cross_entropy_with_logits(real - fake.mean(), torch.ones_like(real))
                      + F.binary_cross_entropy_with_logits(fake - real.mean(), torch.zeros_like(fake)))
    raise ValueError(f"unknown GAN loss {kind!r}")


def g_loss(real: torch.Tensor, fake: torch.Tensor, kind: str) -> torch.Tensor:
    """Generator adversarial loss on logits (``real`` is detached by the caller where needed)."""
    if kind == "vanilla":
        return F.binary_cross_entropy_with_logits(fake, torch.ones_like(fake))
    if kind == "lsgan":
        return 0.5 * ((fake - 1) ** 2).mean()
    if kind == "ragan":
        return 0.5 * (F.binary_cross_entropy_with_logits(real - fake.mean(), torch.zeros_like(real))
                      + F.binary_cross_entropy_with_logits(fake - real.mean(), torch.ones_like(fake)))
    raise ValueError(f"unknown GAN loss {kind!r}")


# more VGG19 layers (torchvision indices), for TTSR's texture extractor (relu1_1..relu3_1), EdgeConnect's perceptual (relu1_1..relu5_1) and style
# (relu2_2, relu3_4, relu4_4, relu5_2) losses and DMFN's feature / alignment losses (relu1_1..relu5_1)
_VGG19_LAYERS.update({"relu1_1": 1, "relu2_1": 6, "relu3_1": 11, "relu4_1": 20, "relu5_2": 31})


def feature_matching_loss(fake: list[torch.Tensor], real: list[torch.Tensor],
                          weights: list[float] | None = None) -> torch.Tensor:
    """Discriminator feature matching (pix2pixHD; EdgeConnect eq. 2, DMFN's D feature loss):
    sum_i w_i * mean |D_i(fake) - D_i(real)|, the real features detached."""
    weights = weights or [1.0] * len(fake)
    return sum(w * F.l1_loss(f, r.detach()) for w, f, r in zip(weights, fake, real))
