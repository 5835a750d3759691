"""Non-Local Sparse Attention (Mei, Fan, Zhou, CVPR 2021; SNADN Sec. 2.1.2, Eqs. 2-6), pure PyTorch.

Locality-sensitive hashing by random rotations (codes = argmax of [xR, -xR], Eq. 3), positions sorted
by code into chunks (Eq. 4), each query attends to its own chunk and the two adjacent ones with a
softmax (Eqs. 5-6), and the n_hashes rounds are merged with a softmax over each round's logsumexp.
Follows the official module (HarukiYqM/Non-Local-Sparse-Attention ``attention.py``): match embedding
3x3 conv C -> C / reduction, assembly 1x1 conv C -> C, keys L2-normalised (eps 5e-5), queries raw,
res_scale 1 with a residual.  Faithful, with two changes: (1) the rotations come from a generator
seeded by (``seed``, ``step``) instead of a fresh ``torch.randn`` per call, so that the down and up
passes of an invertible network use the same hashes (``set_hash_step``: advanced once per training
step, fixed in evaluation); (2) inputs with fewer than ``chunk_size`` positions use one chunk of all
of them and 2 buckets (the official code fails there with an empty argmax), and a stable sort.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _gather(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """x (N, L, C), idx (N, M) -> (N, M, C)."""
    return x.gather(1, idx.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def _with_neighbours(x: torch.Tensor) -> torch.Tensor:
    """(N, h, chunks, k, C) -> (N, h, chunks, 3k, C): each chunk followed by the previous and next ones."""
    return torch.cat([x, x.roll(1, dims=2), x.roll(-1, dims=2)], dim=3)


class NonLocalSparseAttention(nn.Module):
    def __init__(self, channels: int = 64, n_hashes: int = 4, reduction: int = 4, chunk_size: int = 144,
                 res_scale: float = 1.0, seed: int = 0):
        super().__init__()
        self.n_hashes, self.chunk_size, self.res_scale, self.seed = n_hashes, chunk_size, res_scale, seed
        self.match = nn.Conv2d(channels, channels // reduction, 3, padding=1)
        self.assembly = nn.Conv2d(channels, channels, 1)
        self.step = 0

    def set_hash_step(self, step: int) -> None:
        self.step = int(step)

    def rotations(self, dim: int, buckets: int, dtype, device) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.step)
        return torch.randn(dim, self.n_hashes, buckets // 2, generator=g, dtype=torch.float64).to(device, dtype)

    def hash_codes(self, x: torch.Tensor, buckets: int) -> torch.Tensor:
        """x (N, L, C) -> (N, n_hashes * L) bucket codes, offset per round so rounds never share one."""
        rot = torch.einsum("nlc,chb->nhlb", x, self.rotations(x.shape[-1], buckets, x.dtype, x.device))
        codes = torch.cat([rot, -rot], -1).argmax(-1)                      # (N, h, L)
        codes = codes + torch.arange(self.n_hashes, device=x.device).view(1, -1, 1) * buckets
        return codes.flatten(1).detach()

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        n, _, hgt, wid = inp.shape
        q = self.match(inp).flatten(2).transpose(1, 2)                    # (N, L, C')
        v = self.assembly(inp).flatten(2).transpose(1, 2)                 # (N, L, C)
        length, h = q.shape[1], self.n_hashes
        chunk = min(self.chunk_size, length)
        buckets = max(2, min(length // chunk + (length // chunk) % 2, 128))
        order = self.hash_codes(q, buckets).sort(dim=-1, stable=True).indices  # (N, h * L)
        undo = order.argsort(dim=-1)
        pos = order % length
        qs, vs = _gather(q, pos).view(n, h, length, -1), _gather(v, pos).view(n, h, length, -1)
        pad = (-length) % chunk
        if pad:  # repeat the last positions of each round to fill its last chunk (as the official code)
            qs, vs = torch.cat([qs, qs[:, :, -pad:]], 2), torch.cat([vs, vs[:, :, -pad:]], 2)
        qs = qs.view(n, h, -1, chunk, qs.shape[-1])
        vs = vs.view(n, h, -1, chunk, vs.shape[-1])
        keys = _with_neighbours(F.normalize(qs, p=2, dim=-1, eps=5e-5))
        logits = torch.einsum("nhkic,nhkjc->nhkij", qs, keys)
        lse = logits.logsumexp(-1, keepdim=True)
        out = torch.einsum("nhkij,nhkjc->nhkic", (logits - lse).exp(), _with_neighbours(vs))
        out, lse = out.flatten(2, 3)[:, :, :length], lse.flatten(2, 4)[:, :, :length]
        out = _gather(out.reshape(n, h * length, -1), undo).view(n, h, length, -1)
        lse = lse.reshape(n, h * length).gather(1, undo).view(n, h, length, 1)
        out = (out * lse.softmax(dim=1)).sum(1)                          # merge the hash rounds
        return out.transpose(1, 2).reshape(n, -1, hgt, wid) * self.res_scale + inp
