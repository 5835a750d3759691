"""Membrane segmentation oracle for SSAN Table 5 (membrane Dice / F1 of interpolated slices).

The paper segments membranes on the ground truth and on each interpolated slice and reports Dice /
F1 without naming the segmenter.  Here (spec §5, [NS]): a 2-D U-Net (Ronneberger et al., the paper's
ref. [40]) trained with BCE + Dice on membrane masks derived from the CREMI neuron ids (4-neighbour
boundaries between different ids, dilated 1 px; id 0 ignored: :func:`membrane_mask` of the builder),
on the labelled *training* crops only, then frozen.  Its own accuracy (Dice against the label-derived
membranes of held-out labelled crops) is recorded next to every Dice it produces.

paper: depth 4, 32 base channels, 2,000 steps of batch 8; smoke (the shared sample has labels on one
slice only, z = 4): depth 3, 16 base channels, 150 steps of batch 4, every 4th labelled crop held out.
Trained once per build and cached under MIRBENCH_CACHE.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class OracleSettings:
    depth: int = 4
    base: int = 32
    steps: int = 2000
    batch_size: int = 8
    lr: float = 1e-3
    seed: int = 0


PAPER = OracleSettings()
SMOKE = OracleSettings(depth=3, base=16, steps=150, batch_size=4)
_VERSION = 1
_MEMO: dict[str, "MembraneUNet"] = {}


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class MembraneUNet(nn.Module):
    """U-Net: ``depth`` levels of two 3x3 conv-BN-ReLU, max-pool down, transposed-conv up, concat skips;
    gray [0, 1] in, membrane logit out.  H and W must be divisible by 2^(depth-1)."""

    def __init__(self, depth: int = 4, base: int = 32):
        super().__init__()
        ch = [base * 2 ** i for i in range(depth)]
        self.down = nn.ModuleList([_block(1, ch[0])] + [_block(ch[i - 1], ch[i]) for i in range(1, depth)])
        self.up = nn.ModuleList([nn.ConvTranspose2d(ch[i], ch[i - 1], 2, stride=2) for i in range(depth - 1, 0, -1)])
        self.fuse = nn.ModuleList([_block(2 * ch[i - 1], ch[i - 1]) for i in range(depth - 1, 0, -1)])
        self.head = nn.Conv2d(ch[0], 1, 1)
        self.own_dice = float("nan")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        for up, fuse, skip in zip(self.up, self.fuse, reversed(skips[:-1])):
            x = fuse(torch.cat([up(x), skip], 1))
        return self.head(x)

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Binary membrane mask (threshold 0.5 on the sigmoid), float {0, 1}."""
        return (self(x) > 0).to(x.dtype)


def _loss(logits: torch.Tensor, target: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """BCE + soft Dice over labelled pixels only."""
    bce = (F.binary_cross_entropy_with_logits(logits, target, reduction="none") * known).sum() / known.sum().clamp_min(1)
    p = torch.sigmoid(logits) * known
    dice = 1 - (2 * (p * target).sum() + 1) / (p.sum() + (target * known).sum() + 1)
    return bce + dice


def _tensors(pairs) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    img = torch.from_numpy(np.stack([p[0] for p in pairs])).float().div(255).unsqueeze(1)
    m = torch.from_numpy(np.stack([p[1] for p in pairs])).unsqueeze(1)
    return img, (m == 255).float(), (m != 128).float()


def _augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    k, fl = int(torch.randint(0, 4, (), generator=g)), bool(torch.randint(0, 2, (), generator=g))
    x = torch.rot90(x, k, (-2, -1))
    return x.flip(-1) if fl else x


def pooled_dice(pred: torch.Tensor, target: torch.Tensor, known: torch.Tensor) -> float:
    tp = (pred * target * known).sum()
    return float(2 * tp / ((pred * known).sum() + (target * known).sum()).clamp_min(1))


def train_oracle(train_pairs, held_out_pairs, settings: OracleSettings) -> MembraneUNet:
    """Train on (image, mask) uint8 pairs; own Dice on the held-out pairs; returns the frozen net.
    Runs with gradients even when called from a test loop (Lightning tests under inference mode)."""
    with torch.inference_mode(False), torch.enable_grad():
        return _train(train_pairs, held_out_pairs, settings)


def _train(train_pairs, held_out_pairs, settings: OracleSettings) -> MembraneUNet:
    with torch.random.fork_rng():
        torch.manual_seed(settings.seed)
        net = MembraneUNet(settings.depth, settings.base)
    img, target, known = _tensors(train_pairs)
    opt = torch.optim.Adam(net.parameters(), lr=settings.lr)
    g = torch.Generator().manual_seed(settings.seed)
    net.train()
    for _ in range(settings.steps):
        idx = torch.randint(0, len(img), (settings.batch_size,), generator=g)
        stacked = _augment(torch.cat([img[idx], target[idx], known[idx]], 1), g)
        x, t, k = stacked[:, :1], stacked[:, 1:2], stacked[:, 2:]
        loss = _loss(net(x), t, k)
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    if held_out_pairs:
        himg, ht, hk = _tensors(held_out_pairs)
        net.own_dice = pooled_dice(net.predict(himg), ht, hk)
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def oracle_for(datamodule) -> MembraneUNet | None:
    """The frozen oracle for a cremi_triplet DataModule (trained once, cached); None without labels."""
    source = getattr(datamodule, "membrane_source", None)
    if source is None:
        return None
    from datamodules.cremi_triplet import cache_root
    settings = SMOKE if (source.get("crop") or 512) <= 128 else PAPER
    key = hashlib.sha1(json.dumps([_VERSION, source["id"], asdict(settings)]).encode()).hexdigest()[:12]
    if key in _MEMO:
        return _MEMO[key]
    path = cache_root() / f"interp-membrane-{key}.pt"
    if path.is_file():
        saved = torch.load(path, map_location="cpu", weights_only=True)
        with torch.inference_mode(False):
            net = MembraneUNet(settings.depth, settings.base)
            net.load_state_dict(saved["state"])
        net.own_dice = saved["own_dice"]
        net.eval().requires_grad_(False)
    else:
        train_set, other = datamodule.membrane_sets()
        train = [train_set[i] for i in range(len(train_set))]
        held = [other[i] for i in range(len(other))]
        if not held:  # no labelled crop outside training (the smoke sample): hold out every 4th
            held, train = train[::4], [p for i, p in enumerate(train) if i % 4]
        if not train:
            return None
        net = train_oracle(train, held, settings)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{id(net)}.tmp")
        torch.save({"state": net.state_dict(), "own_dice": net.own_dice, "settings": asdict(settings),
                    "n_train": len(train), "n_held_out": len(held)}, tmp)
        tmp.replace(path)
    _MEMO[key] = net
    return net
