"""Trainer callbacks of the runner."""
from __future__ import annotations

import math

import lightning as L
import torch


class NonFiniteLossError(FloatingPointError):
    pass


class FiniteLossGuard(L.Callback):
    """Stop a run with one clear error as soon as the training loss is NaN or infinite."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is None:
            return
        value = float(loss.detach()) if isinstance(loss, torch.Tensor) else float(loss)
        if not math.isfinite(value):
            steps = getattr(pl_module, "optimizer_steps_per_batch", 1)
            iteration = max(trainer.global_step - 1, 0) // steps  # the step has already been counted
            raise NonFiniteLossError(f"training loss became {value} at iteration {iteration} "
                                     f"(batch {batch_idx}); "
                                     "the last good checkpoint is kept, the run is marked failed")
