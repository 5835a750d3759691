"""EdgeConnect (Nazeri et al., ICCVW 2019), a Table 3 baseline of MSSA GAN (Liang et al. 2022, Sec. 5).

Reference: the official PyTorch code ``knazeri/edge-connect`` (``src/networks.py``, ``models.py``,
``dataset.py``, ``config.yml.example``).

- Edges: Canny on the grey image (skimage ``rgb2gray`` weights), sigma 2, scikit-image's
  ``feature.canny`` with its default hysteresis thresholds, as the reference's dataset does.  The
  training target is the Canny map of the ground truth; the edge INPUT is the Canny map of the
  corrupted image x_M restricted to the known pixels (``canny(..., mask=known)``, then zeroed in the
  hole): the same at training and test, and no ground truth reaches the networks at test time (the
  reference computes it from the ground-truth image with the hole masked out; our known pixels are
  the ground truth's).
- G1 (edge generator) and G2 (inpainting generator), each (Sec. 3.1, ``networks.py``): reflect-pad
  conv7x7 64; conv4x4 s2 128; conv4x4 s2 256; 8 residual blocks (3x3 dilation 2, then 3x3, IN without
  affine, no ReLU after the sum); convT4x4 128; convT4x4 64; reflect-pad conv7x7 -> 1 (sigmoid) or
  3.  IN + ReLU; G1 has spectral norm on every conv but the last (biases dropped only in its residual
  blocks, as the reference).  G1 input:
  grey x_M, masked edges, mask; G2 input: x_M and the edge map (G1's inside the hole, the input's
  outside).  G2's ``(tanh + 1) / 2`` in [0, 1] is returned as tanh (the task's [-1, 1]).
- D1 and D2: 70x70 PatchGAN, conv4x4 64, 128, 256 (s2), 512 (s1), 1 (s1), LeakyReLU 0.2, spectral
  norm, no biases; D1 sees (grey ground truth, edge map), D2 the RGB image.
- Losses (eq. 1-8 and ``config.yml.example``): G1: nsgan adversarial x 1 + D feature matching x 10.
  G2: L1 x 1 divided by mean(mask) (the code's normalisation), adversarial x 0.1, perceptual x 0.1
  (VGG19 relu1_1..relu5_1, L1), style x 250 (Gram L1 on relu2_2, relu3_4, relu4_4, relu5_2 of the
  hole-masked images).  L1, perceptual and style on the [0, 1] images, as the reference.  Adam
  1e-4, betas (0, 0.9), D lr x 0.1.  Output composited (``outputs_merged`` in the test code).
- Training schedule: the released code trains G1 (model 1), G2 on ground-truth edges (model 2), then
  G2 on G1's edges (model 3; the paper's joint model 4 is not what the code trains, issue #35).  G1
  and G2 do not interact in models 1 and 2, so they train side by side for the first half of the
  budget (one Adam over both, which equals two Adams on disjoint parameters), then G2 and D2 alone on
  G1's (frozen) edges for the second half.
- Parameters at paper width: G1 10,761,089, G2 10,774,595, D1 2,762,752, D2 2,763,776 (= the
  reference's; the spec rounds them to 10.77 / 10.78 / 2.77 M).

Fidelity: faithful to the released code; adapted to MSSA's comparison: the task's data, masks and
corruption (x_M keeps its signal; the reference whitens the hole: ``hole_fill`` None, spec Sec. 3) and
MSSA's budget (below).  The VGG input is ImageNet-normalised (the reference feeds raw [0, 1] images
to a network trained on normalised ones).  VGG19 from MIRBENCH_WEIGHTS; smoke may use a random one.

Protocol ("table"): the reference's optimiser, batch size (8) and loss weights for MSSA's 60 epochs
over the 23,080 training patches (spec Sec. 3).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from skimage.feature import canny
from torch import nn
from torch.nn.utils import spectral_norm

from benchmark.specs import BuildContext, TrainPlan
from datamodules.kather_inpaint import EXPECTED
from tasks.common.losses import VGGFeatures, d_loss, feature_matching_loss, g_loss, gram
from tasks.inpaint.module import InpaintGANModule, from_net, plan_notes

PAPER_EPOCHS = 60                                    # MSSA Sec. 4.1, the comparison's budget
SIGMA = 2.0                                          # config.yml SIGMA
GRAY = (0.2125, 0.7154, 0.0721)                      # skimage.color.rgb2gray
PERCEPTUAL = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
STYLE = ("relu2_2", "relu3_4", "relu4_4", "relu5_2")
REFERENCE_PARAMS = {"edge_generator": 10_761_089, "inpaint_generator": 10_774_595,
                    "edge_discriminator": 2_762_752, "inpaint_discriminator": 2_763_776}


def rgb_to_gray(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) [0, 1] -> (B, 1, H, W) with skimage's rgb2gray weights."""
    return (x * torch.tensor(GRAY, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)).sum(1, keepdim=True)


