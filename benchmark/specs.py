"""The contracts between the runner and the tasks: what a method and a dataset must provide."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal

import lightning as L

Profile = Literal["smoke", "paper"]
KINDS = ("proposed", "baseline", "training-free", "ablation")
# how faithful a row is to its source: from its paper / official code; rebuilt from a description
# (e.g. an abstract) without code; its idea hosted inside another network; changed to fit the task's data
FIDELITIES = ("faithful", "reconstructed", "hosted", "adapted")


@dataclass(frozen=True)
class EvalConvention:
    """How a dataset's metrics are computed; recorded in every result row."""

    space: str = "y"          # 'y' (MATLAB rgb2ycbcr BT.601 limited range), 'rgb' or 'gray'
    crop: int = 0             # border shaved before PSNR/SSIM (SR: = scale)
    niqe: bool = True         # also compute NIQE (and Ma / PI where the Ma model is present)
    region: bool = False      # also report PSNR/SSIM inside the mask (inpainting)

    def describe(self) -> str:
        space = {"y": "Y (BT.601 limited, MATLAB rgb2ycbcr)", "rgb": "RGB", "gray": "gray"}[self.space]
        return (f"{space}; border crop {self.crop}px; SSIM Gaussian 11/1.5; 8-bit rounded outputs; "
                f"mean of per-image scores")


@dataclass(frozen=True)
class TrainPlan:
    """How long and on what a method trains.  max_steps == 0 means training-free (test only)."""

    max_steps: int = 0
    batch_size: int = 16
    patch_size: int = 0                  # HR training patch (0 = whole images)
    val_every_n_steps: int | None = None
    ckpt_every_n_steps: int | None = None  # None: the profile's default
    notes: str = ""                      # e.g. "VGG19 randomly initialised (smoke)"


@dataclass(frozen=True)
class BuildContext:
    """What a method builder may look at."""

    task: str
    dataset: str
    profile: Profile
    scale: int | None
    in_channels: int
    weights_dir: Path
    seed: int = 0
    init_checkpoint: Path | None = None          # final checkpoint of MethodSpec.init_from (set by the runner)


@dataclass(frozen=True)
class MethodSpec:
    """One row family of a leaderboard: a registered method."""

    label: str                                   # as the paper prints it
    kind: str                                    # one of KINDS
    build: Callable[[BuildContext], tuple[L.LightningModule, TrainPlan]]
    paper: str                                   # key in leaderboards/reported.yaml
    datasets: tuple[str, ...]                    # dataset keys (task registry) it runs on
    table: str = "Table 1"                       # the paper's table it belongs to (e.g. "Table 2: attention")
    needs: tuple[str, ...] = ()                  # pretrained files required by the paper profile
    fidelity: str = "faithful"                   # one of FIDELITIES, shown in the leaderboard notes
    fidelity_note: str = ""                      # what is reconstructed / hosted / adapted, in a few words
    protocol: str = "table"                      # "table": the paper table's one training protocol;
                                                 # anything else (e.g. "own recipe") is a labelled variant
    init_from: str | None = None                 # method key (same task and dataset) whose final trained network
                                                 # initialises this one: the runner trains it first and passes
                                                 # its final checkpoint as ctx.init_checkpoint
    same_as: str | None = None                   # the same configuration as another method: not trained again;
                                                 # the leaderboard shows that run under this row's label/table

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind {self.kind!r} not in {KINDS}")
        if self.fidelity not in FIDELITIES:
            raise ValueError(f"fidelity {self.fidelity!r} not in {FIDELITIES}")


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset (at one scale) of a task."""

    label: str
    reported_key: str                            # dataset key in reported.yaml
    datamodule: Callable[["BuildContext", TrainPlan], L.LightningDataModule]
    eval: EvalConvention = field(default_factory=EvalConvention)
    scale: int | None = None
    in_channels: int = 3
    # a batch of the paper profile's shapes for `run --dry-run` where the full dataset is absent:
    # (ctx, plan, batch_size) -> the dict a training batch of the DataModule would be
    example_batch: Callable[["BuildContext", TrainPlan, int], dict] | None = None
