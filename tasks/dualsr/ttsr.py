"""TTSR: Yang et al., "Learning Texture Transformer Network for Image Super-Resolution", CVPR 2020 -- a
Table 3 baseline of SNADN (Liang et al. 2023, §3.3, Table 3).

Fidelity: faithful to the official code (researchmm/TTSR ``model/*.py``) at x4, rebuilt here (not copied);
the x2 variant is adapted (TTSR is x4 only upstream):
* Learnable texture extractor (LTE, §3.1): VGG19 conv1_1 ... relu3_1 (ImageNet weights from
  MIRBENCH_WEIGHTS, fine-tuned at lr 1e-5), features at relu1_1 / relu2_1 / relu3_1 of the bicubic-
  upsampled LR (LR^up), of the reference downsampled and upsampled (Ref^{down,up}) and of the reference.
* Relevance embedding + hard attention + soft attention (§3.1, Eqs. 1-6): 3x3 patches of the coarsest
  level, L2-normalised; r_ij = <q_i, k_j>; h_i = argmax_j r_ij picks the reference patch transferred at
  every level (unfold 3f x 3f at stride f, fold, / 9); s_i = max_j r_ij weights the fused texture.
* Main network (§3.2, Fig. 3 / MainNet.py): SFE (16 residual blocks), stage 1 (16 RB), x2 sub-pixel
  up, CSFI2, stage 2 (8+8 RB), x2 up, CSFI3, stage 3 (4+4+4 RB), MergeTail, 64 features; each stage
  fuses its texture T by ``x + conv(cat(x, T)) * S``.  Images in [-1, 1] inside, clamped.
  x4: 6,174,275 (MainNet) + 555,328 (LTE) = 6,729,603 trainable parameters = SNADN's 6.7 M.
* **x2 variant** (adapted, SNADN does not say how its 4.4 M x2 model was built): the x4 level is
  dropped -- the LTE stops at relu2_1 (112,576), search and hard attention run on relu2_1, which is at
  LR resolution at x2 as relu3_1 is at x4; T_lv2 (128 ch) is fused at LR scale, T_lv1 (64 ch) at HR
  scale; stages SFE 16 / 16 / 8+8 with CSFI2 and a two-level MergeTail: 4,311,939 + 112,576 =
  4,424,515 = SNADN's 4.4 M.  (The same network code builds both: one level per factor 2.)

Reference image (SNADN §3.3 only says "other HR images"): ``batch["ref"]`` from the DataModule, a
different HR patch of the SAME tissue class from the training split, seeded per (split, index), never
the ground truth; in training a random crop of it of the HR crop's size; at test the whole 224 patch.
``ref_lr`` is its MATLAB-bicubic LR (the benchmark's LR operator, where TTSR's code uses PIL), and
LR^up / Ref^{down,up} are MATLAB-bicubic upsamplings.

Training protocol (SNADN Table 3, its one protocol for every row: same split, LR and 100 epochs; each
method its own loss / optimiser / batch / crop; SNADN states its own settings only, §3.1): TTSR-rec
(§4.1/Table 1 "TTSR-rec": the reconstruction loss alone), the variant whose numbers SNADN quotes for
TTSR in §1 (25.87 dB / 0.784 = TTSR-rec on Urban100): L1, Adam 1e-4 (LTE 1e-5), betas (0.9, 0.999),
constant lr (the official ``decay`` default), batch 9, HR crop 160; 100 epochs of 16,000 = 177,777
iterations.  The full TTSR recipe (+ perceptual, transferal perceptual and WGAN-GP losses) is not built.

Smoke profile: 16 features, one residual block per stage, and :class:`NarrowLTE` (VGG19's layer pattern at
1/16 width, random) in place of the VGG19 LTE, because the x2 search compares every LR pixel with every
reference pixel (26 instead of ~370 GFLOPs per 224 px test image); the row's notes say so.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.vgg import make_layers

from benchmark.specs import BuildContext, TrainPlan
from datamodules.imresize import imresize
from tasks.common.losses import _IMAGENET_MEAN, _IMAGENET_STD, _VGG19_LAYERS, VGGFeatures
from tasks.dualsr.module import PlainSRModule

_LTE_LAYERS = ("relu1_1", "relu2_1", "relu3_1")   # fine -> coarse: full, 1/2, 1/4 resolution
_LTE_CHANNELS = (64, 128, 256)


def _conv3(cin, cout, stride=1):
    return nn.Conv2d(cin, cout, 3, stride, 1)


def _conv1(cin, cout):
    return nn.Conv2d(cin, cout, 1)


def _up(x, factor: int):
    return F.interpolate(x, scale_factor=factor, mode="bicubic")


class _ResBlock(nn.Module):
    def __init__(self, nf: int, res_scale: float = 1.0):
        super().__init__()
        self.conv1, self.conv2, self.res_scale = _conv3(nf, nf), _conv3(nf, nf), res_scale

    def forward(self, x):
        return x + self.res_scale * self.conv2(F.relu(self.conv1(x)))


def _res_blocks(n: int, nf: int, res_scale: float) -> nn.Sequential:
    return nn.Sequential(*(_ResBlock(nf, res_scale) for _ in range(n)))


class LTE(VGGFeatures):
    """Learnable texture extractor: VGG19 up to the scale's coarsest level, trainable (§3.1)."""

    def __init__(self, n_levels: int, **vgg_kwargs):
        super().__init__(_LTE_LAYERS[:n_levels], arch="vgg19", **vgg_kwargs)
        for p in self.features.parameters():
            p.requires_grad_(True)


