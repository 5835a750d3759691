"""The one training protocol of SSAN's Tables 1, 3 and 4 (shared by SSAN, its variants and the
retrained baselines SepConv-Ls / DAIN-Ls: the paper retrains them "with the style balance loss ... under
the same experimental environment", heading "Comparisons with state-of-the-arts").

Paper profile: loss 1e6 L_bs + L_f + Charbonnier (:func:`tasks.interp.module.ssan_loss`, VGG16 from
MIRBENCH_WEIGHTS), Adam 1e-3, 30 epochs then x0.1 for 20, batch 3, 512x512 triplets
(:func:`tasks.interp.module.paper_schedule`).  Smoke profile: the same loss (random VGG16 allowed, noted),
Adam 1e-3 without decay, batch 2 of 64x64 crops, a few dozen steps.
"""
from __future__ import annotations

from torch import nn

from benchmark.specs import BuildContext, TrainPlan
from tasks.interp.module import PAPER_BATCH, PAPER_LR, InterpModule, paper_schedule, ssan_loss

PAPER_PATCH = 512
SMOKE = dict(batch=2, patch=64, lr=1e-3)


def table_protocol(ctx: BuildContext, net: nn.Module, smoke_steps: int, notes: str = "",
                   smoke_batch: int = SMOKE["batch"]) -> tuple[InterpModule, TrainPlan]:
    """(module, plan) for a network trained under the paper tables' protocol in ``ctx.profile``."""
    loss = ssan_loss(ctx)
    parts = [notes] if notes else []
    if loss.random_vgg:
        parts.append("VGG16 random (smoke): 1e6*L_bs ~ 1e-5, the loss is essentially Charbonnier + L_f")
    extra = getattr(net, "random_init_note", "")
    if extra:
        parts.append(extra)
    if ctx.profile == "paper":
        steps, milestones = paper_schedule(ctx.dataset)
        module = InterpModule(net, loss, lr=PAPER_LR, milestones=milestones, gamma=0.1)
        return module, TrainPlan(max_steps=steps, batch_size=PAPER_BATCH, patch_size=PAPER_PATCH,
                                 notes="; ".join(parts))
    module = InterpModule(net, loss, lr=SMOKE["lr"], milestones=(), gamma=0.1)
    return module, TrainPlan(max_steps=smoke_steps, batch_size=smoke_batch, patch_size=SMOKE["patch"],
                             ckpt_every_n_steps=smoke_steps, notes="; ".join(parts))
