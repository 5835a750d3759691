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
        if spec.protocol == "table":  # labelled variants (the composited output) have no reported number
            assert set(reported_for("kather_inpaint", None, key)) >= {"psnr", "ssim"}, key
        else:
            assert not reported_for("kather_inpaint", None, key), key


def test_table4_shows_the_full_model_as_the_table3_run():
    full = registry.METHODS["mssa_gan_full"]
    assert (full.same_as, full.table, full.label) == ("mssa_gan", "Table 4", registry.METHODS["mssa_gan"].label)
    assert reported_for("kather_inpaint", None, "mssa_gan_full")["psnr_region"]["value"] == 40.23
    from benchmark.leaderboard import alias_rows
    row = {"method": "mssa_gan", "dataset": "kather_inpaint", "notes": "n", "psnr": 20.0}
    (alias,) = alias_rows("inpaint", [row])
    assert (alias["method"], alias["table"], alias["psnr"]) == ("mssa_gan_full", "Table 4", 20.0)


def test_composited_row_is_a_test_only_variant_of_the_trained_mssa_gan():
    spec = registry.METHODS["mssa_gan_composited"]
    assert spec.init_from == "mssa_gan" and spec.protocol != "table" and "composited" in spec.label


def test_scale_inverse_only_under_the_scale_protocol():
    assert registry.METHODS["scale_inverse"].datasets == ("kather_inpaint",)
    assert set(registry.METHODS["mssa_gan"].datasets) == set(registry.DATASETS)
