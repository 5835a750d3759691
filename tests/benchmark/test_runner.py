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
    # the 32-patch sample split 8:1:1 within each of the 8 classes, then the smoke test share: 16 images
    assert by[("kather_x4", "bicubic")].metrics["n_images"] == 16
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


def _tiny_build(steps=2):
    from tests.benchmark._tiny import TinySR

    def build(ctx):
        return SRModule(TinySR(ctx.scale), ctx.scale, lr=1e-3), TrainPlan(max_steps=steps, batch_size=2, patch_size=32,
                                                                          ckpt_every_n_steps=2)
    return build


def test_init_from_trains_the_dependency_first_and_passes_its_final_checkpoint(dirs, monkeypatch):
    monkeypatch.setenv("MIRBENCH_TEST_LIMIT", "2")
    task = load_task("sr")
    seen = {}

    def build_ft(ctx):
        module, plan = _tiny_build()(ctx)
        seen["init"] = ctx.init_checkpoint
        state = torch.load(ctx.init_checkpoint, map_location="cpu", weights_only=False)["state_dict"]
        module.net.load_state_dict({k[len("net."):]: v for k, v in state.items() if k.startswith("net.")})
        seen["w"] = module.net.body[0].weight.detach().clone()
        return module, plan

    monkeypatch.setitem(task.METHODS, "pre", MethodSpec("Pre", "proposed", _tiny_build(), "none", ("kather_x4",)))
    monkeypatch.setitem(task.METHODS, "ft", MethodSpec("FT", "proposed", build_ft, "none", ("kather_x4",),
                                                       init_from="pre"))
    recs = run_task("sr", "smoke", ["ft"], ["kather_x4"], progress=False, **dirs)
    assert [(r.method, r.status) for r in recs] == [("pre", "ok"), ("ft", "ok")]
    final = dirs["runs_dir"] / "smoke/sr/kather_x4/pre/checkpoints/final.ckpt"
    assert seen["init"] == final and recs[1].train["init_from"] == "pre"
    assert torch.equal(seen["w"], torch.load(final, weights_only=False)["state_dict"]["net.body.0.weight"])
    assert recs[0].train["curve"]["iteration"] == [1, 2] and recs[0].train["global_batch"] == 2
    assert run_task("sr", "smoke", ["ft"], ["kather_x4"], progress=False, **dirs) == []  # all done
    final.unlink()  # ft is done: its dependency is not retrained for nothing
    assert run_task("sr", "smoke", ["ft"], ["kather_x4"], progress=False, **dirs) == []
    again = run_task("sr", "smoke", ["ft"], ["kather_x4"], force=True, progress=False, **dirs)
    assert [r.method for r in again] == ["pre", "ft"] and final.is_file()  # ft must rerun: pre is rebuilt first


def test_a_failed_rerun_keeps_the_ok_result_and_its_checkpoints(dirs, monkeypatch, tmp_path):
    monkeypatch.setenv("MIRBENCH_TEST_LIMIT", "2")
    task = load_task("sr")
    monkeypatch.setitem(task.METHODS, "tiny", MethodSpec("Tiny", "baseline", _tiny_build(), "none", ("kather_x4",)))
    ok = run_task("sr", "smoke", ["tiny"], ["kather_x4"], progress=False, **dirs)[0]
    run = dirs["runs_dir"] / "smoke/sr/kather_x4/tiny"
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == ["final.ckpt", "iter_000002.ckpt", "last.ckpt"]
    final = (run / "checkpoints/final.ckpt").read_bytes()

    def broken(ctx):
        raise ValueError("a config mistake")

    monkeypatch.setitem(task.METHODS, "tiny", MethodSpec("Tiny", "baseline", broken, "none", ("kather_x4",)))
    failed = run_task("sr", "smoke", ["tiny"], ["kather_x4"], force=True, progress=False, **dirs)[0]
    assert failed.status == "failed" and "a config mistake" in failed.error
    store = ResultStore(dirs["results_dir"])
    kept = store.read("smoke", "sr", "kather_x4", "tiny")
    assert kept.status == "ok" and kept.metrics == ok.metrics
    assert store.failure_path("smoke", "sr", "kather_x4", "tiny").is_file()
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == names
    assert (run / "checkpoints/final.ckpt").read_bytes() == final and not (run / "checkpoints.previous").exists()
    rows = leaderboard.build_rows(store.load("smoke", "sr"))
    assert "a later rerun failed (ValueError)" in rows[0]["notes"]
    # a successful --force rerun replaces both, and the failure note goes
    monkeypatch.setitem(task.METHODS, "tiny", MethodSpec("Tiny", "baseline", _tiny_build(), "none", ("kather_x4",)))
    again = run_task("sr", "smoke", ["tiny"], ["kather_x4"], force=True, progress=False, **dirs)[0]
    assert again.status == "ok" and again.metrics == ok.metrics  # deterministic
    assert not store.failure_path("smoke", "sr", "kather_x4", "tiny").exists()
    assert not (run / "checkpoints.previous").exists()
