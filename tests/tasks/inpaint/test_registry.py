from pathlib import Path

import pytest
import torch

from benchmark.reported import reported_for
from benchmark.specs import BuildContext
from tasks.inpaint import registry
from tasks.inpaint.module import InpaintModule

MINE = [k for k in registry.METHODS if k.startswith("mssa_gan") or registry.METHODS[k].kind == "training-free"]


def _ctx(ds="kather_inpaint", profile="smoke"):
    return BuildContext("inpaint", ds, profile, None, 3, Path("/nonexistent"), 0)


def test_both_protocols_are_labelled_datasets():
    assert "'scale'" in registry.DATASETS["kather_inpaint"].label
    assert "'fill'" in registry.DATASETS["kather_inpaint_fill"].label
    conv = registry.DATASETS["kather_inpaint"].eval
    assert (conv.space, conv.crop, conv.region, conv.niqe) == ("rgb", 0, True, False)
    assert not reported_for("kather_inpaint_fill", None, "mssa_gan")  # the blind protocol has no reported numbers


@pytest.mark.parametrize("key", ["kather_inpaint", "kather_inpaint_fill"])
def test_example_batch_has_paper_shapes(key):
    batch = registry.DATASETS[key].example_batch(_ctx(key, "paper"), None, 64)
    assert batch["image"].shape == (64, 3, 128, 128) and batch["mask"].shape == (64, 1, 128, 128)
    assert torch.all(batch["mask"].flatten(1).sum(1) == 64 * 64)


@pytest.mark.parametrize("key", MINE)
def test_my_methods_build_in_smoke_and_have_reported_numbers(key):
    spec = registry.METHODS[key]
    module, plan = spec.build(_ctx())
    assert isinstance(module, InpaintModule) and plan.notes and "smoke split" in plan.notes
    if spec.kind == "training-free":
        assert plan.max_steps == 0 and spec.table == "training-free"
    else:
        assert plan.max_steps > 0 and spec.needs == ("vgg16",) and spec.fidelity == "reconstructed"
        assert set(reported_for("kather_inpaint", None, key)) >= {"psnr", "ssim"}, key


def test_scale_inverse_only_under_the_scale_protocol():
    assert registry.METHODS["scale_inverse"].datasets == ("kather_inpaint",)
    assert set(registry.METHODS["mssa_gan"].datasets) == set(registry.DATASETS)
