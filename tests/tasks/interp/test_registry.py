"""Every registered interp method: cites SSAN rows present in reported.yaml, builds in both profiles, its
paper profile stops on missing pretrained files; the datasets give paper-shaped dry-run batches."""
import pytest

from benchmark.reported import load_reported
from benchmark.specs import BuildContext, TrainPlan
from benchmark.weights import MissingWeightsError
from tasks.interp.registry import DATASETS, METHODS, METRIC_COLS

REPORTED = {(e["paper"], e["method"]) for e in load_reported()["entries"]}


@pytest.mark.parametrize("key", sorted(METHODS))
def test_method_is_registered_consistently(key):
    spec = METHODS[key]
    assert spec.datasets and all(d in DATASETS for d in spec.datasets)
    assert "cremi_triplet_c" in spec.datasets
    if spec.kind != "training-free":
        assert (spec.paper, key) in REPORTED, f"{key} has no reported number in {spec.paper}"


@pytest.mark.parametrize("key", sorted(k for k, s in METHODS.items() if s.needs))
def test_paper_profile_needs_its_pretrained_files(key, tmp_path):
    ctx = BuildContext("interp", "cremi_triplet_c", "paper", None, 1, tmp_path / "no-weights")
    with pytest.raises(MissingWeightsError):
        METHODS[key].build(ctx)


@pytest.mark.parametrize("key", ["average", "copy_prev"])
def test_training_free_rows_plan_no_training(key, tmp_path):
    module, plan = METHODS[key].build(BuildContext("interp", "cremi_triplet_c", "smoke", None, 1, tmp_path))
    assert plan.max_steps == 0 and not module.trainable


def test_datasets_and_columns():
    assert [k for k, _, _ in METRIC_COLS] == ["psnr", "ssim", "ie", "dice", "f1"]
    for key, spec in DATASETS.items():
        assert spec.in_channels == 1 and spec.eval.space == "gray" and spec.eval.crop == 0
        ctx = BuildContext("interp", key, "paper", None, 1, None)
        b = spec.example_batch(ctx, TrainPlan(max_steps=1, batch_size=3), 3)
        assert b["prev"].shape == b["target"].shape == b["next"].shape == (3, 1, 512, 512)
