"""Planning and leaderboard assembly without training: init_from / same_as order, unknown combinations,
kept rows, alias rows, fidelity marks, no smoke deltas for learned rows."""
import json

import pytest

from benchmark import leaderboard
from benchmark.registry import load_task
from benchmark.results import ResultRecord
from benchmark.runner import plan_runs, unplanned
from benchmark.specs import MethodSpec


def _never(ctx):
    raise AssertionError("planning must not build")


@pytest.fixture
def linked(monkeypatch):
    task = load_task("sr")
    monkeypatch.setitem(task.METHODS, "pre", MethodSpec("Pre", "proposed", _never, "none", ("kather_x4",)))
    monkeypatch.setitem(task.METHODS, "ft", MethodSpec("FT", "proposed", _never, "none", ("kather_x4",), init_from="pre"))
    monkeypatch.setitem(task.METHODS, "ft_alias", MethodSpec("FT (Table 3)", "ablation", _never, "none", ("kather_x4",),
                                                             table="Table 3", same_as="ft"))
    return task


def test_init_from_is_planned_first_and_same_as_maps_to_the_referenced_run(linked):
    assert plan_runs("sr", ["ft"], ["kather_x4"])[1] == [("kather_x4", "pre"), ("kather_x4", "ft")]
    assert plan_runs("sr", ["ft_alias"], ["kather_x4"])[1] == [("kather_x4", "pre"), ("kather_x4", "ft")]
    assert plan_runs("sr", ["pre", "ft", "ft_alias"], ["kather_x4"])[1] == [("kather_x4", "pre"), ("kather_x4", "ft")]


def test_broken_links_are_clear_errors(monkeypatch):
    task = load_task("sr")
    monkeypatch.setitem(task.METHODS, "bad", MethodSpec("Bad", "proposed", _never, "none", ("kather_x4",),
                                                        init_from="nope"))
    with pytest.raises(ValueError, match="init_from='nope' is not a method"):
        plan_runs("sr", ["bad"], ["kather_x4"])


def test_a_method_that_runs_on_none_of_the_datasets_is_reported():
    with pytest.raises(ValueError, match=r"rcan does not run on crchisto_x4 \(it runs on pathimgsr_x4\)"):
        plan_runs("sr", ["rcan"], ["crchisto_x4"])
    task, pairs = plan_runs("sr", ["bicubic", "rcan"], ["crchisto_x4", "pathimgsr_x4"])
    assert ("pathimgsr_x4", "rcan") in pairs and ("crchisto_x4", "rcan") not in pairs
    assert unplanned(task, ["bicubic", "rcan"], ["crchisto_x4", "pathimgsr_x4"]) == \
        ["rcan does not run on crchisto_x4 (it runs on pathimgsr_x4)"]


def _rec(method, kind="baseline", psnr=25.0, **train):
    conv = {"reported_key": "crchisto", "dataset_label": "CRCH", "description": "Y"}
    return ResultRecord(task="sr", dataset="crchisto_x4", method=method, profile="smoke", status="ok",
                        label=method.upper(), kind=kind, table="Table 1", paper="rvtt", scale=4,
                        metrics={"psnr": psnr, "ssim": 0.7, "n_images": 20}, convention=conv,
                        train={"fidelity": "faithful", "protocol": "table", **train}, env={"commit": "abc"})


def test_leaderboard_keeps_rows_without_a_local_result(tmp_path):
    old = leaderboard.write_leaderboard("sr", "smoke", [_rec("bicubic", "training-free"), _rec("srnet")], tmp_path / "a")
    previous = json.loads(old["json"].read_text())
    new = leaderboard.write_leaderboard("sr", "smoke", [_rec("bicubic", "training-free", psnr=25.5)], tmp_path / "b",
                                        previous=previous)
    rows = {r["method"]: r for r in json.loads(new["json"].read_text())["rows"]}
    assert rows["bicubic"]["psnr"] == 25.5 and not rows["bicubic"].get("kept")
    assert rows["srnet"]["kept"] and rows["srnet"]["notes"].startswith("kept from committed leaderboard (commit abc)")
    assert "kept from committed leaderboard" in new["md"].read_text()


