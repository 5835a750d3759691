"""SSAN's synthesis layers on a C-channel feature map (Wang et al., "Sparse self-attention aggregation
networks for neural sequence slice interpolation", BioData Mining 14:10, 2021; headings "Self-attention",
"Attention-aware layer", Table 2 and Table 3).

For the Table 2 cost-table script (tasks/interp, owned by the core helper), the four compared layers are:

- :class:`KernelEstimationLayer` (KEL, Table 2/3 "KEL"): SepConv's four kernel subnets at full resolution
  (Conv 64-64-64-K with ReLU, Conv K-K), K = 51 -> 506,972 parameters at C = 64.  ``forward(feature)``
  -> (kv, kh); the filtering itself is :func:`tasks.interp.ops.local_separable_conv`.
- :class:`SelfAttention` (SA, eqs. 1-3): one SAGAN block, q/k 1x1 convs to C/8, v 1x1 conv to C,
  y = gamma * attention + x, gamma initialised to 0 -> 5,201 parameters at C = 64.
- :class:`SparseSelfAttention` (SSA, Huang et al. 2019, the paper's [30]): long-range SA over P x P
  strided sub-grids, then short-range SA inside P x P blocks -> 10,402 parameters (P = 8).
- :class:`AttentionAwareLayer` (AAL, eqs. 4-8, Fig. 2): two-level sparse self-attention = the authors'
  ``HierarStruct`` (sister repo zejinwang/TSADR): outer R = 8, inner P' = 4 -> 15,603 parameters.

All take and return (B, C, H, W); with every gamma at 0 (initialisation) SA, SSA and AAL are the
identity.  Size constraints: SSA needs H, W divisible by P; AAL by R * P' = 32.

Fidelity: faithful to the authors' code (parameter counts equal Table 2's 0.0052 / 0.0104 / 0.0156 M;
tests/tasks/interp/test_aal.py).  Differences from the paper's text, following the spec
(shared/specs/interp.md Sec. 2.2): there is no W_v projection (eq. 2 has one; Table 2's counts have none)
and no 1/sqrt(d) temperature by default (``scaled=True`` turns eq. 1's on).  The affinity is computed with
an explicit bmm (not fused SDPA) so that FLOP counting sees q/k at C/8 as the paper counted them.
"""
from __future__ import annotations

import torch
from torch import nn

from tasks.interp.ops import local_separable_conv


class SelfAttention(nn.Module):
    """SAGAN self-attention block (Zhang et al. 2019; SSAN eqs. 1-3)."""

    def __init__(self, channels: int = 64, qk_reduction: int = 8, scaled: bool = False):
        super().__init__()
        qk = max(1, channels // qk_reduction)
        self.query = nn.Conv2d(channels, qk, 1)
        self.key = nn.Conv2d(channels, qk, 1)
        self.value = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))
        self.scale = qk ** -0.5 if scaled else 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q = self.query(x).flatten(2).transpose(1, 2)                  # B, N, C'
        k = self.key(x).flatten(2)                                    # B, C', N
        attn = torch.softmax(torch.bmm(q, k) * self.scale, dim=-1)    # B, N, N (rows: queries)
        v = self.value(x).flatten(2)                                  # B, C, N
        out = torch.bmm(v, attn.transpose(1, 2)).view(b, c, h, w)
        return self.gamma * out + x


