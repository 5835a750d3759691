import functools
import math
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from benchmark.specs import BuildContext
from benchmark.weights import MissingWeightsError
from datamodules.sr_pairs import PairedSRDataset
from tasks.sr import ignn
from tasks.sr.ignn import IGNN, CrossScaleGraph, GraphAggregation, extract_patches, knn_patches, window_candidates


class _Identity(nn.Module):
    """Embedding stand-in with VGGFeatures' interface (a list of maps): the image itself."""

    def forward(self, x):
        return [x]


def _ctx(profile="smoke"):
    return BuildContext("sr", "pathimgsr_x4", profile, 4, 3, Path("/nonexistent-weights"))


@functools.lru_cache(maxsize=None)
def _smoke_build():
    """Built once: a smoke build constructs a random VGG19 (seconds)."""
    torch.manual_seed(0)
    return ignn.build_ignn(_ctx())


# ------------------------------------------------------------------ naive references (loops, slicing)
def _official_padding(size, patch=3, stride=2):
    total = -(size - patch) % stride
    return math.floor(total / 2), math.ceil(total / 2)


def _naive_patches(img, patch=3, stride=2):
    """{(row, col) of the patch grid: flattened patch (C, p, p)} of the zero-padded image."""
    (t, b), (l, r) = _official_padding(img.shape[-2]), _official_padding(img.shape[-1])
    padded = F.pad(img, (l, r, t, b))
    rows = range(0, padded.shape[-2] - patch + 1, stride)
    cols = range(0, padded.shape[-1] - patch + 1, stride)
    grid = {(i, j): padded[0, :, y:y + patch, x:x + patch].reshape(-1) for i, y in enumerate(rows)
            for j, x in enumerate(cols)}
    return grid, (len(rows), len(cols)), (t, l)


