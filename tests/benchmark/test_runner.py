"""The runner end to end on real data: training-free slice, resume, failure isolation, bad input."""
import json

import pytest
import torch
from torch import nn

from benchmark import leaderboard
from benchmark.registry import load_task
from benchmark.results import ResultStore
from benchmark.runner import run_task
from benchmark.specs import MethodSpec, TrainPlan
from datamodules.base import MissingDataError
from tasks.sr.module import SRModule

SLICE = ["nearest", "bicubic"]


@pytest.fixture
def dirs(tmp_path):
    return {"results_dir": tmp_path / "results", "runs_dir": tmp_path / "runs"}


def test_training_free_slice_writes_leaderboard_beside_reported_numbers(dirs, tmp_path):
    records = run_task("sr", "smoke", SLICE, ["crchisto_x4", "kather_x4"], progress=False, **dirs)
    assert [r.status for r in records] == ["ok"] * 4
    by = {(r.dataset, r.method): r for r in records}
    for ds in ("crchisto_x4", "kather_x4"):
        assert by[(ds, "bicubic")].metrics["psnr"] > by[(ds, "nearest")].metrics["psnr"]
    assert by[("crchisto_x4", "bicubic")].metrics["n_images"] == 20  # the paper's 80/20 split
    assert by[("kather_x4", "bicubic")].metrics["n_images"] == 10  # 30 % of the 32-patch sample
    for ds in ("crchisto_x4", "kather_x4"):
        assert 0 < by[(ds, "bicubic")].metrics["niqe"] < 30
    rec = by[("crchisto_x4", "bicubic")]
    assert rec.convention["space"] == "y" and rec.convention["crop"] == 4
    assert rec.env["commit"] and rec.profile == "smoke"
    assert rec.efficiency["input"] == "1x3x125x125"

    paths = leaderboard.write_leaderboard("sr", "smoke", ResultStore(dirs["results_dir"]).load("smoke", "sr"),
                                          tmp_path / "lb", dirs["runs_dir"])
    rows = json.loads(paths["json"].read_text())["rows"]
    crch = {r["method"]: r for r in rows if r["dataset"] == "crchisto_x4"}
    assert crch["bicubic"]["reported_psnr"] == 25.26  # rVTT Table 1, CRCH
    assert crch["bicubic"]["delta_psnr"] == pytest.approx(crch["bicubic"]["psnr"] - 25.26)
    kather = {r["method"]: r for r in rows if r["dataset"] == "kather_x4"}
    assert kather["bicubic"]["reported_psnr"] == 23.32  # SNADN Table 3, x4
    md = paths["md"].read_text()
    assert "`smoke` profile" in md and "PI: n/a" in md and "Bicubic" in md
    assert paths["plot_crchisto_x4"].stat().st_size > 0 and paths["samples_crchisto_x4"].is_file()


def test_finished_methods_are_skipped_and_force_reruns(dirs):
    first = run_task("sr", "smoke", ["nearest"], ["kather_x2"], progress=False, **dirs)
    assert len(first) == 1
    assert run_task("sr", "smoke", ["nearest"], ["kather_x2"], progress=False, **dirs) == []
    again = run_task("sr", "smoke", ["nearest"], ["kather_x2"], force=True, progress=False, **dirs)
    assert again[0].metrics["psnr"] == first[0].metrics["psnr"]  # deterministic


class _NaNNet(nn.Module):
    def __init__(self, scale):
        super().__init__()
        self.conv, self.scale = nn.Conv2d(3, 3, 3, padding=1), scale

    def forward(self, x):
        y = nn.functional.interpolate(self.conv(x), scale_factor=self.scale)
        return y * torch.tensor(float("nan"))


def _nan_method(ctx):
    return SRModule(_NaNNet(ctx.scale), ctx.scale), TrainPlan(max_steps=3, batch_size=2, patch_size=32)


