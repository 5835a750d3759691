"""MSSA GAN (Liang et al. 2022, "Multi-scale self-attention generative adversarial network for pathology
image restoration"), its Table 4 ablations and Table 3's "Without MSSA".  Fidelity: reconstructed
(no code released; the paper gives widths, not kernels; choices follow ../shared/specs/inpaint.md §2).

Generator (§3.1.1): a U-Net-like autoencoder.  Encoder of 6 convs + BN + LeakyReLU(0.2) with feature
maps 128²x64, 64²x128, 32²x256 (3x3 convs, 4x4 stride-2 downsampling: NS); a bottleneck of four
3x3 dilated convs (rates 2, 4, 8, 16); a mirrored decoder (4x4 stride-2 deconvs) with skip
connections (concatenated: NS) and a regional self-attention (RSA) module on each of its three
scales; a 1x1 conv + tanh head per scale gives the multi-scale outputs 32/64/128 (§3.2.1).

RSA (§3.1.1.1, eqs. 1-13): the map is split at the hole (at this scale) into P foreground and P'
background tokens.  Branch 1: hole queries attend to background keys/values (eq. 6: softmax of
Q_i^T K_j, no 1/sqrt(d)); branch 2: hole queries attend to hole keys/values (eq. 11).  Each output
is zero-padded back to the map, scaled by a learnable beta (0 at init, SAGAN's gamma: NS) and added
to F (eqs. 7, 12); Y = conv1x1(Y_f + Y'_f) (eq. 13, printed "Y_f + Y_f").  Q/K at C/8, V at C (SAGAN
[44]: NS).  ``attention='sdpa'`` runs F.scaled_dot_product_attention (memory-efficient kernel on
GPU; needed for batch 64 at 128 px: the branch-1 scores alone are 12.9 GB fp32), ``'math'`` the
explicit matmul-softmax (the reference the tests compare with; the "without memory-efficient path" of
tasks/inpaint/perf_rsa.py); ``'auto'`` = sdpa (also faster on CPU at 128 px: 0.95 vs 2.3 s per RSA-128
call at width 8 on the loaded 2-core machine, where the spec had measured the opposite at 64 px).

Discriminator (§3.1.2): six 4x4 stride-2 convs, channels 128, 128, 256, 512, 1024, 1, sigmoid
(logits + BCE here); BN on convs 2-5 and LeakyReLU(0.2) (NS); the last conv reduces 4x4 to 1x1.

Loss (eq. 21, Table 2): 100 L_m + 10 L_adv + L_perc + L_style + L_TV.  L_m = sum_i lambda_i L1(S_i, T_i),
lambda = 0.6 / 0.8 / 1.0 at 32 / 64 / 128 on the whole image, T_i average-pooled x.  L_perc and
L_style on VGG-16 pool1-pool3 (PConv [26], whose formulas eqs. 19-20 are: NS), per-layer means
(1/(H W C) as eq. 19; Gram entries averaged, PConv's 1/C^2 normalisation).  L_TV: anisotropic L1 TV of x_hat.
G non-saturating BCE.  Adam 2e-4, betas (0.5, 0.999), batch 64, 60 epochs (§4.1); constant lr (the
"adaptively adjusting the learning rate" of §6 is not specified).  Output: the raw generator output
(not composited; the Table 3 / 4 gaps between whole-image and hole PSNR imply it, spec §0.3); the
``mssa_gan_composited`` row evaluates the same trained network with the known pixels pasted back (spec §6).

Smoke (``SMOKE``, CPU minutes): a pixel-only phase at a high lr, then the full eq. 21 at lr / 10 (notes on
``SMOKE``; every row says so).  Under the `scale` protocol the raw output must reproduce the known 75 % of the
image; a width-8 network reaches ~27 dB there in 120 iterations (the composited row shows what the hole
alone is worth).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.profiles import get_profile
from benchmark.specs import BuildContext, TrainPlan
from tasks.common.losses import VGGFeatures, gram, tv_loss
from tasks.inpaint.module import InpaintGANModule, downsample_mask, from_net, plan_notes

LAMBDAS = (0.6, 0.8, 1.0)           # multi-scale loss weights at 32, 64, 128 (§3.2.1)
ALPHAS = dict(ms=100.0, adv=10.0, perc=1.0, style=1.0, tv=1.0)   # eq. 21


# ----------------------------------------------------------------------------------------- blocks
def _conv(cin: int, cout: int, k: int = 3, s: int = 1, d: int = 1) -> nn.Sequential:
    pad = d * (k - 1) // 2 if s == 1 else (k - s) // 2
    return nn.Sequential(nn.Conv2d(cin, cout, k, s, pad, dilation=d, bias=False), nn.BatchNorm2d(cout),
                         nn.LeakyReLU(0.2, inplace=True))


def _deconv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout),
                         nn.LeakyReLU(0.2, inplace=True))


def _gather(tokens: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    return tokens.gather(1, idx[..., None].expand(-1, -1, tokens.shape[-1]))


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mode: str) -> torch.Tensor:
    """softmax(q k^T) v, no temperature (eq. 6); q, k (B, P, d), v (B, P', C)."""
    if mode == "math":
        return torch.softmax(q @ k.transpose(1, 2), -1) @ v
    pad = v.shape[-1] - q.shape[-1]  # zero-padding q and k to C leaves q k^T unchanged; lets the fused kernels run
    q, k = F.pad(q, (0, pad)), F.pad(k, (0, pad))
    return F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None], scale=1.0)[:, 0]