@torch.no_grad()
def canny_edges(gray: torch.Tensor, known: torch.Tensor | None = None, sigma: float = SIGMA) -> torch.Tensor:
    """scikit-image Canny of each (B, 1, H, W) grey image in [0, 1]; ``known`` (B, 1, H, W), 1 = usable
    pixel, limits the detector to it (skimage's ``mask``: edges at its border are not reported)."""
    g = gray.detach().double().cpu().numpy()[:, 0]
    k = None if known is None else known.detach().cpu().numpy()[:, 0] > 0.5
    edges = [canny(g[i], sigma=sigma, mask=None if k is None else k[i]) for i in range(g.shape[0])]
    return torch.from_numpy(np.stack(edges)[:, None].astype(np.float32)).to(gray.device)


def _sn(module: nn.Module, on: bool) -> nn.Module:
    return spectral_norm(module) if on else module


class ResnetBlock(nn.Module):
    """Reflect-pad 3x3 conv at ``dilation`` + IN + ReLU, reflect-pad 3x3 conv + IN, added to the input."""

    def __init__(self, dim: int, dilation: int = 2, sn: bool = False):
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(dilation), _sn(nn.Conv2d(dim, dim, 3, dilation=dilation, bias=not sn), sn),
            nn.InstanceNorm2d(dim), nn.ReLU(True),
            nn.ReflectionPad2d(1), _sn(nn.Conv2d(dim, dim, 3, bias=not sn), sn), nn.InstanceNorm2d(dim))

    def forward(self, x):
        return x + self.body(x)


class EdgeConnectGenerator(nn.Module):
    """The shared G1/G2 body (``EdgeGenerator``: sn=True, 3 -> 1; ``InpaintGenerator``: sn=False, 4 -> 3).
    Returns the last conv's output (the caller applies sigmoid or tanh)."""

    def __init__(self, in_ch: int, out_ch: int, sn: bool, nf: int = 64, n_blocks: int = 8):
        super().__init__()
        self.net = nn.Sequential(
            nn.ReflectionPad2d(3), _sn(nn.Conv2d(in_ch, nf, 7), sn), nn.InstanceNorm2d(nf), nn.ReLU(True),
            _sn(nn.Conv2d(nf, 2 * nf, 4, 2, 1), sn), nn.InstanceNorm2d(2 * nf), nn.ReLU(True),
            _sn(nn.Conv2d(2 * nf, 4 * nf, 4, 2, 1), sn), nn.InstanceNorm2d(4 * nf), nn.ReLU(True),
            *(ResnetBlock(4 * nf, 2, sn) for _ in range(n_blocks)),
            _sn(nn.ConvTranspose2d(4 * nf, 2 * nf, 4, 2, 1), sn), nn.InstanceNorm2d(2 * nf), nn.ReLU(True),
            _sn(nn.ConvTranspose2d(2 * nf, nf, 4, 2, 1), sn), nn.InstanceNorm2d(nf), nn.ReLU(True),
            nn.ReflectionPad2d(3), nn.Conv2d(nf, out_ch, 7))

    def forward(self, x):
        return self.net(x)


