import json

import pytest

from tasks.inpaint import sweep


def test_trimmed_mean_drops_highest_and_lowest():
    assert sweep.trimmed_mean([1, 9, 3, 5, 4, 6, 2, 100]) == pytest.approx((2 + 3 + 4 + 5 + 6 + 9) / 6)
    with pytest.raises(ValueError):
        sweep.trimmed_mean([1, 2])


def test_sweep_rows_plot_and_files(tmp_path, monkeypatch):
    monkeypatch.setenv("MIRBENCH_TEST_LIMIT", "3")
    rows = sweep.sweep(["input", "scale_inverse"], sizes=(64, 96), runs=3, runs_dir=tmp_path)
    assert [(r["method"], r["mask_size"]) for r in rows] == [("input", 64), ("scale_inverse", 64),
                                                              ("input", 96), ("scale_inverse", 96)]
    by = {(r["method"], r["mask_size"]): r for r in rows}
    # a larger hole costs the untouched input whole-image PSNR; per-run values differ (positions change)
    assert by[("input", 96)]["psnr"] < by[("input", 64)]["psnr"] - 2
    assert len(set(by[("input", 64)]["psnr_runs"])) == 3
    assert all(r["psnr"] > 40 for r in rows if r["method"] == "scale_inverse")
    paths = sweep.write(rows, tmp_path, "smoke", "kather_inpaint")
    assert paths["plot"].is_file() and json.loads(paths["json"].read_text())["rows"][0]["runs"] == 3


def test_untrained_method_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="train it first"):
        sweep.load_method("mssa_gan", "kather_inpaint", "smoke", tmp_path)
