"""Invertible pieces shared by IRN and SNADN: the affine coupling block and the rescaler interface.

The networks are lists of invertible operations ``op(x, rev=False)``; ``down`` runs them forward
(HR -> [LR | z]) and ``up`` in reverse ([LR | z] -> HR), so the up branch is the exact inverse of the
down branch with shared parameters (IRN Sec. 3; SNADN Sec. 2).  Keep them outside autocast: the
exp / division of the coupling in fp16 breaks invertibility.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

SubnetFactory = Callable[[int, int], nn.Module]


class InvBlockExp(nn.Module):
    """IRN ``InvBlockExp`` (= SNADN's invertible sub-block IS, Eqs. 12-15 with a bounded rho).

    Split the channels into a (the first ``split`` = LR slot) and b (the rest):
      down: a' = a + phi(b);  s = clamp * (2 sigmoid(rho(a')) - 1);  b' = b * exp(s) + eta(a')
      up:   b = (b' - eta(a')) * exp(-s);  a = a' - phi(b)
    """

    def __init__(self, subnet: SubnetFactory, channels: int, split: int = 3, clamp: float = 1.0):
        super().__init__()
        self.split, self.clamp = split, clamp
        self.phi = subnet(channels - split, split)   # IRN F
        self.eta = subnet(split, channels - split)   # IRN G
        self.rho = subnet(split, channels - split)   # IRN H

    def _scale(self, a: torch.Tensor) -> torch.Tensor:
        return self.clamp * (torch.sigmoid(self.rho(a)) * 2 - 1)

    def forward(self, x: torch.Tensor, rev: bool = False) -> torch.Tensor:
        a, b = x[:, : self.split], x[:, self.split:]
        if not rev:
            a = a + self.phi(b)
            b = b * torch.exp(self._scale(a)) + self.eta(a)
        else:
            b = (b - self.eta(a)) * torch.exp(-self._scale(a))
            a = a - self.phi(b)
        return torch.cat([a, b], 1)


class InvertibleRescaler(nn.Module):
    """A sequence of invertible ops mapping (B, 3, H, W) to (B, 3 * 4^k, H / 2^k, W / 2^k)."""

    def __init__(self, ops: list[nn.Module], scale: int):
        super().__init__()
        self.ops, self.scale = nn.ModuleList(ops), scale

    def forward(self, x: torch.Tensor, rev: bool = False) -> torch.Tensor:
        for op in (reversed(self.ops) if rev else self.ops):
            x = op(x, rev=rev)
        return x

    def down(self, hr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self(hr)
        return y[:, :3], y[:, 3:]

    def up(self, lr: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self(torch.cat([lr, z], 1), rev=True)

    def z_shape(self, lr: torch.Tensor) -> tuple[int, ...]:
        return (lr.shape[0], 3 * self.scale ** 2 - 3, *lr.shape[-2:])

    def set_hash_step(self, step: int) -> None:
        for m in self.modules():
            if m is not self and hasattr(m, "set_hash_step"):
                m.set_hash_step(step)
