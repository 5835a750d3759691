"""Manual-optimisation GAN steps shared by every task (SR, inpainting, dual SR, interpolation).

A module mixes in :class:`ManualGANSteps`, sets ``automatic_optimization = False`` and returns
``[opt_g, opt_d]`` (and optionally their schedulers) from ``configure_optimizers``; its
``training_step`` calls :meth:`pixel_phase_step` (generator pre-training) or :meth:`adversarial_step`.
The runner counts ``optimizer_steps_per_batch = 2`` Lightning steps per iteration.
"""
from __future__ import annotations

from typing import Callable

import torch


class ManualGANSteps:
    """One G step then one D step per batch, with Lightning manual optimisation."""

    optimizer_steps_per_batch = 2

    @property
    def iteration(self) -> int:
        return self.global_step // self.optimizer_steps_per_batch

    def _step_schedulers(self) -> None:
        scheds = self.lr_schedulers()
        for sched in (scheds if isinstance(scheds, list) else [scheds] if scheds is not None else []):
            sched.step()

    def pixel_phase_step(self, loss: torch.Tensor) -> dict:
        """One pre-training step of G on ``loss``; D's optimizer steps too (no grads: nothing moves)
        so both step counters, hence Lightning's global_step, stay in lock-step."""
        opt_g, opt_d = self.optimizers()
        opt_g.zero_grad()
        self.manual_backward(loss)
        opt_g.step()
        opt_d.step()
        self._step_schedulers()
        self.log("train/pix", loss, prog_bar=True)
        return {"loss": loss.detach()}

    def adversarial_step(self, g_parts: Callable[[], dict[str, torch.Tensor]],
                         d_loss_fn: Callable[[], torch.Tensor]) -> dict:
        """One G step on sum(g_parts()) with D frozen, then one D step on d_loss_fn()."""
        opt_g, opt_d = self.optimizers()
        self.discriminator.requires_grad_(False)
        parts = g_parts()
        loss_g = sum(parts.values())
        opt_g.zero_grad()
        self.manual_backward(loss_g)
        opt_g.step()
        self.discriminator.requires_grad_(True)
        loss_d = d_loss_fn()
        opt_d.zero_grad()
        self.manual_backward(loss_d)
        opt_d.step()
        self._step_schedulers()
        self.log_dict({f"train/{k}": v for k, v in parts.items()} | {"train/d": loss_d}, prog_bar=True)
        return {"loss": (loss_g + loss_d).detach()}
