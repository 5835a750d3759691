"""Kather DataModule: SNADN's 8 classes (no BACK), per-class draw and 8:1:1 split, same split at x2 / x4,
same-class references from the training split (never the image itself)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from datamodules.kather import CLASSES, KatherSRDataModule, stratified_split


def _fake_release(root: Path, n_per_class: int) -> Path:
    for cls in CLASSES:
        for i in range(n_per_class):
            p = root / "kather" / "NCT-CRC-HE-100K" / cls / f"{cls}-{i:04d}.tif"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.touch()
    return root


def test_paper_draw_is_2500_per_class_without_back_split_8_1_1(tmp_path):
    root = _fake_release(tmp_path, 2_600)                                # file names only: no pixels read
    dm = KatherSRDataModule(root=root, scale=4)                         # defaults = the paper protocol
    dm.setup()
    sets = [dm.train_set.hr_paths, dm.val_set.hr_paths, dm.test_set.hr_paths]
    assert [len(s) for s in sets] == [16_000, 2_000, 2_000]
    for s, n in zip(sets, (2_000, 250, 250)):
        assert {c: sum(p.parent.name == c for p in s) for c in CLASSES} == \
            {c: (0 if c == "BACK" else n) for c in CLASSES}
    assert len(set(sum(sets, []))) == 20_000                            # disjoint
    dm2 = KatherSRDataModule(root=root, scale=2)
    dm2.setup()
    assert dm2.test_set.hr_paths == dm.test_set.hr_paths and dm2.train_set.hr_paths == dm.train_set.hr_paths


def test_test_order_interleaves_classes():
    files = [Path(f"{c}/{c}-{i}.png") for c in ("A", "B", "C") for i in range(10)]
    tr, va, te = stratified_split(files, None, (0.8, 0.1, 0.1), 0)
    assert [p.parent.name for p in te] == ["A", "B", "C"] and len(tr) == 24


def test_real_samples_pairs_and_references(shared_data):
    dm = KatherSRDataModule(release="CRC-VAL-HE-7K", n_patches=None, split=(0.5, 0.25, 0.25), scale=4)
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (16, 8, 8)
    train = set(dm.train_set.hr_paths)
    for ds in (dm.train_set, dm.test_set):
        for i in range(len(ds)):
            ref = ds._ref_path(i)
            assert ref in train and ref != ds.hr_paths[i] and ref.parent.name == ds.hr_paths[i].parent.name
    item = dm.test_set[0]
    assert item["hr"].shape == (3, 224, 224) and item["lr"].shape == (3, 56, 56)
    assert item["ref"].shape == (3, 224, 224) and item["ref_lr"].shape == (3, 56, 56)
    assert not (item["ref"] == item["hr"]).all()
    assert CLASSES[item["label"]] == dm.test_set.hr_paths[0].parent.name
    assert dm.test_set._ref_path(0) == dm.test_set._ref_path(0)         # seeded


def test_memory_cache_gives_identical_items_and_references(shared_data):
    sets = []
    for cache in (False, True):
        dm = KatherSRDataModule(release="CRC-VAL-HE-7K", n_patches=None, split=(0.5, 0.25, 0.25), scale=2,
                                patch=32, memory_cache=cache)
        dm.setup()
        sets.append((dm.train_set, dm.test_set))
    for plain, cached in zip(*sets):
        for rep in range(2):                                            # the second pass reads the memory copy
            for i in range(len(plain)):
                items = []
                for ds in (plain, cached):
                    torch.manual_seed(10 * rep + i)
                    items.append(ds[i])
                for key in ("lr", "hr", "ref", "ref_lr"):
                    assert torch.equal(items[0][key], items[1][key]), key
    assert len(cached._ref_memory) > 0 and plain._ref_memory is None
