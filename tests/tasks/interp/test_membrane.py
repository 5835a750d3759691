"""Membrane oracle: learns a membrane pattern, is frozen, records its own held-out Dice, is cached per
build; no labels -> no oracle (Dice columns stay empty rather than invented)."""
import numpy as np
import torch

from tasks.interp import membrane


def _pairs(n, size=32, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        m = np.zeros((size, size), np.uint8)
        for c in rng.choice(size, 3, replace=False):
            m[:, c] = 255 if rng.random() < 0.5 else 0
            m[c, :] = 255
        img = np.clip(200 - 0.6 * m.astype(float) + rng.normal(0, 8, m.shape), 0, 255).astype(np.uint8)
        mask = m.copy()
        mask[:4, :4] = 128  # an unlabelled corner is ignored
        out.append((img, mask))
    return out


def test_oracle_learns_and_is_frozen():
    s = membrane.OracleSettings(depth=2, base=8, steps=60, batch_size=4, lr=3e-3)
    net = membrane.train_oracle(_pairs(6), _pairs(3, seed=1), s)
    assert net.own_dice > 0.8
    assert not any(p.requires_grad for p in net.parameters()) and not net.training
    x = torch.rand(2, 1, 32, 32)
    y = net.predict(x)
    assert y.shape == x.shape and set(y.unique().tolist()) <= {0.0, 1.0}


def test_no_labels_no_oracle():
    class _DM:
        membrane_source = None
    assert membrane.oracle_for(_DM()) is None
    assert membrane.oracle_for(object()) is None


def test_oracle_is_cached_per_build(tmp_path, monkeypatch):
    monkeypatch.setenv("MIRBENCH_CACHE", str(tmp_path))
    monkeypatch.setattr(membrane, "SMOKE", membrane.OracleSettings(depth=2, base=4, steps=2, batch_size=2))
    calls = []

    class _DM:
        membrane_source = {"root": "x", "id": "abc", "crop": 32}

        def membrane_sets(self):
            calls.append(1)
            return _pairs(4), _pairs(1, seed=2)
    first = membrane.oracle_for(_DM())
    membrane._MEMO.clear()
    second = membrane.oracle_for(_DM())
    assert len(calls) == 1 and list(tmp_path.glob("interp-membrane-*.pt"))
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))
    assert second.own_dice == first.own_dice