class RegionalSelfAttention(nn.Module):
    """RSA (eqs. 1-13): hole->background (branch 1) and hole->hole (branch 2) attention, fused by a 1x1 conv.

    Every image of a batch must have the same number of hole pixels at this scale (P is constant).
    """

    def __init__(self, channels: int, reduction: int = 8, attention: str = "auto"):
        super().__init__()
        if attention not in ("auto", "sdpa", "math"):
            raise ValueError(f"attention must be 'auto', 'sdpa' or 'math', got {attention!r}")
        d = max(1, channels // reduction)
        self.q1, self.k1, self.v1 = nn.Linear(channels, d), nn.Linear(channels, d), nn.Linear(channels, channels)
        self.q2, self.k2, self.v2 = nn.Linear(channels, d), nn.Linear(channels, d), nn.Linear(channels, channels)
        self.beta1 = nn.Parameter(torch.zeros(1))
        self.beta2 = nn.Parameter(torch.zeros(1))
        self.fuse = nn.Conv2d(channels, channels, 1)
        self.attention = attention

    def _mode(self, x: torch.Tensor) -> str:
        return "sdpa" if self.attention == "auto" else self.attention

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        m = downsample_mask(mask, h).flatten(1) > 0.5                        # B, HW
        n_hole = m.sum(1)
        if bool((n_hole != n_hole[0]).any()) or int(n_hole[0]) in (0, h * w):
            raise ValueError(f"RSA needs the same, non-empty hole in every image; hole sizes {n_hole.tolist()}")
        p = int(n_hole[0])
        order = torch.argsort(m.to(torch.int8), dim=1, descending=True, stable=True)
        hole_idx, bg_idx = order[:, :p], order[:, p:]
        tokens = x.flatten(2).transpose(1, 2)                                 # B, HW, C
        fg, bgd = _gather(tokens, hole_idx), _gather(tokens, bg_idx)
        mode = self._mode(x)
        o1 = _attend(self.q1(fg), self.k1(bgd), self.v1(bgd), mode)          # branch 1, eqs. 3-6
        o2 = _attend(self.q2(fg), self.k2(fg), self.v2(fg), mode)            # branch 2, eqs. 8-11
        delta = torch.zeros_like(tokens).scatter(1, hole_idx[..., None].expand(-1, -1, c),
                                                 self.beta1 * o1 + self.beta2 * o2)   # pad(): zeros off the hole
        y = 2 * tokens + delta                                                # Y_f + Y'_f (eqs. 7, 12)
        return self.fuse(y.transpose(1, 2).reshape(b, c, h, w))              # eq. 13


class MSSAGenerator(nn.Module):
    """Encoder (6 convs) -> dilated bottleneck -> decoder with skips, RSA and a head at 32 / 64 / 128."""

    def __init__(self, nf: int = 64, rsa: bool = True, multiscale_heads: bool = True, attention: str = "auto"):
        super().__init__()
        self.enc = nn.ModuleList([_conv(3, nf), _conv(nf, nf), _conv(nf, 2 * nf, 4, 2), _conv(2 * nf, 2 * nf),
                                  _conv(2 * nf, 4 * nf, 4, 2), _conv(4 * nf, 4 * nf)])
        self.bottleneck = nn.Sequential(*[_conv(4 * nf, 4 * nf, 3, 1, d) for d in (2, 4, 8, 16)])
        self.dec32 = _conv(8 * nf, 4 * nf)
        self.up64, self.dec64 = _deconv(4 * nf, 2 * nf), _conv(4 * nf, 2 * nf)
        self.up128, self.dec128 = _deconv(2 * nf, nf), _conv(2 * nf, nf)
        chans = (4 * nf, 2 * nf, nf)
        self.rsa = nn.ModuleList([RegionalSelfAttention(c, attention=attention) for c in chans]) if rsa else None
        self.heads = nn.ModuleList([nn.Conv2d(c, 3, 1) for c in (chans if multiscale_heads else chans[-1:])])
        self.multiscale_heads = multiscale_heads

    def _rsa(self, i: int, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return x if self.rsa is None else self.rsa[i](x, mask)

    def forward(self, x_m: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
        h = x_m
        skips = []
        for i, layer in enumerate(self.enc):
            h = layer(h)
            if i % 2 == 1:
                skips.append(h)                                                # 128, 64, 32
        h = self.bottleneck(h)
        d32 = self._rsa(0, self.dec32(torch.cat([h, skips[2]], 1)), mask)
        d64 = self._rsa(1, self.dec64(torch.cat([self.up64(d32), skips[1]], 1)), mask)
        d128 = self._rsa(2, self.dec128(torch.cat([self.up128(d64), skips[0]], 1)), mask)
        feats = (d32, d64, d128) if self.multiscale_heads else (d128,)
        return [torch.tanh(head(f)) for head, f in zip(self.heads, feats)]


_LAST_PAD = {4: 0, 2: 1, 1: 2}  # padding of the last 4x4 stride-2 conv that maps a 4 / 2 / 1-px map to one logit


class MSSADiscriminator(nn.Module):
    """Six 4x4 stride-2 convs (§3.1.2), channels ``widths`` + 1; the last one maps the 4x4 map to one logit.

    At a smaller input (smoke crops: a 2x2 or 1x1 map before it) the last conv pads by 1 or 2 so it still gives 1x1.
    """

    def __init__(self, widths=(128, 128, 256, 512, 1024), input_size: int = 128):
        super().__init__()
        layers, c = [], 3
        for i, w in enumerate(widths):
            layers += [nn.Conv2d(c, w, 4, 2, 1, bias=i == 0)] + ([nn.BatchNorm2d(w)] if i else [])
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            c = w
        last = input_size // 2 ** len(widths)
        if last not in _LAST_PAD or input_size % 2 ** len(widths):
            raise ValueError(f"MSSADiscriminator: input {input_size} leaves a {last}x{last} map; expected 4, 2 or 1")
        layers.append(nn.Conv2d(c, 1, 4, 2, _LAST_PAD[last]))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).flatten(1)


# ----------------------------------------------------------------------------------------- module
class _PoolFeatures(nn.Module):
    """VGG-16 pool1, pool2, pool3 (= max-pool of relu1_2, relu2_2, relu3_3), inputs in [0, 1]."""

    def __init__(self, **vgg_kwargs):
        super().__init__()
        self.vgg = VGGFeatures(("relu1_2", "relu2_2", "relu3_3"), arch="vgg16", **vgg_kwargs)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [F.max_pool2d(f, 2) for f in self.vgg(x)]


class MSSAGANModule(InpaintGANModule):
    """MSSA GAN training: 100 L_m + 10 L_adv + L_perc + L_style + L_TV (eq. 21); a zero weight drops the term."""

    def __init__(self, net: MSSAGenerator, discriminator: nn.Module, features: nn.Module | None,
                 lambdas=LAMBDAS, w_ms: float = 100.0, w_perc: float = 1.0, w_style: float = 1.0,
                 w_tv: float = 1.0, gan_weight: float = 10.0, lr: float = 2e-4, betas=(0.5, 0.999),
                 pretrain_steps: int = 0, vgg_from: int = 0, milestones=(), gamma: float = 0.1,
                 composite: bool = False):
        super().__init__(net, discriminator, composite=composite, lr=lr, betas=betas, gan_weight=gan_weight,
                         gan="vanilla", pretrain_steps=pretrain_steps, milestones=milestones, gamma=gamma)
        self.save_hyperparameters(ignore=["net", "discriminator", "features"])
        self.features = features

    def multiscale_l1(self, outs: list[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        lams = self.hparams.lambdas[-len(outs):]
        return sum(lam * F.l1_loss(o, F.adaptive_avg_pool2d(target, o.shape[-1]))
                   for lam, o in zip(lams, outs) if lam)

    def reconstruction_losses(self, batch, outs):
        hp, target, out = self.hparams, self.target(batch), outs[-1]
        parts = {}
        if hp.w_ms and any(hp.lambdas):
            parts["ms_l1"] = hp.w_ms * self.multiscale_l1(outs, target)
        if (hp.w_perc or hp.w_style) and self.features is not None and self.iteration >= hp.vgg_from:
            fo, ft = self.features(from_net(out)), self.features(from_net(target).detach())
            if hp.w_perc:
                parts["perc"] = hp.w_perc * sum(F.l1_loss(a, b) for a, b in zip(fo, ft))
            if hp.w_style:
                parts["style"] = hp.w_style * sum(F.l1_loss(gram(a), gram(b)) for a, b in zip(fo, ft))
        if hp.w_tv:
            parts["tv"] = hp.w_tv * tv_loss(out)
        return parts

    def generators(self):
        return [self.net]


# ----------------------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class MSSAConfig:
    nf: int = 64
    d_widths: tuple = (128, 128, 256, 512, 1024)
    rsa: bool = True
    multiscale_heads: bool = True
    lambdas: tuple = LAMBDAS
    w_ms: float = 100.0
    gan_weight: float = 10.0
    w_perc: float = 1.0
    w_style: float = 1.0
    w_tv: float = 1.0
    lr: float = 2e-4
    batch_size: int = 64
    steps: int = 60 * 353            # 60 epochs x floor(22,618 / 64) iterations (drop_last; 23,080 minus the 2 % validation)
    pretrain_steps: int = 0          # iterations before L_adv joins (paper: none)
    vgg_from: int = 0                # iterations before L_perc / L_style join (paper: none)
    milestones: tuple = ()           # lr x gamma at these iterations (paper: constant lr)
    gamma: float = 0.1
    crop: int = 0                    # training crop (0: the whole 128-px patch, the paper)


PAPER = MSSAConfig()
# smoke: widths / 8 (G 8/16/32, D 16/16/32/64/128), 64-px crops (32-px holes).  90 iterations of the pixel
# terms (100 L_m + L_TV) at lr 3e-3, then 30 of the full eq. 21 at lr 3e-4.  The lr drop matters most: at a
# still-high lr the BatchNorm running statistics lag the moving weights and the eval-mode output loses 3-5 dB
# in the hole (measured).  L_perc / L_style on a random VGG carry little signal but cost 60 % of a step, and a
# few GAN steps cannot help a 120-step model: both only join in the low-lr phase (they have to run, not help).
SMOKE = MSSAConfig(nf=8, d_widths=(16, 16, 32, 64, 128), lr=3e-3, batch_size=4, steps=120, pretrain_steps=90,
                   vgg_from=90, milestones=(90,), crop=64)
# a variant without any pixel loss (Without MSSA, Without M-S(3)) has nothing to learn in the pixel-only
# phase: its smoke run keeps the VGG terms from the start (the old 60-iteration schedule, L_adv from 40)
SMOKE_NO_PIXEL_LOSS = dict(steps=60, pretrain_steps=40, vgg_from=0, milestones=(45,))

PARAMS_PAPER = {"generator": 6_310_000, "rsa": 300_000, "generator_no_rsa": 6_000_000}  # spec §2.1 [measured], +-1 %


def build_variant(ctx: BuildContext, composite: bool = False, **changes):
    cfg = replace(PAPER if ctx.profile == "paper" else SMOKE, **changes)
    if ctx.profile != "paper" and not (cfg.w_ms and any(cfg.lambdas)):
        cfg = replace(cfg, **SMOKE_NO_PIXEL_LOSS)
    prof = get_profile(ctx.profile)
    net = MSSAGenerator(cfg.nf, rsa=cfg.rsa, multiscale_heads=cfg.multiscale_heads)
    disc = MSSADiscriminator(cfg.d_widths, input_size=cfg.crop or 128)
    feats = None
    if cfg.w_perc or cfg.w_style:
        feats = _PoolFeatures(weights_dir=ctx.weights_dir, allow_random=prof.allow_random_vgg)
    module = MSSAGANModule(net, disc, feats, lambdas=cfg.lambdas, w_ms=cfg.w_ms, w_perc=cfg.w_perc,
                           w_style=cfg.w_style, w_tv=cfg.w_tv, gan_weight=cfg.gan_weight, lr=cfg.lr,
                           pretrain_steps=cfg.pretrain_steps, vgg_from=cfg.vgg_from, milestones=cfg.milestones,
                           gamma=cfg.gamma, composite=composite)
    plan = TrainPlan(max_steps=cfg.steps, batch_size=cfg.batch_size, patch_size=cfg.crop,
                     notes=plan_notes(module, ctx, *_schedule_notes(cfg, feats)))
    if composite and ctx.init_checkpoint is not None:  # the trained mssa_gan network (runner's init_from): test only
        checkpoint = torch.load(ctx.init_checkpoint, map_location="cpu", weights_only=False)
        module.on_load_checkpoint(checkpoint)  # puts back the frozen VGG that checkpoints leave out
        module.load_state_dict(checkpoint["state_dict"])
        plan = replace(plan, max_steps=0, notes=f"{plan.notes}; the trained MSSA GAN network, evaluated composited")
    return module, plan


def _schedule_notes(cfg: MSSAConfig, feats) -> list[str]:
    """What a row's training did differently from eq. 21 / §4.1 (the smoke schedule, a random VGG)."""
    notes = ["VGG16 randomly initialised (smoke)" if feats is not None and feats.vgg.random_init else ""]
    late = [name for name, start, on in (("L_adv", cfg.pretrain_steps, cfg.gan_weight),
                                         ("L_perc/L_style", cfg.vgg_from, feats is not None)) if on and start]
    if late:
        notes.append(f"{' and '.join(late)} only from iteration {max(cfg.pretrain_steps, cfg.vgg_from)} of "
                     f"{cfg.steps} (smoke)")
    if cfg.milestones:
        notes.append(f"lr {cfg.lr:g} x{cfg.gamma:g} at iteration {', '.join(map(str, cfg.milestones))} (smoke)")
    return notes


def build_mssa_gan(ctx):
    return build_variant(ctx)


def build_mssa_gan_composited(ctx):
    """The MSSA GAN network (``init_from`` the trained mssa_gan row) with the known pixels pasted back:
    spec §6 logs it beside the raw output the paper evaluates (spec §0.3)."""
    return build_variant(ctx, composite=True)


def build_no_mssa(ctx):
    """Table 3 "Without MSSA" (undefined in the text): no RSA and no multi-scale part (§5.2's M-S(3)),
    i.e. alpha_1 = 0: L = 10 L_adv + L_perc + L_style + L_TV, one output head (spec §3)."""
    return build_variant(ctx, rsa=False, multiscale_heads=False, lambdas=(0.0, 0.0, 0.0))


def build_no_rsa(ctx):
    return build_variant(ctx, rsa=False)


def build_no_ms_loss_1(ctx):
    """One of three scale losses dropped, the smallest first (NS; §5.3: "the loss at scale 128 is the most important")."""
    return build_variant(ctx, lambdas=(0.0, 0.8, 1.0))


def build_no_ms_loss_2(ctx):
    return build_variant(ctx, lambdas=(0.0, 0.0, 1.0))


def build_no_ms_loss_3(ctx):
    """All three scale losses dropped: no pixel loss at all (= §5.2 "without multi-scale part")."""
    return build_variant(ctx, lambdas=(0.0, 0.0, 0.0))


def build_no_perceptual(ctx):
    return build_variant(ctx, w_perc=0.0)


def build_no_style(ctx):
    return build_variant(ctx, w_style=0.0)


def build_no_adv(ctx):
    """gan_weight 0: the discriminator is never trained (InpaintGANModule.phase stays 'pretrain')."""
    return build_variant(ctx, gan_weight=0.0)


def build_no_tv(ctx):
    return build_variant(ctx, w_tv=0.0)
