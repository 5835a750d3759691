from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from benchmark.specs import BuildContext
from datamodules.kather import KatherSRDataModule
from tasks.dualsr import csnl
from tasks.dualsr.csnl import CSNLN, CrossScaleAttention, InScaleAttention
from tasks.dualsr.module import PlainSRModule


def _ctx(scale, profile="smoke"):
    return BuildContext("dualsr", f"kather_x{scale}", profile, scale, 3, Path("/nonexistent-weights"))


def _count(m):
    return sum(p.numel() for p in m.parameters() if p.requires_grad)


def test_paper_width_parameter_counts_match_the_official_code():
    # official CSNLN (csnln.py) with n_feats = 64 given to its attention modules too, depth 12,
    # counted with the reference code: SNADN Table 3 prints them truncated as 0.7 M / 1.6 M
    assert _count(CSNLN(2, 64, 12)) == 776_977
    assert _count(CSNLN(4, 64, 12)) == 1_654_107
    assert _count(CSNLN(2, 128, 12)) == 3_061_265          # the official n_feats 128 model


@pytest.mark.parametrize("scale", [2, 4])
def test_shapes(scale):
    net = CSNLN(scale, n_feats=8, depth=2)
    assert net(torch.rand(2, 3, 8, 12)).shape == (2, 3, 8 * scale, 12 * scale)


def _slow_cross_scale(att: CrossScaleAttention, x: torch.Tensor) -> torch.Tensor:
    """Eqs. 2-4 written position by position (one image)."""
    s, k = att.scale, att.ksize
    _, c, h, w = x.shape
    g = F.pad(att.assembly(x)[0], (s, s, s, s))
    small = F.pad(att.match2(F.interpolate(x, scale_factor=1 / s, mode="bilinear"))[0], (1, 1, 1, 1))
    theta = F.pad(att.match1(x)[0], (1, 1, 1, 1))
    hs, ws = h // s, w // s
    keys = torch.stack([small[:, u:u + k, v:v + k].flatten() for u in range(hs) for v in range(ws)])
    keys = keys / keys.norm(dim=1, keepdim=True).clamp_min(att.eps)
    values = [g[:, u * s:u * s + k * s, v * s:v * s + k * s] for u in range(hs) for v in range(ws)]
    out = torch.zeros(c, (h + 2) * s, (w + 2) * s, dtype=x.dtype)    # padded by s each side
    for i in range(h):
        for j in range(w):
            weights = torch.softmax(att.softmax_scale * keys @ theta[:, i:i + k, j:j + k].flatten(), 0)
            patch = sum(wt * v for wt, v in zip(weights, values))
            out[:, i * s:i * s + k * s, j * s:j * s + k * s] += patch
    return (out[:, s:-s, s:-s] / 6.0)[None]


@pytest.mark.parametrize("scale", [2, 4])
def test_cross_scale_attention_matches_a_slow_loop(scale):
    torch.manual_seed(0)
    att = CrossScaleAttention(6, scale=scale).double()
    x = torch.randn(1, 6, 2 * scale, 3 * scale, dtype=torch.float64)
    torch.testing.assert_close(att(x), _slow_cross_scale(att, x))


def test_in_scale_attention_matches_the_softmax_matrix():
    torch.manual_seed(0)
    att = InScaleAttention(6).double()
    x = torch.randn(2, 6, 4, 5, dtype=torch.float64)
    q, k, v = att.match1(x).flatten(2), att.match2(x).flatten(2), att.assembly(x).flatten(2)
    ref = v @ torch.softmax(q.transpose(1, 2) @ k, dim=2).transpose(1, 2)
    torch.testing.assert_close(att(x), ref.view_as(x))


def test_sem_cell_weights_are_shared_over_the_recurrences():
    a, b = CSNLN(2, 8, depth=1), CSNLN(2, 8, depth=5)
    # depth only widens the tail's input: the cell is one module whatever the depth
    assert _count(b) - _count(a) == 4 * 8 * 9 * 3


def test_builds():
    module, plan = csnl.build_csnl(_ctx(4, "paper"))
    assert _count(module.net) == 1_654_107
    assert (plan.batch_size, plan.patch_size, plan.max_steps) == (16, 128, 100_000)   # 100 epochs of 16,000
    assert tuple(module.hparams.milestones) == (20_000, 40_000, 60_000, 80_000) and module.hparams.loss == "l1"
    module, plan = csnl.build_csnl(_ctx(2))
    assert plan.patch_size == 32 and plan.max_steps > 0


def test_training_steps_reduce_the_l1_loss_on_real_patches(shared_data):
    dm = KatherSRDataModule(release="CRC-VAL-HE-7K", scale=2, n_patches=None, patch=32, batch_size=2,
                            split=(0.5, 0.25, 0.25))
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    torch.manual_seed(0)
    module = PlainSRModule(CSNLN(2, n_feats=16, depth=2), 2, lr=1e-3)          # two shared-cell recurrences
    opt = module.configure_optimizers()["optimizer"]
    losses = []
    for _ in range(8):
        loss = module.pixel(module(batch["lr"]), batch["hr"])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]