def _long_groups(x: torch.Tensor, p: int) -> torch.Tensor:
    """(B,C,H,W) -> (B*p*p, C, H/p, W/p): group g = (i mod p, j mod p), a strided sub-grid."""
    b, c, h, w = x.shape
    return x.view(b, c, h // p, p, w // p, p).permute(0, 3, 5, 1, 2, 4).reshape(b * p * p, c, h // p, w // p)


def _from_long_groups(x: torch.Tensor, b: int, p: int) -> torch.Tensor:
    _, c, qh, qw = x.shape
    return x.view(b, p, p, c, qh, qw).permute(0, 3, 4, 1, 5, 2).reshape(b, c, qh * p, qw * p)


def _short_groups(x: torch.Tensor, p: int) -> torch.Tensor:
    """(B,C,H,W) -> (B*(H/p)*(W/p), C, p, p): contiguous p x p blocks."""
    b, c, h, w = x.shape
    return x.view(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5).reshape(-1, c, p, p)


def _from_short_groups(x: torch.Tensor, b: int, h: int, w: int, p: int) -> torch.Tensor:
    c = x.shape[1]
    return x.view(b, h // p, w // p, c, p, p).permute(0, 3, 1, 4, 2, 5).reshape(b, c, h, w)


def _check(x: torch.Tensor, multiple: int, name: str) -> None:
    if x.shape[-2] % multiple or x.shape[-1] % multiple:
        raise ValueError(f"{name} needs H and W divisible by {multiple}, got {tuple(x.shape[-2:])}")


class SparseSelfAttention(nn.Module):
    """Interlaced sparse self-attention [30]: SA over the P x P strided sub-grids (long range), then SA
    inside contiguous P x P blocks (short range).  Each position reaches every other in two hops."""

    def __init__(self, channels: int = 64, partitions: int = 8, long: nn.Module | None = None, **sa):
        super().__init__()
        self.p = partitions
        self.long = long if long is not None else SelfAttention(channels, **sa)
        self.short = SelfAttention(channels, **sa)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check(x, self.p, type(self).__name__)
        b, _, h, w = x.shape
        x = _from_long_groups(self.long(_long_groups(x, self.p)), b, self.p)
        return _from_short_groups(self.short(_short_groups(x, self.p)), b, h, w, self.p)


class AttentionAwareLayer(SparseSelfAttention):
    """AAL: the long-range step of SSA (outer partition R) is itself an SSA with inner partition P'
    (the multi-level decomposition of eq. 8).  Three SA blocks: L2-long, L2-short, L1-short."""

    def __init__(self, channels: int = 64, outer: int = 8, inner: int = 4, **sa):
        super().__init__(channels, outer, long=SparseSelfAttention(channels, inner, **sa), **sa)
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check(x, self.p * self.inner, type(self).__name__)
        return super().forward(x)


def _kernel_subnet(channels: int, hidden: int, k: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(channels, hidden, 3, 1, 1), nn.ReLU(), nn.Conv2d(hidden, hidden, 3, 1, 1), nn.ReLU(),
                         nn.Conv2d(hidden, k, 3, 1, 1), nn.ReLU(), nn.Conv2d(k, k, 3, 1, 1))


class KernelEstimationLayer(nn.Module):
    """KEL (Table 3 "KEL" = SepConv [9]'s kernel estimation on SSAN's full-resolution features): four
    subnets (vertical/horizontal x two frames) without SepConv's x2 upsample.  ``forward(f0, f1)`` ->
    ((kv0, kh0), (kv1, kh1)); the kernels of frame k come from its own direction's feature F_k.
    :meth:`synthesize` applies them to the replicate-padded frames (K x K local separable filters)."""

    def __init__(self, channels: int = 64, kernel_size: int = 51, hidden: int = 64):
        super().__init__()
        self.k = kernel_size
        self.vertical1, self.horizontal1, self.vertical2, self.horizontal2 = (
            _kernel_subnet(channels, hidden, kernel_size) for _ in range(4))

    def forward(self, f0: torch.Tensor, f1: torch.Tensor | None = None):
        f1 = f0 if f1 is None else f1
        return (self.vertical1(f0), self.horizontal1(f0)), (self.vertical2(f1), self.horizontal2(f1))

    def synthesize(self, image: torch.Tensor, kv: torch.Tensor, kh: torch.Tensor) -> torch.Tensor:
        pad = self.k // 2
        return local_separable_conv(nn.functional.pad(image, (pad, pad, pad, pad), mode="replicate"), kv, kh)
