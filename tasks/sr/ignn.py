"""IGNN (Zhou et al., NeurIPS 2020, "Cross-Scale Internal Graph Neural Network for Image
Super-Resolution"): an EDSR trunk with one cross-scale graph aggregation module (GraphAgg, Sec. 3).

GraphAgg (Sec. 3.1-3.2, Fig. 2), as in the official code (github sczhou/IGNN, models/graph_agg.py,
models/submodules.py):

* Graph construction.  The LR image I_L and its 1/s bicubic downsample I_{L↓s} (MATLAB imresize,
  s = 2 for x4, s = scale for x2/x3) are embedded by the first layers of an ImageNet VGG19 (up to
  relu1_2, frozen).  Every 3x3 embedding patch of I_L (stride 2) is a query; its k = 5 nearest
  neighbours (squared Euclidean distance) are searched among the 3x3 patches of the downsampled
  embedding, inside a 30x30-patch window centred on the query's position at the lower scale.
* Patch aggregation.  Each neighbour (a patch of I_{L↓s}) has an s-times larger counterpart in the LR
  feature map F_L (its "HR" patch).  These HR patches, taken from the features after the 16th residual
  block, are AdaIN-normalised to the query patch's per-channel mean/std, folded back into s-times
  larger maps (overlaps averaged) and combined with softmax weights predicted by small 1x1 nets from
  the edge labels (|query - neighbour| embedding differences, summed over the patch): one at HR,
  giving F_{L↑s}, and one at LR after a strided conv, giving F'_L.

The official code needs custom CUDA (pyinn im2col/col2im, an indexed matmul); here everything is
pure PyTorch: ``F.unfold``/``F.fold`` for patches, a chunked distance matrix + ``topk`` for the
kNN search (memory bounded by ``knn_chunk_elements``), ``gather`` for the aggregation.

Network (official models/IGNN.py): images in the 0-255 range minus the DIV2K RGB mean, 3x3 head
conv, 16 EDSR residual blocks (res-scale 0.1, ReLU), GraphAgg, fuse(concat F_L, F'_L: conv+ReLU,
conv), 16 more residual blocks + conv, long skip, x s sub-pixel upsampler, fuse(concat with F_{L↑s}:
conv+ReLU, conv+ReLU), for x4 a further x2 sub-pixel upsampler, a 3x3 output conv.  Paper settings
(official config.py): 32 residual blocks, 256 features, k = 5, window 30, patch 3, stride 2; at x4 the
network has 49,473,797 trainable parameters (plus the frozen 38,720 of VGG19 conv1_1/conv1_2).  Convs
are Kaiming-normal (fan-in) initialised and scaled by 0.1 (official initialize_weights).  In eval,
images over 40,000 LR pixels are processed in four overlapping quadrants, recursively (official
``Chop``, shave 12 LR pixels).

Training: MASRGAN's Table protocol (tasks/sr/protocol.py) in Table 1; its own recipe (official config.py): L1 loss, Adam (0.9, 0.999), lr 1e-4 halved at 160k/320k/480k/640k
iterations (epochs 16/32/48/64 of 10,000 iterations), 800k iterations, batch 2 (TRAIN_BATCH_SIZE),
HR patch 160 (LR 40).  Augmentation is the datamodule's (MASRGAN trains every model without any).
Deviations: the official training script re-initialises *every* conv of the model, the VGG19 and
mean-shift layers included (initialize_weights iterates net.modules()), so its embedding is random;
we keep the ImageNet VGG19 the model definition loads (``VGG19(pretrained=True)``).  Inputs whose
size is not a multiple of s are reflect-padded (the official code assumes even sizes); images under
40,000 LR pixels run whole (the official Chop always splits once).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.specs import BuildContext, TrainPlan
from datamodules.imresize import imresize
from tasks.common.layers import DIV2K_RGB_MEAN, PixelShuffleUpsampler, ResidualBlock
from tasks.common.losses import VGGFeatures
from tasks.sr.module import SRModule
from tasks.sr.protocol import psnr_training


# ---------------------------------------------------------------- patches (unfold / fold)
def _patch_padding(h: int, w: int, patch: int, stride: int) -> tuple[int, int, int, int]:
    """(left, right, top, bottom) zero padding so that patches at ``stride`` tile the whole image
    (official ops.calc_padding: the smaller half before, the larger after)."""
    ph, pw = -(h - patch) % stride, -(w - patch) % stride
    return pw // 2, pw - pw // 2, ph // 2, ph - ph // 2


def extract_patches(x: torch.Tensor, patch: int, stride: int):
    """(B, C, H, W) -> patches (B, L, C*patch*patch) in (channel, row, col) order, the patch grid
    (gh, gw) with L = gh*gw, and the padding used."""
    pad = _patch_padding(*x.shape[-2:], patch, stride)
    xp = F.pad(x, pad)
    grid = ((xp.shape[-2] - patch) // stride + 1, (xp.shape[-1] - patch) // stride + 1)
    return F.unfold(xp, patch, stride=stride).transpose(1, 2), grid, pad


def fold_patches(cols: torch.Tensor, size: tuple[int, int], patch: int, stride: int,
                 pad: tuple[int, int, int, int]) -> torch.Tensor:
    """Inverse of :func:`extract_patches` with overlaps averaged (official ops.patch2im).
    ``cols``: (B, C*patch*patch, L); ``size``: the unpadded (H, W); ``pad``: the padding used."""
    left, right, top, bottom = pad
    padded = (size[0] + top + bottom, size[1] + left + right)
    summed = F.fold(cols, padded, patch, stride=stride)
    ones = cols.new_ones(1, patch * patch, cols.shape[-1])
    counts = F.fold(ones, padded, patch, stride=stride)
    return (summed / counts)[..., top:top + size[0], left:left + size[1]]


def _spread_patch_values(values: torch.Tensor, grid: tuple[int, int], size: tuple[int, int], patch: int,
                         stride: int, pad: tuple[int, int, int, int]) -> torch.Tensor:
    """Fold patches that are constant over their footprint, without materialising them: per-patch
    values (B, C, L) -> (B, C, H, W) averaged over overlapping patches (a transposed conv with a
    ones kernel is the fold of constant patches)."""
    b, c, _ = values.shape
    kernel = values.new_ones(1, 1, patch, patch)
    summed = F.conv_transpose2d(values.reshape(b * c, 1, *grid), kernel, stride=stride)
    counts = F.conv_transpose2d(values.new_ones(1, 1, *grid), kernel, stride=stride)
    left, right, top, bottom = pad
    out = (summed / counts)[..., top:top + size[0], left:left + size[1]]
    return out.reshape(b, c, *size)


# ---------------------------------------------------------------- graph construction
def window_candidates(query_grid: tuple[int, int], db_grid: tuple[int, int], window: int, scale: int,
                      device=None) -> torch.Tensor | None:
    """Database patch indices (M, window^2) searched for each query patch: a window x window block of
    the database grid around the query's position divided by ``scale``, shifted to stay inside
    (official index_neighbours).  None when the window covers the whole database."""
    (m1, m2), (n1, n2) = query_grid, db_grid
    if window >= n1 and window >= n2:
        return None
    s = min(window, n1, n2)
    ar = torch.arange(s, device=device)
    top = (torch.arange(m1, device=device) // scale - s // scale).clamp(0, n1 - s)
    left = (torch.arange(m2, device=device) // scale - s // scale).clamp(0, n2 - s)
    rows, cols = top[:, None] + ar, left[:, None] + ar                     # (m1, s), (m2, s)
    idx = rows[:, None, :, None] * n2 + cols[None, :, None, :]              # (m1, m2, s, s)
    return idx.reshape(m1 * m2, s * s)


@torch.no_grad()
def knn_patches(query: torch.Tensor, database: torch.Tensor, k: int, candidates: torch.Tensor | None = None,
                chunk_elements: int = 1 << 24) -> tuple[torch.Tensor, torch.Tensor]:
    """k nearest database rows (squared Euclidean) of every query row.

    query (B, M, E), database (B, N, E), candidates (M, O) database indices or None (all N).
    Returns (distances, indices), both (B, M, k), nearest first.  The (B, chunk, N) distance block
    is bounded by ``chunk_elements`` so memory stays linear in M.
    """
    b, m, _ = query.shape
    n = database.shape[1]
    db_sq = database.pow(2).sum(-1)[:, None, :]                                # (B, 1, N)
    step = max(1, chunk_elements // max(1, b * n))
    dists, idxs = [], []
    for start in range(0, m, step):
        q = query[:, start:start + step]
        d = q.pow(2).sum(-1, keepdim=True) - 2 * q @ database.transpose(1, 2) + db_sq
        if candidates is None:
            dk, ik = d.topk(k, dim=2, largest=False)
        else:
            cand = candidates[start:start + step].expand(b, -1, -1)
            dk, ik = d.gather(2, cand).topk(k, dim=2, largest=False)
            ik = cand.gather(2, ik)
        dists.append(dk)
        idxs.append(ik)
    return torch.cat(dists, 1), torch.cat(idxs, 1)


class CrossScaleGraph(nn.Module):
    """Graph construction (Sec. 3.1): kNN of embedded LR patches among embedded LR↓s patches, and
    the edge labels (per-channel |query - neighbour| summed over the patch) spread over each query's
    s-times larger footprint: (B, k*E, sH, sW), neighbour-major (official GraphConstruct, WITH_DIFF)."""

    def __init__(self, embedding: nn.Module, scale: int, k: int = 5, patch: int = 3, stride: int = 2,
                 window: int = 30, knn_chunk_elements: int = 1 << 24):
        super().__init__()
        self.embedding = embedding
        self.scale, self.k, self.patch, self.stride, self.window = scale, k, patch, stride, window
        self.knn_chunk_elements = knn_chunk_elements

    @torch.no_grad()
    def forward(self, lr_small: torch.Tensor, lr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        emb_db, emb_q = self.embedding(lr_small)[0], self.embedding(lr)[0]
        db, db_grid, _ = extract_patches(emb_db, self.patch, self.stride)
        q, q_grid, q_pad = extract_patches(emb_q, self.patch, self.stride)
        k = min(self.k, db.shape[1])
        cand = window_candidates(q_grid, db_grid, self.window, self.scale, q.device)
        _, idx = knn_patches(q, db, k, cand, self.knn_chunk_elements)         # (B, M, k)
        b, m, e = q.shape
        ce = emb_q.shape[1]
        neighbours = db.gather(1, idx.reshape(b, m * k, 1).expand(-1, -1, e)).view(b, m, k, e)
        edge = (q[:, :, None] - neighbours).abs().view(b, m, k, ce, -1).sum(-1)   # (B, M, k, E)
        edge = edge.permute(0, 2, 3, 1).reshape(b, k * ce, m)
        s = self.scale
        size = (emb_q.shape[-2] * s, emb_q.shape[-1] * s)
        edge_map = _spread_patch_values(edge, q_grid, size, self.patch * s, self.stride * s,
                                        tuple(p * s for p in q_pad))
        return idx, edge_map


# ---------------------------------------------------------------- patch aggregation
def _adain(patches: torch.Tensor, reference: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Per-channel AdaIN of (B, M, C, P) patches to (B, M, C, Q) reference statistics (unbiased
    variance, official adaptive_instance_normalization)."""
    mean, std = patches.mean(-1, keepdim=True), (patches.var(-1, keepdim=True) + eps).sqrt()
    ref_mean, ref_std = reference.mean(-1, keepdim=True), (reference.var(-1, keepdim=True) + eps).sqrt()
    return (patches - mean) / std * ref_std + ref_mean


