"""`run --profile paper --dry-run`: paper-size build + 2 iterations + one test image, where the paper
data is absent (CI): the smoke samples at the paper patch; FLOPs against a hand count."""
import pytest

from benchmark import dryrun
from benchmark.registry import load_task
from benchmark.specs import MethodSpec, TrainPlan
from tasks.sr.module import SRModule
from tests.benchmark._tiny import TinySR

PAPER_STEPS, PAPER_BATCH, PATCH = 1000, 4, 32


def _build(ctx):
    assert ctx.profile == "paper"
    return SRModule(TinySR(ctx.scale), ctx.scale), TrainPlan(max_steps=PAPER_STEPS, batch_size=PAPER_BATCH,
                                                            patch_size=PATCH)


def _flops_per_image() -> int:
    """TinySR on an 8x8 LR crop (32 px HR / 4): conv 3->8 and 8->48, 3x3; a multiply-add = 2 FLOPs.
    Backward: grad-weight for both convs, grad-input for the second only (the input needs none)."""
    conv1, conv2 = 2 * 3 * 8 * 9 * 64, 2 * 8 * 48 * 9 * 64
    return (conv1 + conv2) + (conv1 + 2 * conv2)


def test_dry_run_without_paper_data_uses_the_samples_at_the_paper_patch(monkeypatch, tmp_path):
    task = load_task("sr")
    monkeypatch.setitem(task.METHODS, "tiny", MethodSpec("Tiny", "baseline", _build, "none", ("pathimgsr_x4",)))
    monkeypatch.setitem(task.METHODS, "tiny_vgg", MethodSpec("Tiny VGG", "baseline", _build, "none",
                                                             ("pathimgsr_x4",), needs=("vgg19",)))
    rows, path = dryrun.dry_run("sr", ["bicubic", "tiny", "tiny_vgg"], ["pathimgsr_x4"], tmp_path)
    by = {r["method"]: r for r in rows}
    tiny = by["tiny"]
    assert tiny["data"].startswith("real smoke samples") and "PathImgSR" in tiny["data"]
    assert tiny["batch_used"] == dryrun.CPU_BATCH and tiny["paper_batch"] == PAPER_BATCH
    assert tiny["flops_per_iter_t"] * 1e12 == pytest.approx(_flops_per_image() * PAPER_BATCH)
    expect_h = PAPER_STEPS * _flops_per_image() * PAPER_BATCH / (dryrun.REFERENCE_TFLOPS * 1e12 * dryrun.UTILISATION) / 3600
    assert tiny["gpu_hours"] == pytest.approx(expect_h)
    assert tiny["s_per_iter"] > 0 and tiny["test_s"] > 0 and tiny["params_m"] * 1e6 == (3 * 8 * 9 + 8) + (8 * 48 * 9 + 48)
    assert by["bicubic"]["params_m"] == 0 and "flops_per_iter_t" not in by["bicubic"] and by["bicubic"]["test_psnr"] > 20
    assert "MissingWeightsError" in by["tiny_vgg"]["error"] and "vgg19-dcbb9e9d.pth" in by["tiny_vgg"]["error"]
    md = path.read_text()
    assert path.name == "sr.dryrun.md" and dryrun.REFERENCE_GPU in md and "reduced to 2 on CPU" in md
    assert "| Tiny | pathimgsr_x4 |" in md and "**failed**: MissingWeightsError" in md


def test_resize_batch_keeps_the_scale_between_images():
    import torch
    out = dryrun._resize_batch({"lr": torch.rand(1, 3, 10, 10), "hr": torch.rand(1, 3, 40, 40), "index": [0]}, 64)
    assert out["hr"].shape[-1] == 64 and out["lr"].shape[-1] == 16 and out["index"] == [0]
