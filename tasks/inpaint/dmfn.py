"""DMFN: Image Fine-grained Inpainting (Hui, Li, Wang, Gao, 2020; "Zheng et al." in MSSA GAN), a Table 3
baseline of MSSA GAN (Liang et al. 2022, Sec. 5).

Reference: the official PyTorch code ``Zheng222/DMFN`` (``models/architecture.py``, ``block.py``,
``inpainting_model.py``, ``configs/celeba-hq-regular_list.yaml``).

- Generator: conv5x5 4 -> 64; 3x3 s2 128; 3x3 128; 3x3 s2 256 (IN without affine, ReLU); 8 dense
  multi-scale fusion blocks (DMFB, paper Sec. 3.1 / Fig. 2); 3x3 256; 2 x [deconv4x4 s2 + IN + ReLU +
  3x3 conv + IN + ReLU]; 3x3 -> 3, tanh.  Input: the image and the mask (4 channels).
- DMFB as RELEASED (``ResBlock_new``): 3x3 256 -> 64, IN + ReLU; four 3x3 64 -> 64 at dilations 1, 2,
  4, 8; cumulative sums d1, d1+d2, d1+d2+d3, d1+..+d4; concat; IN + ReLU; 3x3 256 -> 256; IN; residual.
  The paper's block adds a 3x3 conv after each cumulative sum and fuses with a 1x1 conv (spec Sec. 3,
  author's reply in issue #12); we follow the released code, whose 8-block generator is the 9.04 M
  the spec lists (the paper's variant would be 5.73 M).
- Discriminator: global 5x5 stride-2 convs 64..512 (BN, LeakyReLU 0.2) to 4x4 -> FC 512, local on the
  hole box -> FC 512, concat -> LeakyReLU -> FC 1 (``GlobalLocalDiscriminator``, act 'lrelu').
- Loss (Sec. 3.2-3.3, config weights), all on the COMPOSITED output (the reference composites before
  every loss): L1 x 1; VGG19 feature loss x 25 on relu1_1..relu5_1 with weights 1e3 / C^2, the first two
  layers "self-guided" (features times 1 + the per-image max-normalised squared error map, Sec. 3.2);
  geometric alignment ("center") loss x 1 on relu4_1 (MSE of the features' centroid coordinates);
  relativistic average GAN (BCE) x 0.003; local-D feature matching x 5 with weights 1e3 / C^2.
  Adam 2e-4 (0.5, 0.999) for both; the config's MultiStepLR step (100k = its last iteration) never acts.
- Parameters at paper width: G 9,037,443 (= the reference's, spec 9.04 M); D 23,562,753 at 128 px
  (spec 23.56 M; the reference's 256 px D is 36.67 M).

Fidelity: faithful to the released code; adapted to MSSA's comparison: the task's data, masks and
corruption (x_M keeps its signal; the reference zeroes the hole: ``hole_fill`` None, spec Sec. 3),
the D at 128 px (one fewer conv per branch), and MSSA's budget (below).  VGG19 from MIRBENCH_WEIGHTS
(ImageNet normalisation as the reference); the smoke profile may use a seeded random VGG (row notes).

Protocol ("table"): the reference's optimiser, batch size (16) and loss weights for MSSA's 60 epochs
over the 23,080 training patches (spec Sec. 3).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.specs import BuildContext, TrainPlan
from datamodules.kather_inpaint import EXPECTED
from tasks.common.discriminators import GlobalLocalDiscriminator, crop_boxes
from tasks.common.losses import VGGFeatures, d_loss, feature_matching_loss, g_loss
from tasks.inpaint.module import InpaintGANModule, from_net, plan_notes

PAPER_EPOCHS = 60                                    # MSSA Sec. 4.1, the comparison's budget
VGG_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
REFERENCE_PARAMS = {"generator": 9_037_443, "discriminator": 23_562_753}   # 128 px D


def _conv(cin: int, cout: int, k: int = 3, s: int = 1, norm: bool = True, act: nn.Module | None = None):
    layers = [nn.Conv2d(cin, cout, k, s, k // 2)]
    if norm:
        layers.append(nn.InstanceNorm2d(cout))
    layers.append(act if act is not None else nn.ReLU(inplace=True))
    return layers


class DMFB(nn.Module):
    """Dense multi-scale fusion block, released form (``ResBlock_new``)."""

    def __init__(self, nc: int = 256):
        super().__init__()
        q = nc // 4
        self.c1 = nn.Conv2d(nc, q, 3, 1, 1)
        self.branches = nn.ModuleList(nn.Conv2d(q, q, 3, 1, d, dilation=d) for d in (1, 2, 4, 8))
        self.c2 = nn.Conv2d(nc, nc, 3, 1, 1)
        self.norm = nn.InstanceNorm2d(nc)           # parameter-free; shared as in the reference
        self.norm_q = nn.InstanceNorm2d(q)

    def forward(self, x):
        h = F.relu(self.norm_q(self.c1(x)))
        sums, acc = [], 0
        for branch in self.branches:
            acc = acc + branch(h)
            sums.append(acc)
        out = self.c2(F.relu(self.norm(torch.cat(sums, 1))))
        return x + self.norm(out)


class DMFNGenerator(nn.Module):
    def __init__(self, nf: int = 64, n_blocks: int = 8):
        super().__init__()
        self.encoder = nn.Sequential(*_conv(4, nf, 5, norm=False), *_conv(nf, 2 * nf, 3, 2), *_conv(2 * nf, 2 * nf),
                                     *_conv(2 * nf, 4 * nf, 3, 2))
        self.blocks = nn.Sequential(*(DMFB(4 * nf) for _ in range(n_blocks)))
        up = lambda cin, cout: [nn.ConvTranspose2d(cin, cout, 4, 2, 1), nn.InstanceNorm2d(cout), nn.ReLU(True),
                                *_conv(cout, cout)]
        self.decoder = nn.Sequential(*_conv(4 * nf, 4 * nf), *up(4 * nf, 2 * nf), *up(2 * nf, nf),
                                     *_conv(nf, 3, norm=False, act=nn.Tanh()))

    def forward(self, x, mask):
        return self.decoder(self.blocks(self.encoder(torch.cat([x, mask], 1))))


def feature_centers(f: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Per-channel centroid (x, y) of a non-negative feature map in [-1, 1) coordinates (reference
    ``batch_get_centers``): (B, C, 1, 2)."""
    b, c, h, w = f.shape
    pdf = (f + eps) / (f + eps).sum((2, 3), keepdim=True)
    xs = torch.arange(w, device=f.device, dtype=f.dtype) / w * 2 - 1
    ys = torch.arange(h, device=f.device, dtype=f.dtype) / h * 2 - 1
    cx = (pdf * xs.view(1, 1, 1, w)).sum((2, 3), keepdim=True)
    cy = (pdf * ys.view(1, 1, h, 1)).sum((2, 3), keepdim=True)
    return torch.cat([cx, cy], 3)


