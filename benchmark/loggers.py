"""Experiment loggers: CSV by default; W&B (offline unless the user configures otherwise)."""
from __future__ import annotations

import os
from pathlib import Path

from lightning.pytorch.loggers import CSVLogger, Logger


def make_logger(kind: str, run_dir: Path, name: str, config: dict) -> Logger:
    if kind == "csv":
        return CSVLogger(save_dir=str(run_dir), name="logs", version="")
    if kind == "wandb":
        from lightning.pytorch.loggers import WandbLogger
        # never hang without network: offline unless WANDB_MODE says otherwise
        mode = os.environ.setdefault("WANDB_MODE", "offline")
        logger = WandbLogger(project=os.environ.get("WANDB_PROJECT", "mirbench"), name=name,
                             save_dir=str(run_dir), offline=mode == "offline", config=config,
                             group=config.get("task"), job_type=config.get("profile"))
        return logger
    raise ValueError(f"unknown logger {kind!r}: expected 'csv' or 'wandb'")


def log_sample_grid(logger: Logger, key: str, grid) -> None:
    """Send a (3, H, W) [0, 1] grid (input | output | target) to W&B; CSV runs save a PNG instead."""
    if type(logger).__name__ == "WandbLogger":
        logger.log_image(key=key, images=[grid.permute(1, 2, 0).numpy()], caption=["input | output | target"])
