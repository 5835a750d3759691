"""Pretrained files a user provides under MIRBENCH_WEIGHTS (nothing is downloaded at run time)."""
from __future__ import annotations

from pathlib import Path

from datamodules.base import weights_root

# name -> (relative path under MIRBENCH_WEIGHTS, where a user gets it)
KNOWN = {
    "vgg19": ("vgg19-dcbb9e9d.pth",
              "torchvision's ImageNet VGG19 (download.pytorch.org/models/vgg19-dcbb9e9d.pth)"),
    "vgg16": ("vgg16-397923af.pth",
              "torchvision's ImageNet VGG16 (download.pytorch.org/models/vgg16-397923af.pth)"),
    "nrqm": ("nrqm/NRQM_model.mat",
             "Ma et al.'s NRQM model (github chaoma99/sr-metric model.mat, or pyiqa's converted NRQM_model.mat)"),
}


class MissingWeightsError(FileNotFoundError):
    def __init__(self, name: str, path: Path, source: str, why: str = ""):
        super().__init__(f"pretrained file '{name}' not found at {path}{' (' + why + ')' if why else ''}. "
                         f"Put it there (or set MIRBENCH_WEIGHTS); source: {source}.")
        self.name, self.path = name, path


def weight_path(name: str, root: Path | None = None) -> Path:
    rel, _ = KNOWN[name]
    return (root or weights_root()) / rel


def require(name: str, root: Path | None = None, why: str = "") -> Path:
    """Path of a known pretrained file; raises MissingWeightsError with its source if absent."""
    p = weight_path(name, root)
    if not p.is_file():
        raise MissingWeightsError(name, p, KNOWN[name][1], why)
    return p