class NarrowLTE(VGGFeatures):
    """Smoke profile only: the LTE's VGG19 layer pattern at 1/``shrink`` of its widths, seeded random.  The
    hard-attention search costs (LR pixels)^2 x 9 C (362 GFLOPs per 224 px image at x2 with VGG's 128
    channels), more than a CPU smoke run can afford; the paper profile always uses :class:`LTE`."""

    def __init__(self, n_levels: int, shrink: int = 16):
        nn.Module.__init__(self)  # VGGFeatures without its file loading; forward / train are its own
        self.ids = [_VGG19_LAYERS[name] for name in _LTE_LAYERS[:n_levels]]
        c1, c2, c3 = (c // shrink for c in _LTE_CHANNELS)
        with torch.random.fork_rng():
            torch.manual_seed(0)
            features = make_layers([c1, c1, "M", c2, c2, "M", c3])
        self.features = features[: max(self.ids) + 1]
        self.random_init, self.channels = True, (c1, c2, c3)[:n_levels]
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)


def search_transfer(lrsr: torch.Tensor, refsr: torch.Tensor, ref_levels: list[torch.Tensor],
                    chunk: int = 4096) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Hard/soft attention (§3.1): lrsr / refsr are the coarsest LTE level (B, C, h, w) / (B, C, hr, wr);
    ``ref_levels`` the reference's levels, coarse first, level j at 2^j times the coarse resolution.
    Returns S (B, 1, h, w) and the transferred textures T_j (B, C_j, 2^j h, 2^j w)."""
    b, _, h, w = lrsr.shape
    q = F.normalize(F.unfold(lrsr, 3, padding=1), dim=1)                    # B, C9, hw
    k = F.normalize(F.unfold(refsr, 3, padding=1), dim=1).transpose(1, 2)    # B, L, C9
    best, arg = [], []
    for i in range(0, q.shape[-1], chunk):                                   # no (L, hw) matrix at once
        score, idx = torch.bmm(k, q[..., i:i + chunk]).max(dim=1)
        best.append(score)
        arg.append(idx)
    s, arg = torch.cat(best, 1), torch.cat(arg, 1)
    textures = []
    for j, feat in enumerate(ref_levels):
        f = 2 ** j
        unf = F.unfold(feat, 3 * f, padding=f, stride=f)                    # B, C(3f)^2, L
        picked = unf.gather(2, arg[:, None, :].expand(-1, unf.shape[1], -1))
        textures.append(F.fold(picked, (h * f, w * f), 3 * f, padding=f, stride=f) / 9.0)
    return s.view(b, 1, h, w), textures


class CSFI(nn.Module):
    """Cross-scale feature integration over ``n`` streams (stream j at 2^j resolution; CSFI2 / CSFI3 of
    §3.2): into stream i, a coarser stream comes bicubic-upsampled + 1x1 conv, a finer one through
    (j - i) stride-2 3x3 convs; concat (self first, others ascending) -> 3x3 conv; ReLU after each conv."""

    def __init__(self, n: int, nf: int):
        super().__init__()
        self.n = n
        self.paths = nn.ModuleDict()
        for i in range(n):
            for j in range(n):
                if j < i:
                    self.paths[f"{j}{i}"] = _conv1(nf, nf)
                elif j > i:
                    self.paths[f"{j}{i}"] = nn.ModuleList(_conv3(nf, nf, 2) for _ in range(j - i))
        self.merge = nn.ModuleList(_conv3(n * nf, nf) for _ in range(n))

    def _move(self, x, j, i):
        if j < i:
            return F.relu(self.paths[f"{j}{i}"](_up(x, 2 ** (i - j))))
        for conv in self.paths[f"{j}{i}"]:
            x = F.relu(conv(x))
        return x

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        return [F.relu(self.merge[i](torch.cat([xs[i]] + [self._move(xs[j], j, i) for j in range(self.n) if j != i], 1)))
                for i in range(self.n)]


class MergeTail(nn.Module):
    """Coarser streams bicubic-upsampled to HR + 1x1 conv, concat with the HR stream -> 3x3 conv -> 3x3
    conv to nf/2 -> 1x1 conv to RGB, clamped to [-1, 1]."""

    def __init__(self, n: int, nf: int, out_ch: int = 3):
        super().__init__()
        self.lift = nn.ModuleList(_conv1(nf, nf) for _ in range(n - 1))
        self.merge = _conv3(n * nf, nf)
        self.tail1, self.tail2 = _conv3(nf, nf // 2), _conv1(nf // 2, out_ch)

    def forward(self, xs):
        n = len(xs)
        ups = [F.relu(conv(_up(x, 2 ** (n - 1 - j)))) for j, (x, conv) in enumerate(zip(xs[:-1], self.lift))]
        x = F.relu(self.merge(torch.cat([xs[-1]] + ups, 1)))
        return self.tail2(self.tail1(x)).clamp(-1, 1)


class MainNet(nn.Module):
    """SFE + one stage per level (coarse to fine) with soft-attention texture fusion, CSFI, MergeTail."""

    def __init__(self, n_levels: int, nf: int = 64, n_blocks=(16, 16, 8, 4), res_scale: float = 1.0,
                 in_ch: int = 3, t_channels=_LTE_CHANNELS):
        super().__init__()
        t_ch = tuple(t_channels)[:n_levels][::-1]                        # coarse first
        self.n_levels = n_levels
        self.sfe_head, self.sfe_body, self.sfe_tail = _conv3(in_ch, nf), _res_blocks(n_blocks[0], nf, res_scale), \
            _conv3(nf, nf)
        self.heads = nn.ModuleList(_conv3(t_ch[i] + nf, nf) for i in range(n_levels))
        self.ups = nn.ModuleList(nn.Sequential(_conv3(nf, 4 * nf), nn.PixelShuffle(2)) for _ in range(n_levels - 1))
        self.csfi = nn.ModuleList(CSFI(i + 1, nf) for i in range(1, n_levels))
        self.bodies = nn.ModuleList(nn.ModuleList(_res_blocks(n_blocks[i + 1], nf, res_scale) for _ in range(i + 1))
                                    for i in range(n_levels))
        self.tails = nn.ModuleList(nn.ModuleList(_conv3(nf, nf) for _ in range(i + 1)) for i in range(n_levels))
        self.merge_tail = MergeTail(n_levels, nf, in_ch)

    def forward(self, lr, s, textures):
        x = F.relu(self.sfe_head(lr))
        x = x + self.sfe_tail(self.sfe_body(x))
        xs: list[torch.Tensor] = []
        for i in range(self.n_levels):
            new = x if i == 0 else F.relu(self.ups[i - 1](xs[-1]))
            s_i = s if i == 0 else _up(s, 2 ** i)
            new = new + self.heads[i](torch.cat([new, textures[i]], 1)) * s_i     # soft attention (Eq. 6)
            xs = xs + [new]
            fused = xs if i == 0 else self.csfi[i - 1](xs)
            xs = [x_j + tail(body(f_j)) for x_j, f_j, body, tail in zip(xs, fused, self.bodies[i], self.tails[i])]
        return self.merge_tail(xs)


class TTSR(nn.Module):
    """(LR, Ref, Ref's LR) -> SR in [0, 1].  ``lte_kwargs``: weights_dir / allow_random for the VGG19;
    ``lte_shrink`` > 1 (smoke only): a :class:`NarrowLTE` instead."""

    def __init__(self, scale: int, nf: int = 64, n_blocks=(16, 16, 8, 4), res_scale: float = 1.0,
                 in_ch: int = 3, lte_shrink: int = 1, **lte_kwargs):
        super().__init__()
        if scale not in (2, 4):
            raise ValueError(f"TTSR is built for x2 and x4, got x{scale}")
        self.scale, self.n_levels = scale, int(math.log2(scale)) + 1
        self.lte = LTE(self.n_levels, **lte_kwargs) if lte_shrink == 1 else NarrowLTE(self.n_levels, lte_shrink)
        t_channels = tuple(c // lte_shrink for c in _LTE_CHANNELS)
        self.main = MainNet(self.n_levels, nf, n_blocks, res_scale, in_ch, t_channels)

    def forward(self, lr: torch.Tensor, ref: torch.Tensor, ref_lr: torch.Tensor) -> torch.Tensor:
        lrsr = imresize(lr, self.scale, antialias=False)                 # LR^up
        refsr = imresize(ref_lr, self.scale, antialias=False)            # Ref^{down,up}
        q = self.lte(lrsr)[-1]
        k = self.lte(refsr)[-1]
        ref_levels = self.lte(ref)[::-1]                                  # coarse first
        s, textures = search_transfer(q, k, ref_levels)
        return (self.main(lr * 2 - 1, s, textures) + 1) / 2


class _PackedInput(nn.Module):
    """For the cost columns: the test-time TTSR on one packed tensor (see ``TTSRModule.example_input``)."""

    def __init__(self, net: TTSR):
        super().__init__()
        self.net = net

    def forward(self, packed: torch.Tensor) -> torch.Tensor:
        h, w = (d // self.net.scale for d in packed.shape[-2:])
        return self.net(packed[:, 6:9, :h, :w], packed[:, :3], packed[:, 3:6, :h, :w])


class TTSRModule(PlainSRModule):
    """PlainSRModule whose network also reads ``batch["ref"]`` / ``batch["ref_lr"]``; the LTE gets its own lr."""

    def __init__(self, net: TTSR, scale: int, lr: float = 1e-4, lr_lte: float = 1e-5, betas=(0.9, 0.999),
                 milestones=(), gamma: float = 0.5, loss: str = "l1"):
        super().__init__(net, scale, lr=lr, betas=betas, milestones=milestones, gamma=gamma, loss=loss)
        self.save_hyperparameters(ignore=["net"])

    def forward(self, lr, ref=None, ref_lr=None):
        if ref is None:
            raise ValueError("TTSR needs a reference image: batch['ref'] / batch['ref_lr'] (KatherSRDataModule)")
        return self.net(lr, ref, ref_lr)

    def _sr(self, batch):
        return self(batch["lr"], batch["ref"], batch["ref_lr"])

    def restore(self, batch):
        shown = F.interpolate(batch["lr"], scale_factor=self.scale, mode="nearest")
        return self._sr(batch), batch["hr"], None, shown

    def training_step(self, batch, batch_idx):
        loss = self.pixel(self._sr(batch), batch["hr"])
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx):
        self.log("val/l1", F.l1_loss(self._sr(batch).clamp(0, 1), batch["hr"]), sync_dist=True)

    def inference_net(self) -> nn.Module:
        return _PackedInput(self.net)

    def example_input(self, batch: dict) -> torch.Tensor:
        """[ref, ref_lr, lr] in one (1, 9, H, W) tensor, the LR images in the top-left corner."""
        ref = batch["ref"][:1]
        packed = ref.new_zeros(1, 9, *ref.shape[-2:])
        h, w = batch["lr"].shape[-2:]
        packed[:, :3], packed[:, 3:6, :h, :w], packed[:, 6:9, :h, :w] = ref, batch["ref_lr"][:1], batch["lr"][:1]
        return packed

    def configure_optimizers(self):
        hp = self.hparams
        groups = [{"params": list(self.net.main.parameters()), "lr": hp.lr},
                  {"params": [p for p in self.net.lte.parameters() if p.requires_grad], "lr": hp.lr_lte}]
        opt = torch.optim.Adam(groups, betas=tuple(hp.betas))
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(hp.milestones), gamma=hp.gamma)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


PAPER = dict(nf=64, n_blocks=(16, 16, 8, 4), batch=9, patch=160, lr=1e-4, lr_lte=1e-5,
             steps=100 * 16_000 // 9)
# smoke: 1,600 iterations; at 400 TTSR was below bicubic at both scales (26.63 / 23.18 dB), at 1,600 above
# (30.36 / 24.09)
SMOKE = dict(nf=16, n_blocks=(1, 1, 1, 1), batch=4, patch=32, lr=2e-3, lr_lte=2e-4, steps=1600, lte_shrink=16)


def build_ttsr(ctx: BuildContext) -> tuple[TTSRModule, TrainPlan]:
    cfg = PAPER if ctx.profile == "paper" else SMOKE
    patch = cfg["patch"][ctx.scale] if isinstance(cfg["patch"], dict) else cfg["patch"]
    if ctx.profile == "smoke":      # VGG19-pattern LTE at 1/16 width, random: the x2 search is quadratic in pixels
        net = TTSR(ctx.scale, cfg["nf"], cfg["n_blocks"], in_ch=ctx.in_channels, lte_shrink=cfg["lte_shrink"])
    else:
        net = TTSR(ctx.scale, cfg["nf"], cfg["n_blocks"], in_ch=ctx.in_channels, weights_dir=ctx.weights_dir)
    module = TTSRModule(net, ctx.scale, lr=cfg["lr"], lr_lte=cfg["lr_lte"])
    notes = (f"LTE: VGG19 layer pattern at 1/{cfg['lte_shrink']} width, randomly initialised (smoke)"
             if ctx.profile == "smoke" else "")
    if ctx.profile == "paper":
        return module, TrainPlan(max_steps=cfg["steps"], batch_size=cfg["batch"], patch_size=patch, notes=notes)
    notes += f"; smoke: {cfg['steps']} it., lr {cfg['lr']:g}"
    return module, TrainPlan(max_steps=cfg["steps"], batch_size=cfg["batch"], patch_size=patch, notes=notes,
                             val_every_n_steps=cfg["steps"])  # one validation: a 224 px pass costs seconds
