"""cremi_triplet builder and DataModule on the real CREMI C sample: the blank slice 14 is dropped by the
defect rule and nothing else is, the hdf5 / tif / slice-folder readers give identical triplets, alignment
recovers known shifts, histogram specification matches CDFs, the z-block split shares no slice."""
import json
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from datamodules import cremi_triplet as ct
from datamodules.cremi_triplet_builder import SMOKE, align_shift, build, membrane_mask, shift_image

SMALL = replace(SMOKE, crop=64, stride=64, margin=8)


@pytest.fixture(scope="module")
def sample(shared_data):
    img = tifffile.imread(shared_data / "cremi" / "cremi_image.tif")
    lab = tifffile.imread(shared_data / "cremi" / "cremi_labels.tif")
    return img, lab


@pytest.fixture(scope="module")
def smoke_build(shared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("ct") / "C"
    report = build(shared_data / "cremi" / "cremi_image.tif", out, SMOKE,
                   labels=shared_data / "cremi" / "cremi_labels.tif", log=lambda m: None)
    return out, report, json.loads((out / "manifest.json").read_text())


def test_sample_build_drops_exactly_the_blank_slice_triplets(smoke_build):
    out, report, manifest = smoke_build
    # the defect rule drops every crop of the triplets holding slice 14, and nothing else
    assert report["dropped_by_z"]["defect"] == {"13": 16, "14": 16, "15": 16}
    assert report["dropped"]["defect"] == 3 * 16
    assert not {r["z"] for r in manifest} & {13, 14, 15}
    # deterministic golden counts of this build (continuity 0.15, blur ratio 2.0 recorded in build.json)
    assert report["counts"]["candidates"] == 23 * 16
    assert (report["counts"]["train"], report["counts"]["val"], report["counts"]["test"]) == (133, 24, 49)
    assert report["settings"]["thresholds"]["min_continuity"] == 0.15


def test_zblock_split_shares_no_slice(smoke_build):
    _, _, manifest = smoke_build
    slices = {s: {z for r in manifest if r["split"] == s for z in (r["z"] - 1, r["z"], r["z"] + 1)}
              for s in ("train", "val", "test")}
    assert not slices["train"] & slices["test"] and not slices["val"] & slices["test"]
    assert not slices["train"] & slices["val"]
    gt = {s: sorted({r["z"] for r in manifest if r["split"] == s}) for s in slices}
    assert gt["train"] == list(range(1, 13)) and gt["val"] == [16, 17] and gt["test"] == [20, 21, 22, 23]


def test_membrane_masks_come_from_labelled_slice_4(smoke_build, sample):
    out, report, manifest = smoke_build
    mem = [r for r in manifest if r["membrane"]]
    assert mem and {r["z"] for r in mem} == {4} and report["counts"]["membrane"] == len(mem)
    r = mem[0]
    m = np.asarray(Image.open(out / r["split"] / r["name"] / "membrane.png"))
    want = membrane_mask(sample[1][4, r["y"]:r["y"] + 128, r["x"]:r["x"] + 128])
    assert np.array_equal(m, want) and set(np.unique(m)) <= {0, 128, 255}


def test_membrane_mask_by_hand():
    ids = np.array([[1, 1, 2, 2], [1, 1, 2, 2], [0, 0, 2, 2], [0, 0, 0, 0]], np.uint64)
    m = membrane_mask(ids)
    assert m[0, 0] == 255 and m[0, 1] == 255 and m[0, 2] == 255  # boundary 1|2 dilated by 1 px
    assert m[3, 0] == 128  # unlabelled (id 0) away from a boundary
    no_edge = membrane_mask(np.full((4, 4), 7, np.uint64))
    assert (no_edge == 0).all()


def _quantiles_within_one_level(a: np.ndarray, ref_counts: np.ndarray) -> bool:
    q = np.linspace(0.01, 0.99, 99)
    ref_cdf = np.cumsum(ref_counts) / ref_counts.sum()
    ref_q = np.searchsorted(ref_cdf, q)           # grey level at each quantile of the reference
    return bool(np.abs(np.quantile(a, q) - ref_q).max() <= 1)


def test_default_histogram_reference_is_the_volume_not_the_ground_truth(smoke_build, sample):
    out, report, manifest = smoke_build
    assert report["settings"]["hist_ref"] == report["hist_ref"] == "volume" and "leak" in report["hist_ref_note"]
    ref = np.asarray(report["hist_ref_counts"])
    kept_z = sorted({z for r in manifest for z in (r["z"] - 1, r["z"], r["z"] + 1)})
    assert 14 not in kept_z and np.array_equal(ref, sum(np.bincount(sample[0][z].ravel(), minlength=256) for z in kept_z))
    for r in manifest[:: max(1, len(manifest) // 5)]:
        d = out / r["split"] / r["name"]
        im = [np.asarray(Image.open(d / f"im{k}.png")) for k in (1, 2, 3)]
        # the middle slice is the raw crop: nothing of it reaches the inputs but the volume statistic
        assert np.array_equal(im[1], sample[0][r["z"], r["y"]:r["y"] + 128, r["x"]:r["x"] + 128])
        assert _quantiles_within_one_level(im[0], ref) and _quantiles_within_one_level(im[2], ref)


def test_match_to_counts_equals_skimage_with_a_reference_image(sample):
    from skimage.exposure import match_histograms
    from datamodules.cremi_triplet_builder import match_to_counts
    img, ref = sample[0][3, :200, :200], sample[0][9, 100:300, 50:250]
    want = np.clip(np.round(match_histograms(img, ref)), 0, 255).astype(np.uint8)
    assert np.array_equal(match_to_counts(img, np.bincount(ref.ravel(), minlength=256)), want)


def test_paper_histogram_option_matches_the_middle_cdf(sample, tmp_path):
    raw, _ = _substack(sample)
    tifffile.imwrite(tmp_path / "s.tif", raw)
    rep = build(tmp_path / "s.tif", tmp_path / "m", replace(SMALL, hist_ref="middle"), log=lambda m: None)
    assert rep["hist_ref"] == "middle" and rep["hist_ref_counts"] is None
    r = json.loads((tmp_path / "m" / "manifest.json").read_text())[0]
    d = tmp_path / "m" / r["split"] / r["name"]
    im = [np.asarray(Image.open(d / f"im{k}.png")) for k in (1, 2, 3)]
    for k in (0, 2):  # every quantile of the neighbour within one grey level of the middle's
        assert _quantiles_within_one_level(im[k], np.bincount(im[1].ravel(), minlength=256))


def test_alignment_recovers_synthetic_shifts(sample):
    ref = sample[0][5]
    for dy, dx in ((3, -5), (-7, 2), (0, 0)):
        moving, _ = shift_image(ref, -dy, -dx)  # moving[y, x] = ref[y + dy, x + dx]
        (sy, sx), score = align_shift(moving, ref, margin=8)
        assert (sy, sx) == (dy, dx) and score > 0.9


def _substack(sample):
    return sample[0][10:18, 100:356, 200:456], sample[1][10:18, 100:356, 200:456]


def test_hdf5_tif_and_slice_folder_give_identical_triplets(sample, tmp_path):
    raw, lab = _substack(sample)
    tif = tmp_path / "stack.tif"
    tifffile.imwrite(tif, raw)
    h5 = tmp_path / "sample_C.hdf"
    with h5py.File(h5, "w") as f:  # the official CREMI layout: labels cover a sub-box given in nm
        f.create_dataset("volumes/raw", data=raw).attrs["resolution"] = (40.0, 4.0, 4.0)
        d = f.create_dataset("volumes/labels/neuron_ids", data=lab[:, 32:, 16:].astype(np.uint64))
        d.attrs["resolution"] = (40.0, 4.0, 4.0)
        d.attrs["offset"] = (0.0, 32 * 4.0, 16 * 4.0)
    folder = tmp_path / "slices"
    folder.mkdir()
    for z, s in enumerate(raw):
        Image.fromarray(s).save(folder / f"section_{z}.png")  # natural sort: 2 before 10
    reports = {k: build(src, tmp_path / k, SMALL, log=lambda m: None)
               for k, src in (("tif", tif), ("h5", h5), ("folder", folder))}
    assert list(reports["h5"]["resolution"]) == [40.0, 4.0, 4.0] and reports["h5"]["labels_offset"] == [0, 32, 16]
    manifests = {k: json.loads((tmp_path / k / "manifest.json").read_text()) for k in reports}
    strip = lambda m: [{k: v for k, v in r.items() if k != "membrane"} for r in m]  # noqa: E731
    assert strip(manifests["tif"]) == strip(manifests["h5"]) == strip(manifests["folder"])
    assert {r["z"] for r in manifests["tif"]}.isdisjoint({3, 4, 5})  # slice 14 of the sample = z 4 here
    for r in manifests["tif"]:
        for k in (1, 2, 3):
            a = [np.asarray(Image.open(tmp_path / s / r["split"] / r["name"] / f"im{k}.png")) for s in reports]
            assert np.array_equal(a[0], a[1]) and np.array_equal(a[0], a[2])


def test_paper_mode_keeps_the_k_most_continuous(sample, tmp_path):
    raw, _ = _substack(sample)
    tifffile.imwrite(tmp_path / "s.tif", raw)
    rep = build(tmp_path / "s.tif", tmp_path / "p", replace(SMALL, mode="paper", paper_count=20, split="random"),
                log=lambda m: None)
    man = json.loads((tmp_path / "p" / "manifest.json").read_text())
    assert rep["counts"]["kept"] == 20 == len(man) and rep["shortfall"] == 0
    assert min(r["continuity"] for r in man) == rep["implied_min_continuity"]
    assert (rep["counts"]["train"], rep["counts"]["val"], rep["counts"]["test"]) == (12, 4, 4)


def test_cli_and_bad_input(tmp_path, sample):
    raw, _ = _substack(sample)
    tifffile.imwrite(tmp_path / "s.tif", raw[:4])
    assert ct.main(["build", "--source", str(tmp_path / "s.tif"), "--out", str(tmp_path / "o"), "--crop", "64",
                    "--stride", "64", "--margin", "8", "--grid", "valid"]) == 0
    assert json.loads((tmp_path / "o" / "build.json").read_text())["finished"]
    assert ct.main(["build", "--source", str(tmp_path / "missing.tif"), "--out", str(tmp_path / "x")]) == 1
    tifffile.imwrite(tmp_path / "f.tif", raw[:4].astype(np.float32))
    assert ct.main(["build", "--source", str(tmp_path / "f.tif"), "--out", str(tmp_path / "y")]) == 1


def test_datamodule_batches_and_augmentation(smoke_build):
    out, _, _ = smoke_build
    dm = ct.CremiTripletDataModule(out, patch=64, batch_size=3, test_limit=5)
    dm.setup()
    assert dm.membrane_source is not None and len(dm.test_set) == 5
    assert {r["z"] for r in dm.test_set.rows} >= {20, 23}  # evenly spaced over the test slices
    b = next(iter(dm.train_dataloader()))
    assert b["prev"].shape == b["target"].shape == b["next"].shape == (3, 1, 64, 64)
    assert b["prev"].dtype == torch.float32 and 0 <= float(b["prev"].min()) and float(b["prev"].max()) <= 1
    t = next(iter(dm.test_dataloader()))
    assert t["target"].shape == (1, 1, 128, 128) and int(t["index"][0]) == 0
    # temporal swap: with augmentation, some draws exchange previous and next
    ds = ct.TripletDataset(out, dm.split_rows("train")[:1], 128, augment=True)
    raw = torch.from_numpy(ds.frames(0).astype(np.float32) / 255)
    torch.manual_seed(0)
    swapped = 0
    for _ in range(20):
        item = ds[0]
        for f in (lambda x: x, lambda x: x.flip(-1), lambda x: x.flip(-2), lambda x: x.flip(-1).flip(-2)):
            if torch.equal(item["prev"][0], f(raw[2])) and torch.equal(item["next"][0], f(raw[0])):
                swapped += 1
        assert torch.equal(item["target"][0], item["target"][0])
    assert 0 < swapped < 20


def test_missing_build_is_one_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="cremi_triplet"):
        ct.CremiTripletDataModule(tmp_path / "nothing")
