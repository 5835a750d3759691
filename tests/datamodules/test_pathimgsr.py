"""PathImgSR builder (datamodules/pathimgsr_builder.py), CLI and DataModule, on pyramids written from the
real shared slides."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import openslide
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from datamodules.base import MissingDataError
from datamodules.pathimgsr import PathImgSRDataModule, main
from datamodules.pathimgsr_builder import (BuildSettings, SlideSkipped, build, choose_levels, read_asap_annotation,
                                           register)
from datamodules.pathimgsr_registration import RegistrationCheck
from datamodules.sr_pairs import bicubic_lr
from datamodules.wsi_pyramid import load_base_image, pyramid_from_slide, write_pyramid

TINY = BuildSettings(lr_size=16, window=68, hr_magnification=None, n_train=(4, 4), n_test=(3, 3))


@pytest.fixture(scope="module")
def pyramids(tmp_path_factory, shared_data) -> dict[str, Path]:
    """The two shared slides written as OpenSlide-readable pyramids (generic TIFF, mpp tags)."""
    root = shared_data / "wsi"
    out = tmp_path_factory.mktemp("pyramids")
    return {"os1": pyramid_from_slide(root / "OS-1-detail.ome.tif", out / "os1" / "OS-1.tif"),
            "cmu": pyramid_from_slide(root / "cmu-1-small-region.svs", out / "cmu" / "CMU-1.tif")}


def _slides_dir(tmp_path: Path, pyramids: dict, names: dict[str, str]) -> Path:
    d = tmp_path / "slides"
    d.mkdir(exist_ok=True)
    for name, key in names.items():
        shutil.copy(pyramids[key], d / f"{name}.tif")
    return d


def _rows(out: Path) -> list[dict]:
    with open(out / "manifest.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_pyramid_is_read_by_openslide_with_mpp(pyramids):
    with openslide.OpenSlide(pyramids["os1"]) as s:
        assert s.properties["openslide.vendor"] == "generic-tiff"
        assert s.level_downsamples[:3] == (1.0, 2.0, 4.0)
        assert float(s.properties["openslide.mpp-x"]) == pytest.approx(0.2271, abs=1e-4)
        base, _ = load_base_image(pyramids["os1"])
        assert base.shape[:2] == s.dimensions[::-1]


def test_levels_are_chosen_by_magnification_not_index(pyramids):
    with openslide.OpenSlide(pyramids["os1"]) as s:          # 0.227 um/px: 44x ~ 40x
        assert choose_levels(s, 40, 4) == (0, 2)
        assert choose_levels(s, 20, 4) == (1, 3)
    with openslide.OpenSlide(pyramids["cmu"]) as s:          # 0.499 um/px: a 20x slide
        assert choose_levels(s, 20, 4) == (0, 2)
        with pytest.raises(SlideSkipped, match="no 40x level"):
            choose_levels(s, 40, 4)


def test_register_recovers_a_known_offset_exactly(shared_data):
    base, _ = load_base_image(shared_data / "wsi" / "OS-1-detail.ome.tif")
    window = base[300:564, 400:664]                          # 264 window, 256 HR, 64 LR
    for dy, dx in [(0, 0), (3, 7), (8, 8), (6, 1)]:
        hr = torch.from_numpy(np.ascontiguousarray(window[dy:dy + 256, dx:dx + 256])).permute(2, 0, 1) / 255.0
        lr = (bicubic_lr(hr, 4) * 255).round().byte().permute(1, 2, 0).numpy()
        got_y, got_x, ncc = register(window, lr, 4)
        assert (got_y, got_x) == (dy, dx)
        assert ncc > 0.9


def test_build_pairs_manifest_split_by_slide_and_skips_unreadable(tmp_path, pyramids, capsys):
    slides = _slides_dir(tmp_path, pyramids, {"os1": "os1", "cmu": "cmu"})
    (slides / "broken.tif").write_bytes(b"not a slide")
    report = build(slides, tmp_path / "out", settings=TINY)
    assert report.counts == {"train/tissue": 8, "test/tissue": 6}
    assert "broken" in report.skipped and "skipping slide broken" in capsys.readouterr().err
    assert report.pairs_per_second > 0
    assert set(report.splits["train"]).isdisjoint(report.splits["test"])
    rows = _rows(tmp_path / "out")
    assert len(rows) == 14 and len({r["name"] for r in rows}) == 14
    for r in rows:
        assert r["slide"] in report.splits[r["split"]]
        assert Image.open(tmp_path / "out" / r["lr"]).size == (16, 16)
        assert Image.open(tmp_path / "out" / r["hr"]).size == (64, 64)
        assert float(r["tissue_fraction"]) > 0.8
        # the pyramid's 10x level is an exact 4x box downsample: registration lands on the nominal offset
        assert (float(r["shift_x"]), float(r["shift_y"])) == (0.0, 0.0) and float(r["ncc"]) > 0.5


def test_build_resumes_a_partial_build(tmp_path, pyramids):
    slides = _slides_dir(tmp_path, pyramids, {"os1": "os1", "cmu": "cmu"})
    out = tmp_path / "out"
    build(slides, out, settings=TINY)
    before = (out / "manifest.csv").read_text()
    parts = sorted((out / ".work" / "parts").glob("*.json"))
    lost = json.loads(parts[0].read_text())
    for p in (out / "build.json", out / "manifest.csv", parts[0]):
        p.unlink()
    report = build(slides, out, settings=TINY)
    assert report.new_pairs == len(lost["rows"])                # only the lost chunk was redone
    assert (out / "manifest.csv").read_text() == before          # deterministic
    with pytest.raises(ValueError, match="other settings"):
        build(slides, out, settings=BuildSettings(**{**TINY.__dict__, "seed": 1}))


def test_build_with_camelyon_annotations_balances_tumour_and_normal(tmp_path, pyramids):
    names = {"tumor_001": "os1", "test_001": "os1", "normal_001": "cmu", "tumor_002": "os1"}
    slides = _slides_dir(tmp_path, pyramids, names)
    ann = tmp_path / "annotations"
    ann.mkdir()
    # left half of OS-1 is "tumour" (group _0) minus a cut-out (group _2); tumor_002 has no annotation
    xml = ('<?xml version="1.0"?><ASAP_Annotations><Annotations>'
           '<Annotation Name="A" Type="Polygon" PartOfGroup="_0"><Coordinates>'
           '<Coordinate Order="0" X="0" Y="0"/><Coordinate Order="1" X="540" Y="0"/>'
           '<Coordinate Order="2" X="540" Y="1088"/><Coordinate Order="3" X="0" Y="1088"/></Coordinates></Annotation>'
           '<Annotation Name="B" Type="Polygon" PartOfGroup="_2"><Coordinates>'
           '<Coordinate Order="0" X="0" Y="0"/><Coordinate Order="1" X="540" Y="0"/>'
           '<Coordinate Order="2" X="540" Y="200"/><Coordinate Order="3" X="0" Y="200"/></Coordinates></Annotation>'
           '</Annotations></ASAP_Annotations>')
    for n in ("tumor_001", "test_001"):
        (ann / f"{n}.xml").write_text(xml)
    assert [len(p) for p in read_asap_annotation(ann / "tumor_001.xml")] == [1, 1]
    rc = main(["build", "--slides", str(slides), "--annotations", str(ann), "--out", str(tmp_path / "out"),
               "--n-train", "3", "3", "--n-test", "2", "2", "--lr-size", "16", "--window", "68",
               "--magnification", "base"])
    assert rc == 0
    done = json.loads((tmp_path / "out" / "build.json").read_text())
    assert done["counts"] == {"train/tumor": 3, "train/normal": 3, "test/tumor": 2, "test/normal": 2}
    assert done["splits"] == {"train": ["normal_001", "tumor_001"], "test": ["test_001"]}  # Camelyon16's split
    assert "tumor_002" in done["skipped"]
    for r in _rows(tmp_path / "out"):
        x, y = int(r["hr_x"]), int(r["hr_y"])
        if r["cls"] == "tumor":
            assert float(r["tumor_fraction"]) > 0.8 and x + 64 <= 540 + 14 and y + 64 > 200
        else:
            assert float(r["tumor_fraction"]) < 0.2


def _pooled_error(lr: torch.Tensor, hr: torch.Tensor) -> float:
    return (F.avg_pool2d(hr, 4) - lr).abs().mean().item()


def test_datamodule_smoke_profile_shapes_and_aligned_crops(tmp_path, monkeypatch):
    monkeypatch.setenv("MIRBENCH_CACHE", str(tmp_path / "cache"))
    dm = PathImgSRDataModule.for_profile("smoke", scale=4, patch=32, batch_size=4)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["lr"].shape == (4, 3, 8, 8) and batch["hr"].shape == (4, 3, 32, 32)
    assert batch["lr"].dtype == torch.float32 and 0 <= batch["hr"].min() and batch["hr"].max() <= 1
    # LR is the pyramid's 4x box average of the HR area: aligned crops match, shifted ones do not
    assert _pooled_error(batch["lr"], batch["hr"]) < 0.04
    assert _pooled_error(batch["lr"], batch["hr"].roll(4, -1)) > 2 * _pooled_error(batch["lr"], batch["hr"])
    assert len(dm.test_set) == 10 and len(dm.val_set) == 4 and len(dm.train_set) == 48
    slides = {p.name.split("_tissue_")[0] for p in dm.test_set.hr_paths}    # both slides in the test split
    assert len(slides) == 2
    item = dm.test_set[0]
    assert item["lr"].shape == (3, 32, 32) and item["hr"].shape == (3, 128, 128) and item["index"] == 0
    flips = PathImgSRDataModule(dm.root, patch=32, augment=True, batch_size=8)
    flips.setup("fit")
    for i in range(6):
        it = flips.train_set[i]
        assert _pooled_error(it["lr"][None], it["hr"][None]) < 0.04
    again = PathImgSRDataModule.for_profile("smoke", scale=4, patch=32, batch_size=4)
    assert again.root == dm.root                                   # the cached build is reused


def test_paper_profile_without_the_build_names_the_command(tmp_path, monkeypatch):
    monkeypatch.setenv("MIRBENCH_DATA", str(tmp_path))
    with pytest.raises(MissingDataError, match="python -m datamodules.pathimgsr build"):
        PathImgSRDataModule.for_profile("paper", scale=4)


def test_write_pyramid_crops_to_exact_downsamples(tmp_path):
    img = (np.random.default_rng(0).random((300, 333, 3)) * 255).astype(np.uint8)
    p = write_pyramid(img, tmp_path / "x.tif", mpp=0.25, tile=64, n_levels=3, compression=None)
    with openslide.OpenSlide(p) as s:
        assert s.level_dimensions == ((332, 300), (166, 150), (83, 75))
        assert np.array_equal(np.asarray(s.read_region((0, 0), 0, (332, 300)))[..., :3], img[:, :332])


def test_worker_processes_give_the_same_pairs(tmp_path, pyramids):
    slides = _slides_dir(tmp_path, pyramids, {"os1": "os1", "cmu": "cmu"})
    build(slides, tmp_path / "serial", settings=TINY, workers=0)
    report = build(slides, tmp_path / "parallel", settings=TINY, workers=2)
    assert report.new_pairs == 14
    strip = lambda out: [{k: v for k, v in r.items()} for r in _rows(out)]  # noqa: E731
    assert strip(tmp_path / "serial") == strip(tmp_path / "parallel")


def test_registration_qc_rejects_low_ncc_and_border_offsets(tmp_path, pyramids):
    check = RegistrationCheck(min_ncc=0.5)
    assert check.reject_reason(2, 2, 0.9, 4) is None
    assert check.reject_reason(2, 2, 0.3, 4) == "low_ncc" and check.reject_reason(2, 2, float("nan"), 4) == "low_ncc"
    assert check.reject_reason(0, 2, 0.9, 4) == "border_offset" == check.reject_reason(2, 4, 0.9, 4)
    slides = _slides_dir(tmp_path, pyramids, {"os1": "os1", "cmu": "cmu"})
    strict = BuildSettings(**{**TINY.__dict__, "min_ncc": 0.9999, "attempts_per_pair": 3})
    report = build(slides, tmp_path / "out", settings=strict)
    done = json.loads((tmp_path / "out" / "build.json").read_text())
    kept = sum(report.counts.values())
    assert done["registration_rejected"]["low_ncc"] > 0 and kept < 14 and report.shortfall
    assert all(float(r["ncc"]) >= 0.9999 for r in _rows(tmp_path / "out"))


def test_every_slide_skipped_says_why_in_one_error(tmp_path, pyramids):
    slides = _slides_dir(tmp_path, pyramids, {"os1": "os1", "cmu": "cmu"})
    with pytest.raises(FileNotFoundError, match="no slide has a level 64x coarser.*needs real optical pairs"):
        build(slides, tmp_path / "out", settings=BuildSettings(**{**TINY.__dict__, "scale": 64}))


def test_region_split_gives_every_slide_both_splits_and_disjoint_test_pairs(tmp_path, pyramids):
    slides = _slides_dir(tmp_path, pyramids, {"os1": "os1", "cmu": "cmu"})
    settings = BuildSettings(**{**TINY.__dict__, "split_by": "region", "test_fraction": 0.3, "n_test": (6, 6)})
    report = build(slides, tmp_path / "out", settings=settings)
    assert report.splits["train"] == report.splits["test"] == ["cmu", "os1"]
    rows = _rows(tmp_path / "out")
    done = json.loads((tmp_path / "out" / "build.json").read_text())
    assert "overlapping_test_pairs_dropped" in done and report.counts["test/tissue"] == 12
    for slide in ("os1", "cmu"):
        with openslide.OpenSlide(slides / f"{slide}.tif") as s:
            width = s.dimensions[0]
        boundary = 0.7 * width
        mine = [r for r in rows if r["slide"] == slide]
        assert {r["split"] for r in mine} == {"train", "test"}
        # HR windows (68 px at level 0) of train pairs end before the boundary, test ones start after it
        assert all(int(r["hr_x"]) + 64 <= boundary for r in mine if r["split"] == "train")
        assert all(int(r["hr_x"]) >= boundary for r in mine if r["split"] == "test")
        test = [(int(r["lr_x"]), int(r["lr_y"])) for r in mine if r["split"] == "test"]
        ext = 16 * 4                                                   # LR 16 px at downsample 4, level 0
        for i, (x, y) in enumerate(test):
            assert all(abs(x - x2) >= ext or abs(y - y2) >= ext for x2, y2 in test[i + 1:])