def _edge_weight_net(channels: int, hidden: int = 64) -> nn.Sequential:
    """1x1 conv -> 1x1 EDSR residual block (res-scale 0.1) -> 1x1 conv to one logit."""
    return nn.Sequential(nn.Conv2d(channels, hidden, 1), ResidualBlock(hidden, kernel_size=1, res_scale=0.1),
                         nn.Conv2d(hidden, 1, 1))


class GraphAggregation(nn.Module):
    """Patch aggregation (Sec. 3.2, official GCNBlock): gathers the k HR neighbour patches of every
    query from the LR features, AdaIN-normalises and folds them to s-times larger maps, and combines
    them with softmax edge weights: returns (F'_L (B, C, H, W), F_{L↑s} (B, C, sH, sW))."""

    def __init__(self, nf: int, scale: int, patch: int = 3, stride: int = 2, edge_channels: int = 64):
        super().__init__()
        self.scale, self.patch, self.stride = scale, patch, stride
        self.downsample = nn.Sequential(
            nn.Conv2d(nf, nf, 5, scale, 2), nn.ReLU(inplace=True),
            nn.Conv2d(nf, nf, 3, 1, 1), nn.ReLU(inplace=True),
            nn.Conv2d(nf, nf, 3, 1, 1))
        self.weight_lr = _edge_weight_net(edge_channels)
        self.weight_hr = _edge_weight_net(edge_channels)

    def gather_hr_patches(self, feat: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) features, (B, M, k) neighbour indices -> (B, k, C, sH, sW) aggregated maps."""
        s, p = self.scale, self.patch
        b, c, h, w = feat.shape
        query, _, q_pad = extract_patches(feat, p, self.stride)                  # (B, M, C*p*p)
        small = F.pixel_unshuffle(feat[..., : h - h % s, : w - w % s], s)         # (B, C*s*s, H/s, W/s)
        db, _, _ = extract_patches(small, p, self.stride)                         # (B, N, C*s*s*p*p)
        m, f = query.shape[1], db.shape[2]
        reference = query.view(b, m, c, p * p)
        maps = []
        for j in range(idx.shape[2]):
            nb = db.gather(1, idx[:, :, j:j + 1].expand(-1, -1, f))               # (B, M, f)
            nb = _adain(nb.view(b, m, c, s * s * p * p), reference)
            # (c, i, j, p1, p2) -> (c, p1, i, p2, j): an (s p) x (s p) HR patch per query
            nb = nb.view(b, m, c, s, s, p, p).permute(0, 2, 5, 3, 6, 4, 1).reshape(b, c * (s * p) ** 2, m)
            maps.append(fold_patches(nb, (h * s, w * s), p * s, self.stride * s, tuple(x * s for x in q_pad)))
        return torch.stack(maps, 1)

    def forward(self, feat: torch.Tensor, idx: torch.Tensor, edge_map: torch.Tensor):
        b, c, h, w = feat.shape
        s = self.scale
        hr = self.gather_hr_patches(feat, idx)                                   # (B, k, C, sH, sW)
        k = hr.shape[1]
        edge = edge_map.reshape(b * k, -1, h * s, w * s)
        logit_hr = self.weight_hr(edge).view(b, k, 1, h * s, w * s)
        logit_lr = self.weight_lr(F.avg_pool2d(edge, s)).view(b, k, 1, h, w)
        low = self.downsample(hr.reshape(b * k, c, h * s, w * s)).view(b, k, c, h, w)
        return (low * logit_lr.softmax(1)).sum(1), (hr * logit_hr.softmax(1)).sum(1)


# ---------------------------------------------------------------- network
def _conv_relu(cin: int, cout: int, relu: bool = True) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, 1, 1)] + ([nn.ReLU(inplace=True)] if relu else [])


class IGNN(nn.Module):
    """IGNN generator; ``forward(lr)`` makes the LR↓s image itself (MATLAB bicubic, clamped).

    ``embedding`` maps images to a list whose first entry is the patch-matching embedding with
    ``edge_channels`` channels at the input resolution (``VGGFeatures(("relu1_2",))``: 64).
    """

    def __init__(self, embedding: nn.Module, in_ch: int = 3, out_ch: int = 3, nf: int = 256, n_blocks: int = 32,
                 scale: int = 4, k: int = 5, window: int = 30, patch: int = 3, stride: int = 2,
                 res_scale: float = 0.1, edge_channels: int = 64, rgb_range: float = 255.0, chop_shave: int = 12,
                 chop_min_size: int | None = 40_000, knn_chunk_elements: int = 1 << 24):
        super().__init__()
        if scale not in (2, 3, 4):
            raise ValueError(f"IGNN is defined for x2, x3 and x4, got x{scale}")
        self.scale, self.graph_scale = scale, (2 if scale == 4 else scale)
        self.chop_shave, self.chop_min_size = chop_shave, chop_min_size
        s = self.graph_scale
        self.rgb_range = rgb_range
        mean = DIV2K_RGB_MEAN if in_ch == 3 else (sum(DIV2K_RGB_MEAN) / 3,) * in_ch
        self.register_buffer("mean", torch.tensor(mean).view(1, in_ch, 1, 1), persistent=False)
        self.graph = CrossScaleGraph(embedding, s, k, patch, stride, window, knn_chunk_elements)
        self.head = nn.Conv2d(in_ch, nf, 3, 1, 1)
        self.body1 = nn.Sequential(*(ResidualBlock(nf, res_scale=res_scale) for _ in range(n_blocks // 2)))
        self.aggregate = GraphAggregation(nf, s, patch, stride, edge_channels)
        self.fuse_lr = nn.Sequential(*_conv_relu(2 * nf, nf), *_conv_relu(nf, nf, relu=False))
        self.body2 = nn.Sequential(*(ResidualBlock(nf, res_scale=res_scale) for _ in range(n_blocks - n_blocks // 2)),
                                   nn.Conv2d(nf, nf, 3, 1, 1))
        self.upsample = PixelShuffleUpsampler(nf, s)
        self.fuse_hr = nn.Sequential(*_conv_relu(2 * nf, nf), *_conv_relu(nf, nf))
        tail = [PixelShuffleUpsampler(nf, scale // s)] if scale != s else []
        self.tail = nn.Sequential(*tail, nn.Conv2d(nf, out_ch, 3, 1, 1))
        for name, mod in self.named_modules():
            if isinstance(mod, nn.Conv2d) and not name.startswith("graph.embedding"):
                nn.init.kaiming_normal_(mod.weight, a=0, mode="fan_in")
                mod.weight.data.mul_(0.1)
                nn.init.zeros_(mod.bias)

    def _forward(self, lr_small: torch.Tensor, lr: torch.Tensor) -> torch.Tensor:
        idx, edge_map = self.graph(lr_small, lr)
        x0 = self.head((lr - self.mean) * self.rgb_range)
        x1 = self.body1(x0)
        agg_lr, agg_hr = self.aggregate(x1, idx, edge_map)
        x1 = self.fuse_lr(torch.cat([x1, agg_lr], 1))
        x = self.upsample(self.body2(x1) + x0)
        x = self.fuse_hr(torch.cat([x, agg_hr], 1))
        return self.tail(x) / self.rgb_range + self.mean

    def _chop(self, lr_small: torch.Tensor, lr: torch.Tensor) -> torch.Tensor:
        """Official Chop: four overlapping quadrants (shave LR pixels each way), recursively."""
        s, sc = self.graph_scale, self.scale
        h, w = lr.shape[-2:]
        hs, ws = lr_small.shape[-2:]
        half_hs, half_ws, shave_s = hs // 2, ws // 2, self.chop_shave // s
        size_hs, size_ws = min(half_hs + shave_s, hs), min(half_ws + shave_s, ws)
        size_h, size_w = size_hs * s, size_ws * s
        if self.chop_min_size is None or h * w < self.chop_min_size or (size_h >= h and size_w >= w):
            return self._forward(lr_small, lr)
        rows = [(slice(0, size_hs), slice(0, size_h)), (slice(hs - size_hs, hs), slice(h - size_h, h))]
        cols = [(slice(0, size_ws), slice(0, size_w)), (slice(ws - size_ws, ws), slice(w - size_w, w))]
        quads = [(lr_small[..., rs, cs], lr[..., r, c]) for rs, r in rows for cs, c in cols]
        if size_h * size_w < self.chop_min_size:
            b = lr.shape[0]
            out = self._forward(torch.cat([q[0] for q in quads]), torch.cat([q[1] for q in quads])).split(b)
        else:
            out = [self._chop(*q) for q in quads]
        top, left = half_hs * s * sc, half_ws * s * sc          # output rows/cols from the first quadrants
        H, W, oh, ow = h * sc, w * sc, size_h * sc, size_w * sc
        result = lr.new_empty(lr.shape[0], out[0].shape[1], H, W)
        result[..., :top, :left] = out[0][..., :top, :left]
        result[..., :top, left:] = out[1][..., :top, ow - (W - left):]
        result[..., top:, :left] = out[2][..., oh - (H - top):, :left]
        result[..., top:, left:] = out[3][..., oh - (H - top):, ow - (W - left):]
        return result

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        s = self.graph_scale
        h, w = lr.shape[-2:]
        ph, pw = -h % s, -w % s
        if ph or pw:
            lr = F.pad(lr, (0, pw, 0, ph), mode="reflect")
        lr_small = imresize(lr, 1.0 / s).clamp(0, 1)
        sr = self._forward(lr_small, lr) if self.training else self._chop(lr_small, lr)
        return sr[..., : h * self.scale, : w * self.scale]


PAPER = dict(nf=256, n_blocks=32, k=5, window=30, patch=160, batch=2, steps=800_000, lr=1e-4,
             milestones=(160_000, 320_000, 480_000, 640_000))
SMOKE = dict(nf=16, n_blocks=2, k=3, window=30, patch=64, batch=2, steps=60, lr=1e-3, milestones=())


def build_network(ctx: BuildContext) -> IGNN:
    cfg = PAPER if ctx.profile == "paper" else SMOKE
    embedding = VGGFeatures(("relu1_2",), arch="vgg19", weights_dir=ctx.weights_dir,
                            allow_random=ctx.profile == "smoke")
    return IGNN(embedding, ctx.in_channels, ctx.in_channels, cfg["nf"], cfg["n_blocks"], ctx.scale, cfg["k"],
                cfg["window"])


def build_ignn(ctx: BuildContext, recipe: str = "table") -> tuple[SRModule, TrainPlan]:
    """IGNN under MASRGAN's Table protocol, or ``recipe="own"`` (the official config.py schedule)."""
    cfg = PAPER if ctx.profile == "paper" else SMOKE
    tr = psnr_training(ctx, cfg, recipe)
    net = build_network(ctx)
    module = SRModule(net, ctx.scale, lr=tr["lr"], betas=(0.9, 0.999), milestones=tr["milestones"], gamma=0.5,
                      loss="l1")
    notes = "smoke: VGG19 graph embedding random (He init), no pretrained weights" if net.graph.embedding.random_init else ""
    return module, TrainPlan(max_steps=tr["steps"], batch_size=tr["batch"], patch_size=tr["patch"], notes=notes)
