"""Every registered SR method: cites a paper present in reported.yaml, builds in both profiles, and
its paper profile stops with MissingWeightsError when a pretrained file it needs is absent."""
import pytest

from benchmark.reported import load_reported
from benchmark.specs import BuildContext
from benchmark.weights import MissingWeightsError
from tasks.sr.registry import DATASETS, METHODS

REPORTED_METHODS = {(e["paper"], e["method"]) for e in load_reported()["entries"]}


@pytest.mark.parametrize("key", sorted(METHODS))
def test_method_is_registered_consistently(key):
    spec = METHODS[key]
    assert spec.datasets and all(d in DATASETS for d in spec.datasets)
    assert spec.paper in load_reported()["papers"]
    if spec.kind != "training-free":
        assert (spec.paper, key) in REPORTED_METHODS, f"{key} has no reported number in {spec.paper}"


@pytest.mark.parametrize("key", sorted(k for k, s in METHODS.items() if s.needs))
def test_paper_profile_needs_its_pretrained_files(key, tmp_path):
    ds = METHODS[key].datasets[0]
    ctx = BuildContext("sr", ds, "paper", DATASETS[ds].scale, 3, tmp_path / "no-weights")
    with pytest.raises(MissingWeightsError, match=METHODS[key].needs[0]):
        METHODS[key].build(ctx)


@pytest.mark.parametrize("key", sorted(METHODS))
def test_smoke_build_is_small_and_plans_training(key, tmp_path):
    ds = METHODS[key].datasets[0]
    module, plan = METHODS[key].build(BuildContext("sr", ds, "smoke", DATASETS[ds].scale, 3, tmp_path))
    n = sum(p.numel() for p in module.inference_net().parameters())
    assert n < 500_000, f"smoke {key} has {n} parameters"
    assert (plan.max_steps == 0) == (METHODS[key].kind == "training-free")
