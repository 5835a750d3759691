"""The one training protocol of MASRGAN's Tables 1-3 (Chen et al. 2023, Sec. 4.2), shared by every
PathImgSR row (RCAN, IGNN, DCANet, QEGAN, WA-SRGAN, ESRGAN, SPSR, MASRNet, MASRGAN and the Table 2/3
variants), and the learning-rate schedule every SR module uses.

Sec. 4.2: "the Adam optimizer ... learning rate 1e-4, halved every 2000 iterations.  The batch size
is 16.  No data augmentation ... All the models are trained on the 10,000 LR-HR training pairs."
The paper states neither the number of iterations nor the patch size; we choose, for every row alike:

* PSNR-oriented rows: 20,000 iterations (ten halving periods: the last 2,000 run at lr 1e-4 / 2^9,
  where further steps change little);
* GAN rows: the generator's PSNR phase (the same 20,000 iterations on the pixel loss: MASRGAN starts
  from the trained MASRNet, the baseline GANs pre-train their own generator in the same way), then
  20,000 GAN iterations with the halving restarted at lr 1e-4, as a fresh run from the trained
  generator would be;
* HR training patch 128 (LR 32): the size ESRGAN's VGG128 discriminator of Table 3 is built for and
  the ESRGAN/BasicSR default; every method sees the same pixels per batch.
* Optimiser details the paper leaves open (Adam betas, loss weights, discriminators) stay each
  method's own.

A baseline's own published recipe (e.g. RCAN's 1e6 iterations of 192 px patches) is a separately
registered variant (MethodSpec.protocol = "own recipe"), never a Table row.

The smoke profile keeps the same structure at CPU size (tiny widths; a short PSNR phase long enough
that a PSNR-oriented row beats bicubic on the smoke test images, and a short GAN phase after it).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from benchmark.specs import BuildContext


@dataclass(frozen=True)
class TableProtocol:
    psnr_steps: int          # pixel-loss iterations (the PSNR rows; the GAN rows' generator phase)
    gan_steps: int           # adversarial iterations after it (GAN rows)
    batch: int
    patch: int               # HR training patch
    lr: float
    halve_every: int         # lr x 0.5 every so many iterations (restarted when the GAN phase begins)
    gan_lr: float            # the lr the GAN phase restarts at

    def psnr_milestones(self) -> tuple[int, ...]:
        return halving_milestones(self.psnr_steps, self.halve_every)

    def gan_milestones(self, start: int) -> tuple[int, ...]:
        """Milestones of a GAN phase that begins at iteration ``start`` (restart: use with ``restart_at``)."""
        return tuple(start + m for m in halving_milestones(self.gan_steps, self.halve_every))


MASRGAN_PAPER = TableProtocol(psnr_steps=20_000, gan_steps=20_000, batch=16, patch=128, lr=1e-4, halve_every=2_000,
                              gan_lr=1e-4)
# smoke: lr 1e-3 (10x) and 600 iterations of 64 px patches (the smallest size every Table 3 discriminator
# takes) so tiny networks learn from scratch in a minute; one halving; then a short GAN phase at the
# paper's lr 1e-4: the 10x lr is for learning from scratch, and at 10x ten adversarial steps shifted the
# smoke ESRGAN's output 14 grey levels darker (-3 dB)
MASRGAN_SMOKE = TableProtocol(psnr_steps=600, gan_steps=10, batch=4, patch=64, lr=1e-3, halve_every=300,
                              gan_lr=1e-4)


def masrgan_protocol(ctx: BuildContext) -> TableProtocol:
    return MASRGAN_PAPER if ctx.profile == "paper" else MASRGAN_SMOKE


def halving_milestones(steps: int, every: int) -> tuple[int, ...]:
    """Sec. 4.2: the learning rate "was halved every 2000 iterations"."""
    return tuple(range(every, steps, every))


class StepSchedule:
    """LambdaLR factor: ``gamma`` ** (milestones passed); from iteration ``restart_at`` > 0 on, only the
    milestones after it count, so the lr restarts (a GAN phase after a PSNR phase), at ``restart_scale``
    times the base lr (ESRGAN: PSNR phase at 2e-4, GAN phase at 1e-4)."""

    def __init__(self, milestones: Sequence[int], gamma: float, restart_at: int = 0, restart_scale: float = 1.0):
        self.milestones, self.gamma = sorted(milestones), gamma
        self.restart_at, self.restart_scale = restart_at, restart_scale

    def __call__(self, iteration: int) -> float:
        restarted = bool(self.restart_at) and iteration >= self.restart_at
        start = self.restart_at if restarted else 0
        factor = self.gamma ** sum(1 for m in self.milestones if start < m <= iteration)
        return factor * self.restart_scale if restarted else factor


RECIPES = ("table", "own")


def psnr_training(ctx: BuildContext, own: dict, recipe: str = "table") -> dict:
    """Training settings of a PSNR-oriented row: steps, batch, patch, lr, milestones, restart_at.

    ``recipe`` 'table': the Table protocol above; 'own': the method's own recipe ``own`` (its file's
    PAPER or SMOKE dict: steps, batch, patch, lr, milestones)."""
    if recipe == "table":
        p = masrgan_protocol(ctx)
        return dict(steps=p.psnr_steps, batch=p.batch, patch=p.patch, lr=p.lr, milestones=p.psnr_milestones(),
                    restart_at=0)
    if recipe != "own":
        raise ValueError(f"recipe {recipe!r} not in {RECIPES}")
    return dict(steps=own["steps"], batch=own["batch"], patch=own["patch"], lr=own["lr"],
                milestones=tuple(own["milestones"]), restart_at=0)


def gan_training(ctx: BuildContext, own: dict, recipe: str = "table") -> dict:
    """Training settings of a GAN row that pre-trains its own generator: pretrain_steps, gan_steps,
    batch, patch, lr, milestones (absolute iterations), restart_at (the GAN phase's first iteration),
    restart_scale (GAN-phase lr / lr).

    'table': the Table protocol's PSNR phase, then its GAN phase with the halving restarted;
    'own': ``own``'s pretrain_steps / gan_steps / milestones (GAN-phase milestones, counted from the
    GAN phase's start, as the papers state them), no restart (the one schedule runs on)."""
    if recipe == "table":
        p = masrgan_protocol(ctx)
        return dict(pretrain_steps=p.psnr_steps, gan_steps=p.gan_steps, batch=p.batch, patch=p.patch, lr=p.lr,
                    milestones=p.psnr_milestones() + p.gan_milestones(p.psnr_steps), restart_at=p.psnr_steps,
                    restart_scale=p.gan_lr / p.lr)
    if recipe != "own":
        raise ValueError(f"recipe {recipe!r} not in {RECIPES}")
    return dict(pretrain_steps=own["pretrain_steps"], gan_steps=own["gan_steps"], batch=own["batch"],
                patch=own["patch"], lr=own["lr"],
                milestones=tuple(m + own["pretrain_steps"] for m in own["milestones"]), restart_at=0,
                restart_scale=1.0)