def test_fidelity_protocol_notes_and_deltas():
    recs = [_rec("bicubic", "training-free"), _rec("srnet"),
            _rec("rvtt_t1", fidelity="reconstructed", fidelity_note="testers from the abstract", protocol="own recipe",
                 resumed_at_iteration=4)]
    rows = {r["method"]: r for r in leaderboard.build_rows(recs)}
    assert rows["bicubic"]["delta_psnr"] == pytest.approx(25.0 - 25.26)  # training-free rows keep their delta
    assert rows["srnet"]["reported_psnr"] is not None and rows["srnet"]["delta_psnr"] is None  # smoke learned: none
    n = rows["rvtt_t1"]["notes"]
    assert "reconstructed: testers from the abstract" in n and "protocol: own recipe" in n and "resumed at iteration 4" in n
    paper = {**rows["rvtt_t1"], "delta_psnr": -1.0, "delta_ssim": None}
    assert leaderboard._delta(paper, "psnr", 2) == "-1.00*"
    assert leaderboard._delta({**paper, "fidelity": "faithful"}, "psnr", 2) == "-1.00"


def test_same_as_rows_show_the_referenced_run_under_their_own_label(monkeypatch, tmp_path):
    task = load_task("sr")
    monkeypatch.setitem(task.METHODS, "srnet_t3", MethodSpec("SRNet (Table 3)", "ablation", _never, "rvtt",
                                                             ("crchisto_x4",), table="Table 3", same_as="srnet"))
    paths = leaderboard.write_leaderboard("sr", "smoke", [_rec("bicubic", "training-free"), _rec("srnet", psnr=26.0)],
                                          tmp_path)
    rows = {r["method"]: r for r in json.loads(paths["json"].read_text())["rows"]}
    alias = rows["srnet_t3"]
    assert alias["psnr"] == 26.0 and alias["label"] == "SRNet (Table 3)" and alias["table"] == "Table 3"
    assert alias["notes"].startswith("same run as SRNet")
    md = paths["md"].read_text()
    assert "Table 3" in md and "same run as SRNet" in md


def test_curves_plot_is_written_and_linked(tmp_path):
    curve = {"iteration": [1, 2, 3], "loss": [0.3, 0.2, 0.1], "val_iteration": [2, 3], "val_psnr": [20.0, 21.0]}
    paths = leaderboard.write_leaderboard("sr", "smoke", [_rec("bicubic", "training-free"), _rec("srnet", curve=curve)],
                                          tmp_path)
    assert paths["curves_crchisto_x4"] == tmp_path / "plots/sr_curves_crchisto_x4.png"
    assert paths["curves_crchisto_x4"].stat().st_size > 0
    assert "[training curves](plots/sr_curves_crchisto_x4.png)" in paths["md"].read_text()


def test_sample_grid_has_a_title_row_and_names_each_image(tmp_path):
    import numpy as np
    from PIL import Image

    from benchmark.samples import method_grid
    for m in ("a", "b"):
        d = tmp_path / m / "samples"
        d.mkdir(parents=True)
        for i in range(2):
            for part in ("input", "output", "target"):
                Image.fromarray(np.full((20, 30, 3), 128, np.uint8)).save(d / f"{i:03d}_{part}.png")
        (d / "names.json").write_text(json.dumps({"000": "img_a", "001": "img_b"}))
    out = method_grid({"a": tmp_path / "a", "b": tmp_path / "b"}, tmp_path / "grid.png", labels={"a": "A", "b": "B"})
    img = np.asarray(Image.open(out).convert("L"))
    assert img.shape == (16 + 2 * (20 + 14 + 4), 4 * 34)  # title row + (caption + image + pad) per test image
    assert (img[:16] < 128).any() and (img[16:30] < 128).any()  # text drawn in the title row and the caption