def _naive_knn(query_img, db_img, k, window=None, scale=2):
    """Per query patch (row-major): sorted indices of its k nearest database patches, searching the
    official window (top-left = clamp(i // scale - window // scale, 0, n - window)) or everything."""
    q, (m1, m2), _ = _naive_patches(query_img)
    d, (n1, n2), _ = _naive_patches(db_img)
    result = []
    for (i, j), qp in sorted(q.items()):
        if window is None or (window >= n1 and window >= n2):
            cand = [(a, b) for a in range(n1) for b in range(n2)]
        else:
            s = min(window, n1, n2)
            top = min(max(i // scale - s // scale, 0), n1 - s)
            left = min(max(j // scale - s // scale, 0), n2 - s)
            cand = [(a, b) for a in range(top, top + s) for b in range(left, left + s)]
        dist = torch.stack([((qp - d[c]) ** 2).sum() for c in cand])
        best = dist.argsort()[:k]
        result.append(sorted(cand[n][0] * n2 + cand[n][1] for n in best.tolist()))
    return result


# ------------------------------------------------------------------ graph construction
@pytest.mark.parametrize("window", [None, 4])
def test_knn_patch_search_matches_brute_force(window):
    torch.manual_seed(1)
    lr, small = torch.rand(1, 3, 22, 27), torch.rand(1, 3, 11, 14)
    q, q_grid, _ = extract_patches(lr, 3, 2)
    db, db_grid, _ = extract_patches(small, 3, 2)
    assert q_grid == (11, 13) and db_grid == (5, 7)
    cand = None if window is None else window_candidates(q_grid, db_grid, window, 2)
    # a tiny element budget forces many chunks of query rows
    _, idx = knn_patches(q, db, 4, cand, chunk_elements=3 * db.shape[1])
    assert [sorted(row) for row in idx[0].tolist()] == _naive_knn(lr, small, 4, window)
    assert torch.equal(knn_patches(q, db, 4, cand)[1], idx)     # chunking does not change the result


def test_graph_edges_are_patch_differences_spread_over_the_hr_footprint():
    torch.manual_seed(2)
    lr, small = torch.rand(1, 2, 10, 12), torch.rand(1, 2, 5, 6)
    graph = CrossScaleGraph(_Identity(), scale=2, k=3, window=30)
    idx, edge = graph(small, lr)
    assert idx.shape == (1, 30, 3) and edge.shape == (1, 3 * 2, 20, 24)
    assert [sorted(r) for r in idx[0].tolist()] == _naive_knn(lr, small, 3)
    # naive: each query's |q - neighbour| (summed over its 3x3 patch) painted on its 6x6 HR footprint
    q, (m1, m2), (t, l) = _naive_patches(lr)
    d, _, _ = _naive_patches(small)
    n2 = 3
    canvas, count = torch.zeros(6, 22, 26), torch.zeros(1, 22, 26)
    for (i, j), qp in sorted(q.items()):
        y, x = 4 * i, 4 * j
        count[:, y:y + 6, x:x + 6] += 1
        for n, db_index in enumerate(idx[0, i * m2 + j].tolist()):
            diff = (qp - d[divmod(db_index, n2)]).abs().view(2, 9).sum(1)
            canvas[2 * n:2 * n + 2, y:y + 6, x:x + 6] += diff[:, None, None]
    expected = (canvas / count)[:, 2 * t:2 * t + 20, 2 * l:2 * l + 24]
    torch.testing.assert_close(edge[0], expected)


def test_window_is_used_only_when_smaller_than_the_database():
    assert window_candidates((20, 20), (10, 10), 30, 2) is None
    cand = window_candidates((40, 40), (20, 20), 6, 2)
    assert cand.shape == (1600, 36)
    assert cand[0].min() == 0 and cand[-1].max() == 399     # shifted inside at both corners


# ------------------------------------------------------------------ patch aggregation
def test_hr_patches_are_the_neighbours_regions_at_twice_the_size():
    torch.manual_seed(3)
    s, c = 2, 2
    feat = torch.rand(1, c, 10, 14)
    agg = GraphAggregation(c, s, edge_channels=4)
    q, (m1, m2), (tq, lq) = _naive_patches(feat)
    small_grid, (n1, n2), (td, ld) = _naive_patches(feat[:, :, ::2, ::2])   # only the grid/padding is used
    idx = torch.randint(0, n1 * n2, (1, m1 * m2, 2))
    maps = agg.gather_hr_patches(feat, idx)
    assert maps.shape == (1, 2, c, 20, 28)
    padded = F.pad(feat, (2 * ld, 2 * ld + 12, 2 * td, 2 * td + 12))       # generous zero border
    canvas, count = torch.zeros(2, c, 20 + 40, 28 + 40), torch.zeros(1, 1, 20 + 40, 28 + 40)
    for (i, j), qp in sorted(q.items()):
        ref = qp.view(c, 9)
        y, x = 4 * i, 4 * j
        count[..., y:y + 6, x:x + 6] += 1
        for n, db_index in enumerate(idx[0, i * m2 + j].tolist()):
            a, b = divmod(db_index, n2)
            region = padded[0, :, 4 * a:4 * a + 6, 4 * b:4 * b + 6]             # the son patch, x2 larger
            flat = region.reshape(c, 36)
            norm = (flat - flat.mean(1, keepdim=True)) / (flat.var(1, keepdim=True) + 1e-5).sqrt()
            norm = norm * (ref.var(1, keepdim=True) + 1e-5).sqrt() + ref.mean(1, keepdim=True)
            canvas[n, :, y:y + 6, x:x + 6] += norm.view(c, 6, 6)
    expected = (canvas / count)[:, :, 2 * tq:2 * tq + 20, 2 * lq:2 * lq + 28]
    torch.testing.assert_close(maps[0], expected)


# ------------------------------------------------------------------ network
def test_paper_size_parameter_count():
    cfg = ignn.PAPER
    assert (cfg["nf"], cfg["n_blocks"], cfg["k"], cfg["window"]) == (256, 32, 5, 30)
    net = IGNN(_Identity(), nf=cfg["nf"], n_blocks=cfg["n_blocks"], scale=4, k=cfg["k"], window=cfg["window"])
    # 49,473,797 = the official x4 model's trainable weights (its extra 38,720 are frozen VGG19 convs)
    assert sum(p.numel() for p in net.parameters() if p.requires_grad) == 49_473_797
    assert len(net.body1) == 16 and len(net.body2) == 17 and net.graph_scale == 2


def test_forward_shapes_padding_and_quadrant_chop():
    torch.manual_seed(4)
    net = IGNN(_Identity(), nf=8, n_blocks=2, k=3, edge_channels=3)
    out = net(torch.rand(2, 3, 15, 17))                      # odd sizes: reflect-padded to even
    assert out.shape == (2, 3, 60, 68)
    net.eval()
    x = torch.rand(1, 3, 40, 44)
    with torch.no_grad():
        assert torch.isfinite(net(x)).all()
        # stitching: with a local stand-in for the network (x4 replication of the LR plus x8 of the
        # LR/2 image), the quadrants -- and quadrants of quadrants -- reassemble the whole output exactly
        net._forward = lambda small, lr: (lr.repeat_interleave(4, -2).repeat_interleave(4, -1)
                                          + small.repeat_interleave(8, -2).repeat_interleave(8, -1))
        whole = net(x)
        net.chop_min_size, net.chop_shave = 600, 4           # 40x44 LR -> 24x26 quadrants -> 16x16 ones
        chopped = net(x)
    assert chopped.shape == (1, 3, 160, 176)
    torch.testing.assert_close(chopped, whole)


def test_paper_profile_requires_vgg19():
    with pytest.raises(MissingWeightsError, match="vgg19"):
        ignn.build_ignn(_ctx("paper"))


def test_smoke_training_on_real_images_reduces_l1(shared_data):
    module, plan = _smoke_build()
    assert "random (He init)" in plan.notes and plan.patch_size == 64
    files = sorted((shared_data / "kather" / "CRC-VAL-HE-7K").glob("*/*.png"))[::8][:4]
    torch.manual_seed(0)
    data = PairedSRDataset(files, scale=4, patch=plan.patch_size)
    batch = next(iter(DataLoader(data, batch_size=4)))

    def l1():
        module.train()      # the training path (no quadrant chop) on the fixed batch
        with torch.no_grad():
            return F.l1_loss(module(batch["lr"]), batch["hr"]).item()

    before = l1()
    steps = 30  # a few steps of the smoke build on real images (the smoke bench runs the plan's 600)
    trainer = L.Trainer(max_steps=steps, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(module, train_dataloaders=DataLoader(data, batch_size=plan.batch_size))
    assert trainer.global_step == steps
    assert l1() < before
    assert not any(p.requires_grad for p in module.net.graph.embedding.parameters())


def test_registered():
    from tasks.sr.registry import METHODS

    spec = METHODS["ignn"]
    assert (spec.label, spec.kind, spec.paper, spec.table, spec.needs) == ("IGNN", "baseline", "masrgan", "Table 1",
                                                                          ("vgg19", "nrqm"))
    assert spec.datasets == ("pathimgsr_x4",) and spec.build is ignn.build_ignn