class DMFNModule(InpaintGANModule):
    """L1 + self-guided VGG feature loss + alignment loss + RaGAN + D feature matching, on the composite."""

    def __init__(self, net, discriminator, vgg: VGGFeatures, w_feat: float = 25.0, w_center: float = 1.0,
                 w_dis_feat: float = 5.0, **kw):
        super().__init__(net, discriminator, gan="ragan", **kw)
        self.save_hyperparameters(ignore=["net", "discriminator", "vgg"])
        self.vgg = vgg

    def _d(self, img, box, features: bool = False):
        return self.discriminator(img, crop_boxes(img, box), features=features)

    def d_input(self, batch, out):
        return self.composited(out, batch)

    def reconstruction_losses(self, batch, outs):
        hp, target = self.hparams, self.target(batch)
        out = self.d_input(batch, outs[-1])
        parts = {"l1": hp.w_l1 * F.l1_loss(out, target)}
        f_out, f_tgt = self.vgg(from_net(out)), [f.detach() for f in self.vgg(from_net(target))]
        err = (out.detach() - target).pow(2).mean(1, keepdim=True)
        err = err / err.amax((2, 3), keepdim=True).clamp_min(1e-12)   # the reference divides by the max
        terms = []
        for i, (a, b) in enumerate(zip(f_out, f_tgt)):
            w = 1e3 / a.shape[1] ** 2
            if i < 2:  # self-guided: the error map (pooled to the layer's size) weights the features
                g = 1 + (err if i == 0 else F.avg_pool2d(err, 2))
                terms.append(w * F.l1_loss(a * g, b * g))
            else:
                terms.append(w * F.l1_loss(a, b))
        parts["feat"] = hp.w_feat * sum(terms)
        parts["center"] = hp.w_center * F.mse_loss(feature_centers(f_out[3]), feature_centers(f_tgt[3]))
        return parts

    def adversarial_loss(self, batch, outs):
        hp, box = self.hparams, batch["box"]
        fake, feats_fake = self._d(self.d_input(batch, outs[-1]), box, features=True)
        real, feats_real = self._d(self.target(batch), box, features=True)
        weights = [1e3 / f.shape[1] ** 2 for f in feats_real]
        return hp.gan_weight * g_loss(real.detach(), fake, "ragan") + \
            hp.w_dis_feat * feature_matching_loss(feats_fake, feats_real, weights)

    def discriminator_loss(self, batch, outs):
        box = batch["box"]
        return d_loss(self._d(self.target(batch), box), self._d(self.d_input(batch, outs[-1].detach()), box), "ragan")


PAPER = dict(nf=64, n_blocks=8, d_nf=64, batch=16, lr=2e-4, patch=0)
SMOKE = dict(nf=8, n_blocks=2, d_nf=8, batch=4, lr=1e-3, patch=64, steps=60)


def build_dmfn(ctx: BuildContext) -> tuple[DMFNModule, TrainPlan]:
    paper = ctx.profile == "paper"
    cfg = PAPER if paper else SMOKE
    size = 128 if paper else cfg["patch"]
    disc = GlobalLocalDiscriminator(size, size // 2, cfg["d_nf"], fc=8 * cfg["d_nf"], act="lrelu")
    vgg = VGGFeatures(VGG_LAYERS, arch="vgg19", weights_dir=ctx.weights_dir, allow_random=not paper)
    module = DMFNModule(DMFNGenerator(cfg["nf"], cfg["n_blocks"]), disc, vgg, composite=True, hole_fill=None,
                        lr=cfg["lr"], betas=(0.5, 0.999), w_l1=1.0, gan_weight=0.003)
    steps = PAPER_EPOCHS * math.ceil(EXPECTED["NCT-CRC-HE-100K"] / cfg["batch"]) if paper else cfg["steps"]
    notes = plan_notes(module, ctx, "VGG19 randomly initialised (smoke)" if vgg.random_init else "",
                       "" if paper else "smoke widths 8, 2 DMFBs")
    return module, TrainPlan(max_steps=steps, batch_size=cfg["batch"], patch_size=cfg["patch"], notes=notes)