class EdgeConnectDiscriminator(nn.Module):
    """70x70 PatchGAN with spectral norm and no biases; returns (logits, [conv1..conv5 outputs])."""

    def __init__(self, in_ch: int, nf: int = 64):
        super().__init__()
        chans = [in_ch, nf, 2 * nf, 4 * nf, 8 * nf]
        self.convs = nn.ModuleList(
            spectral_norm(nn.Conv2d(chans[i], chans[i + 1], 4, 2 if i < 3 else 1, 1, bias=False)) for i in range(4))
        self.last = spectral_norm(nn.Conv2d(8 * nf, 1, 4, 1, 1, bias=False))

    def forward(self, x):
        feats = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.2)
            feats.append(x)
        logits = self.last(x)
        return logits, feats + [logits]


class EdgeConnect(nn.Module):
    """G1 then G2 on one corrupted batch.  ``forward(x_m, mask)`` -> [edge map (B, 1), image in [-1, 1]];
    ``edges`` (B, 1) given replaces the input's Canny map (G2 trained on ground-truth edges)."""

    def __init__(self, nf: int = 64, n_blocks: int = 8):
        super().__init__()
        self.edge = EdgeConnectGenerator(3, 1, sn=True, nf=nf, n_blocks=n_blocks)
        self.inpaint = EdgeConnectGenerator(4, 3, sn=False, nf=nf, n_blocks=n_blocks)

    def input_edges(self, x_m: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(grey x_M in [0, 1], Canny of x_M on the known pixels, zero in the hole)."""
        gray = rgb_to_gray(from_net(x_m))
        return gray, canny_edges(gray, 1 - mask) * (1 - mask)

    def predict_edges(self, gray: torch.Tensor, edges_in: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.edge(torch.cat([gray, edges_in, mask], 1)))

    def complete(self, x_m: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.inpaint(torch.cat([x_m, edges], 1)))

    def forward(self, x_m: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
        gray, edges_in = self.input_edges(x_m, mask)
        edges = self.predict_edges(gray, edges_in, mask)
        merged = edges * mask + edges_in * (1 - mask)
        return [edges, self.complete(x_m, merged)]


class EdgeConnectModule(InpaintGANModule):
    """Models 1 + 2 side by side for ``edge_steps`` iterations, then model 3 (G2 on G1's edges)."""

    def __init__(self, net: EdgeConnect, discriminator: nn.ModuleDict, vgg: VGGFeatures, edge_steps: int,
                 w_fm: float = 10.0, w_per: float = 0.1, w_style: float = 250.0, **kw):
        super().__init__(net, discriminator, gan="vanilla", **kw)
        self.save_hyperparameters(ignore=["net", "discriminator", "vgg"])
        self.vgg = vgg

    def joint_stage(self) -> bool:
        return self.iteration < self.hparams.edge_steps

    def generate(self, x_m, mask):
        """Training: [predicted edges, edge target, edge-D grey, G2 output]; G2 sees ground-truth edges in
        the first stage (model 2) and G1's detached edges merged with the input's afterwards (model 3)."""
        net: EdgeConnect = self.net
        if not self.training:
            return net(x_m, mask)
        gray, edges_in = net.input_edges(x_m, mask)
        gray_gt = rgb_to_gray(self._batch["image"])
        edges_gt = canny_edges(gray_gt)
        if self.joint_stage():
            edges = net.predict_edges(gray, edges_in, mask)
            g2_edges = edges_gt
        else:
            with torch.no_grad():
                edges = net.predict_edges(gray, edges_in, mask)
            g2_edges = edges * mask + edges_in * (1 - mask)
        return [edges, edges_gt, gray_gt, net.complete(x_m, g2_edges)]

    def training_step(self, batch, batch_idx):
        self._batch = batch  # generate() needs the ground truth's edges (the training target of G1)
        return super().training_step(batch, batch_idx)

    def reconstruction_losses(self, batch, outs):
        hp, mask = self.hparams, batch["mask"]
        out, target = from_net(outs[-1]), batch["image"]
        parts = {"l1": hp.w_l1 * F.l1_loss(out, target) / mask.mean()}
        f_out, f_tgt = self._vgg(out, PERCEPTUAL), self._vgg(target.detach(), PERCEPTUAL)
        parts["perc"] = hp.w_per * sum(F.l1_loss(a, b.detach()) for a, b in zip(f_out, f_tgt))
        s_out, s_tgt = self._vgg(out * mask, STYLE), self._vgg(target * mask, STYLE)
        parts["style"] = hp.w_style * sum(F.l1_loss(gram(a), gram(b).detach()) for a, b in zip(s_out, s_tgt))
        return parts

    def _vgg(self, x: torch.Tensor, names: tuple[str, ...]) -> list[torch.Tensor]:
        """The VGG features ``names`` of x (VGGFeatures returns its layers in network order)."""
        order = [name for _, name in sorted(zip(self.vgg.ids, PERCEPTUAL + STYLE))]
        feats = dict(zip(order, self.vgg(x)))
        return [feats[n] for n in names]

    def adversarial_loss(self, batch, outs):
        hp, d = self.hparams, self.discriminator
        fake, _ = d["inpaint"](from_net(outs[-1]))
        parts = hp.gan_weight * g_loss(fake.detach(), fake, "vanilla")
        if self.joint_stage():
            edges, edges_gt, gray_gt = outs[0], outs[1], outs[2]
            e_fake, f_fake = d["edge"](torch.cat([gray_gt, edges], 1))
            _, f_real = d["edge"](torch.cat([gray_gt, edges_gt], 1))
            parts = parts + g_loss(e_fake.detach(), e_fake, "vanilla") + hp.w_fm * feature_matching_loss(f_fake, f_real)
        return parts

    def discriminator_loss(self, batch, outs):
        d = self.discriminator
        loss = d_loss(d["inpaint"](batch["image"])[0], d["inpaint"](from_net(outs[-1].detach()))[0], "vanilla")
        if self.joint_stage():
            gray_gt = outs[2]
            loss = loss + d_loss(d["edge"](torch.cat([gray_gt, outs[1]], 1))[0],
                                 d["edge"](torch.cat([gray_gt, outs[0].detach()], 1))[0], "vanilla")
        return loss


PAPER = dict(nf=64, n_blocks=8, d_nf=64, batch=8, lr=1e-4, patch=0)
SMOKE = dict(nf=8, n_blocks=1, d_nf=8, batch=4, lr=1e-3, patch=64, steps=60)


def build_edgeconnect(ctx: BuildContext) -> tuple[EdgeConnectModule, TrainPlan]:
    paper = ctx.profile == "paper"
    cfg = PAPER if paper else SMOKE
    disc = nn.ModuleDict({"edge": EdgeConnectDiscriminator(2, cfg["d_nf"]),
                          "inpaint": EdgeConnectDiscriminator(3, cfg["d_nf"])})
    vgg = VGGFeatures(PERCEPTUAL + STYLE, arch="vgg19", weights_dir=ctx.weights_dir, allow_random=not paper)
    steps = PAPER_EPOCHS * math.ceil(EXPECTED["NCT-CRC-HE-100K"] / cfg["batch"]) if paper else cfg["steps"]
    module = EdgeConnectModule(EdgeConnect(cfg["nf"], cfg["n_blocks"]), disc, vgg, edge_steps=steps // 2,
                               composite=True, hole_fill=None, lr=cfg["lr"], lr_d=0.1 * cfg["lr"], betas=(0.0, 0.9),
                               w_l1=1.0, gan_weight=0.1)
    notes = plan_notes(module, ctx, "Canny: scikit-image, sigma 2",
                       f"G1+G2 (GT edges) {steps // 2} it, then G2 on G1 edges {steps - steps // 2} it",
                       "VGG19 randomly initialised (smoke)" if vgg.random_init else "",
                       "" if paper else "smoke widths 8, 1 residual block")
    return module, TrainPlan(max_steps=steps, batch_size=cfg["batch"], patch_size=cfg["patch"], notes=notes)
