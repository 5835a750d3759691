"""The one training protocol of SSAN's Tables 1, 3 and 4 (shared by SSAN, its variants and the
retrained baselines SepConv-Ls / DAIN-Ls: the paper retrains them "with the style balance loss ... under
the same experimental environment", heading "Comparisons with state-of-the-arts").

Paper profile: loss 1e6 L_bs + L_f + Charbonnier (:func:`tasks.interp.module.ssan_loss`, VGG16 from
MIRBENCH_WEIGHTS), Adam 1e-3, 30 epochs then x0.1 for 20, batch 3, 512x512 triplets
(:func:`tasks.interp.module.paper_schedule`).  Smoke profile: the same loss where VGG16's weights are
present, else Charbonnier alone (the row says so), Adam 1e-3 then x0.1 for the last 40 % of the steps
(the paper's 30 + 20 epochs in proportion, counted in steps), batch 4 of 64x64 crops,
a few hundred steps (each method file sets its count: enough for the PSNR-oriented rows to beat the
trivial baselines where they can, within the 15-minute smoke bench).
"""
from __future__ import annotations

from torch import nn

from benchmark.specs import BuildContext, TrainPlan
from tasks.interp.module import PAPER_BATCH, PAPER_DECAY_EPOCH, PAPER_EPOCHS, PAPER_LR, SMOKE_NO_VGG_NOTE, InterpModule, paper_schedule, ssan_loss

PAPER_PATCH = 512
SMOKE = dict(batch=4, patch=64, lr=1e-3, decay_at=PAPER_DECAY_EPOCH / PAPER_EPOCHS)


def table_protocol(ctx: BuildContext, net: nn.Module, smoke_steps: int, notes: str = "",
                   smoke_batch: int = SMOKE["batch"], smoke_val_every: int | None = None) -> tuple[InterpModule, TrainPlan]:
    """(module, plan) for a network trained under the paper tables' protocol in ``ctx.profile``.
    ``smoke_val_every``: validation interval in smoke (default: the runner's 8 points per run)."""
    loss = ssan_loss(ctx)
    parts = [notes] if notes else []
    if loss.dropped_vgg:
        parts.append(SMOKE_NO_VGG_NOTE)
    elif loss.random_vgg:
        parts.append("VGG16 random (smoke): L_bs and L_f on a random VGG16")
    extra = getattr(net, "random_init_note", "")
    if extra:
        parts.append(extra)
    if ctx.profile == "paper":
        steps, milestones = paper_schedule(ctx.dataset)
        module = InterpModule(net, loss, lr=PAPER_LR, milestones=milestones, gamma=0.1)
        return module, TrainPlan(max_steps=steps, batch_size=PAPER_BATCH, patch_size=PAPER_PATCH,
                                 notes="; ".join(parts))
    decay_at = round(SMOKE["decay_at"] * smoke_steps)
    module = InterpModule(net, loss, lr=SMOKE["lr"], milestones=(decay_at,), gamma=0.1, milestone_interval="step")
    return module, TrainPlan(max_steps=smoke_steps, batch_size=smoke_batch, patch_size=SMOKE["patch"],
                             ckpt_every_n_steps=smoke_steps, val_every_n_steps=smoke_val_every,
                             notes="; ".join(parts))
