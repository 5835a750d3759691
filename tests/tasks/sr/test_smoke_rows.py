"""Smoke rows that mean something: the smoke PathImgSR split shows the same stains in training and test
(RCAN's blue cast came from training on one scanner's slide and testing on another's), and
:func:`assert_plausible_colours` catches a constant (pure white) or colour-shifted output."""
from pathlib import Path

import pytest
import torch

from benchmark.specs import BuildContext
from tasks.sr.registry import DATASETS, METHODS


def colour_report(pred: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """Largest per-channel mean difference (8-bit levels) and the output/target contrast ratio (std)."""
    shift = ((pred.mean((0, 2, 3)) - target.mean((0, 2, 3))).abs().max() * 255).item()
    contrast = (pred.std((2, 3)).mean() / target.std((2, 3)).mean()).item()
    return {"shift": shift, "contrast": contrast}


def assert_plausible_colours(pred: torch.Tensor, target: torch.Tensor, max_shift: float = 10.0) -> None:
    rep = colour_report(pred, target)
    assert rep["contrast"] > 0.5, f"near-constant output: {rep}"
    assert rep["shift"] < max_shift, f"colour-shifted output: {rep}"


def test_the_check_catches_constant_and_colour_shifted_outputs():
    torch.manual_seed(0)
    target = torch.rand(2, 3, 16, 16)
    assert_plausible_colours(target.clone(), target)
    with pytest.raises(AssertionError, match="near-constant"):
        assert_plausible_colours(torch.ones_like(target), target)           # pure white
    blue = target.clone()
    blue[:, 2] = (blue[:, 2] + 0.1).clamp(0, 1)
    with pytest.raises(AssertionError, match="colour-shifted"):
        assert_plausible_colours(blue, target)


@pytest.fixture(scope="module")
def pathimgsr_smoke(tmp_path_factory, shared_data):
    mp = pytest.MonkeyPatch()
    mp.setenv("MIRBENCH_CACHE", str(tmp_path_factory.mktemp("cache")))
    ctx = BuildContext("sr", "pathimgsr_x4", "smoke", 4, 3, Path("/nonexistent-weights"))
    yield ctx
    mp.undo()


def test_smoke_pathimgsr_trains_and_tests_on_the_same_stains(pathimgsr_smoke):
    module, plan = METHODS["rcan"].build(pathimgsr_smoke)
    dm = DATASETS["pathimgsr_x4"].datamodule(pathimgsr_smoke, plan)
    dm.setup("fit")
    train = torch.stack([dm.train_set[i]["hr"].mean((1, 2)) for i in range(len(dm.train_set))]).mean(0)
    test = torch.stack([dm.test_set[i]["hr"].mean((1, 2)) for i in range(len(dm.test_set))]).mean(0)
    assert ((train - test).abs().max() * 255) < 15