def test_nan_loss_fails_one_method_and_the_others_go_on(dirs, monkeypatch):
    task = load_task("sr")
    monkeypatch.setitem(task.METHODS, "nan_net", MethodSpec("NaN net", "baseline", _nan_method, "none", ("kather_x4",)))
    records = run_task("sr", "smoke", ["nan_net", "bicubic"], ["kather_x4"], progress=False, **dirs)
    status = {r.method: r for r in records}
    assert status["nan_net"].status == "failed"
    assert "NonFiniteLossError" in status["nan_net"].error and "iteration 0" in status["nan_net"].error
    assert status["bicubic"].status == "ok"
    store = ResultStore(dirs["results_dir"])
    assert store.read("smoke", "sr", "kather_x4", "nan_net").status == "failed"
    # a failed method is retried on the next run; the finished one is not
    again = run_task("sr", "smoke", ["nan_net", "bicubic"], ["kather_x4"], progress=False, **dirs)
    assert [r.method for r in again] == ["nan_net"]
    assert store.is_done("smoke", "sr", "kather_x4", "bicubic")


def test_unknown_method_and_dataset_are_one_clear_error():
    with pytest.raises(ValueError, match=r"unknown method\(s\) \['nope'\].*known are"):
        run_task("sr", "smoke", ["nope"], progress=False)
    with pytest.raises(ValueError, match="unknown dataset"):
        run_task("sr", "smoke", ["bicubic"], ["mars"], progress=False)
    with pytest.raises(ValueError, match="unknown task"):
        run_task("teleport", "smoke")


def test_missing_data_is_recorded_with_its_source_and_earlier_results_stay(dirs, monkeypatch, tmp_path):
    run_task("sr", "smoke", ["bicubic"], ["kather_x2"], progress=False, **dirs)
    monkeypatch.setenv("MIRBENCH_DATA", str(tmp_path / "empty"))
    rec = run_task("sr", "smoke", ["bicubic"], ["crchisto_x4"], progress=False, **dirs)[0]
    assert rec.status == "failed" and "MissingDataError" in rec.error
    assert "CRCHistoPhenotypes not found" in rec.error and "Warwick" in rec.error
    assert ResultStore(dirs["results_dir"]).is_done("smoke", "sr", "kather_x2", "bicubic")
    with pytest.raises(MissingDataError, match="make data DATASET=kather"):
        from datamodules.kather import list_patches
        list_patches("NCT-CRC-HE-100K")


def test_paper_profile_fails_clearly_without_vgg_weights(dirs):
    rec = run_task("sr", "paper", ["esrgan"], progress=False, **dirs)[0]
    assert rec.status == "failed"
    assert "MissingWeightsError" in rec.error and "vgg19-dcbb9e9d.pth" in rec.error


def test_corrupt_and_wrong_size_images_are_one_clear_error(dirs, monkeypatch, tmp_path, shared_data):
    """A copy of the Kather sample layout in tmp with one undecodable and one resized patch."""
    from PIL import Image
    src = sorted((shared_data / "kather/CRC-VAL-HE-7K").glob("*/*.png"))
    root = tmp_path / "data"
    for p in src:
        dst = root / "kather/CRC-VAL-HE-7K" / p.parent.name / p.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(p.read_bytes())
    monkeypatch.setenv("MIRBENCH_DATA", str(root))
    from datamodules.kather import KatherSRDataModule
    dm = KatherSRDataModule(release="CRC-VAL-HE-7K", n_patches=None, split=(0.6, 0.1, 0.3))
    dm.setup()
    victim = dm.test_set.hr_paths[0]
    victim.write_bytes(victim.read_bytes()[:200])  # truncated PNG
    rec = run_task("sr", "smoke", ["bicubic"], ["kather_x4"], progress=False, **dirs)[0]
    assert rec.status == "failed" and "CorruptImageError: cannot decode image" in rec.error and victim.name in rec.error
    Image.open(src[0]).resize((100, 100)).save(victim)
    rec = run_task("sr", "smoke", ["bicubic"], ["kather_x4"], progress=False, **dirs)[0]
    assert rec.status == "failed" and "is 100x100, expected 224x224" in rec.error
