import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def _shared_datasets() -> Path:
    env = os.environ.get("MIRBENCH_DATA")
    return Path(env) if env else REPO.parent / "shared" / "datasets"


os.environ["MIRBENCH_DATA"] = str(_shared_datasets())  # also for module-scoped fixtures
os.environ.setdefault("WANDB_MODE", "offline")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data samples (../shared/datasets, or MIRBENCH_DATA). Tests read them, never copy them."""
    root = _shared_datasets()
    if not root.is_dir():
        pytest.fail(f"real data samples not found at {root}: set MIRBENCH_DATA=../shared/datasets")
    return root


@pytest.fixture(autouse=True)
def _data_env(monkeypatch, tmp_path):
    """Every test sees MIRBENCH_DATA = the shared samples and an empty MIRBENCH_WEIGHTS."""
    monkeypatch.setenv("MIRBENCH_DATA", str(_shared_datasets()))
    monkeypatch.setenv("MIRBENCH_WEIGHTS", str(tmp_path / "no-weights"))
    monkeypatch.setenv("WANDB_MODE", "offline")
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def stand_in_vgg_weights(tmp_path_factory) -> Path:
    """A MIRBENCH_WEIGHTS folder with stand-in torchvision VGG16/VGG19 files (random weights, conv part
    only, which is all VGGFeatures reads): builds take the pretrained-weights path, as with a user's files.
    Tests use it for structure and loss wiring, never for a metric value."""
    from torchvision.models.vgg import cfgs, make_layers

    from benchmark.weights import weight_path
    root = tmp_path_factory.mktemp("weights")
    for arch, cfg in (("vgg16", "D"), ("vgg19", "E")):
        torch.manual_seed(0)
        state = {f"features.{k}": v for k, v in make_layers(cfgs[cfg]).state_dict().items()}
        torch.save(state, weight_path(arch, root))
    return root
