"""Inpainting LightningModules: the contract every inpainting method (MSSA GAN, its Table 3 baselines,
the training-free fills) builds on.

Batch (datamodules/kather_inpaint.py): ``{"image": x, "corrupted": x_M, "mask": M, "box", "index",
"name"}``; x and x_M are (B, 3, H, W) in [0, 1] (x_M 8-bit rounded), M is (B, 1, H, W) with
**1 = hole**, ``box`` (B, 3) = (top, left, size).  Every method sees the identical x_M and M.

Networks work in [-1, 1] (tanh outputs, MSSA Sec. 3.1.1).  A method is an :class:`InpaintModule`
(generator trained on a dict of weighted loss terms) or an :class:`InpaintGANModule` (+ a
discriminator, manual optimisation through tasks/common/gan.py) wrapping its generator, and may
override these hooks:

- ``net_input(batch) -> (x_m, mask)``: x_M in [-1, 1]; ``hole_fill`` (RGB in [0, 1]) overwrites the
  hole first where the reference code does so (CE: ImageNet mean, GLCIC: data mean, ...);
  ``None`` (default) keeps x_M as it is.
- ``generate(x_m, mask) -> list[Tensor]``: the generator outputs, coarse to fine, the last one the
  full-size prediction in [-1, 1].  Default: ``self.net(x_m, mask)`` (a tensor or a list/tuple).
- ``generator_losses(batch, outs) -> dict[name, weighted term]``: default ``w_l1 * L1`` on the final
  output; the logged terms are these names.  GAN modules add ``adv`` via ``adversarial_loss``.
- ``discriminator_loss(batch, outs) -> Tensor`` (GAN modules): default ``d_loss(D(x), D(x_hat))``
  with ``gan`` in 'vanilla' / 'lsgan' / 'ragan'.  Several discriminators (GLCIC's global + local)
  live in ONE ``self.discriminator`` nn.Module (ManualGANSteps freezes/unfreezes it as a whole).
- ``generators() -> list[nn.Module]``: the networks whose cost the leaderboard reports.

``composite`` (a per-method flag, from the reference code; recorded in the hparams and the row notes
by :func:`plan_notes`) decides whether the evaluated output is ``M * G + (1 - M) * x_M`` or the raw
generator output.  ``restore`` returns (prediction, target, hole mask, corrupted input) in [0, 1].

GAN schedule (per iteration, ``InpaintGANModule.phase``): ``pretrain_steps`` generator-only steps on
the non-adversarial terms, then ``d_only_steps`` discriminator-only steps (GLCIC's T_D phase), then
one G and one D step per batch.  ``gan_weight == 0`` (an ablation without L_adv) never trains D.

Test metrics (RGB, 8-bit, no crop, per-image mean): whole-image PSNR / SSIM / RMSE (0-255), hole
PSNR (MSE over hole pixels), hole SSIM (SSIM of the hole's box crop; ``ssim_region_map`` = SSIM map
restricted to the mask), and the Y-channel PSNR / SSIM / hole PSNR beside them.
"""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.metrics.inpaint import BoxSSIM
from benchmark.metrics.psnr_ssim import PSNR, RMSE, SSIM, RegionPSNR, RegionSSIM
from benchmark.specs import EvalConvention
from tasks.common.evaluation import EvaluatedModule
from tasks.common.gan import ManualGANSteps
from tasks.common.losses import d_loss, g_loss

REGION_METRICS = ("psnr_region", "ssim_region", "ssim_region_map", "psnr_region_y")


def _module_args(obj) -> list[str]:
    """Names of the nn.Module arguments of every __init__ in the call chain of ``obj`` (kept out of hparams)."""
    names, frame = [], inspect.currentframe().f_back
    while frame is not None and frame.f_locals.get("self") is obj:
        names += [k for k, v in frame.f_locals.items() if isinstance(v, nn.Module) and k != "self"]
        frame = frame.f_back
    return names


def to_net(x: torch.Tensor) -> torch.Tensor:
    return x * 2 - 1


def from_net(x: torch.Tensor) -> torch.Tensor:
    return (x + 1) / 2


def downsample_mask(mask: torch.Tensor, size: int) -> torch.Tensor:
    """The hole at a coarser scale: a pixel is hole if any of its source pixels is (exact for 4-aligned boxes)."""
    if mask.shape[-1] == size:
        return mask
    return F.adaptive_max_pool2d(mask, size)


def build_inpaint_metrics(conv: EvalConvention) -> nn.ModuleDict:
    space = conv.space
    return nn.ModuleDict({
        "psnr": PSNR(space, conv.crop), "ssim": SSIM(space, conv.crop), "rmse": RMSE(space, conv.crop),
        "psnr_region": RegionPSNR(space, conv.crop), "ssim_region": BoxSSIM(space, conv.crop),
        "ssim_region_map": RegionSSIM(space, conv.crop),
        "psnr_y": PSNR("y", conv.crop), "ssim_y": SSIM("y", conv.crop), "psnr_region_y": RegionPSNR("y", conv.crop)})


class _Inference(nn.Module):
    """The generator(s) as one module of a (B, 4, H, W) input [x_m, mask], for the cost measurements."""

    def __init__(self, owner: "InpaintModule"):
        super().__init__()
        self.nets = nn.ModuleList(owner.generators())
        self._forward = owner.forward  # a bound method, not a submodule

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._forward(x[:, :3], x[:, 3:4])


class InpaintModule(EvaluatedModule):
    """Generator trained on a dict of weighted loss terms (default: ``w_l1`` * L1 on the final output).

    A generator without parameters is training-free: the runner only tests it.
    """

    optimizer_steps_per_batch = 1

    def __init__(self, net: nn.Module, composite: bool = False, hole_fill: Sequence[float] | None = None,
                 lr: float = 2e-4, betas: Sequence[float] = (0.5, 0.999), w_l1: float = 1.0,
                 milestones: Sequence[int] = (), gamma: float = 0.5):
        super().__init__()
        self.net = net
        self.save_hyperparameters(ignore=_module_args(self))

    # ---- what the network sees and returns
    def net_input(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        xm, mask = batch["corrupted"], batch["mask"]
        fill = self.hparams.hole_fill
        if fill is not None:
            xm = xm * (1 - mask) + torch.tensor(fill, dtype=xm.dtype, device=xm.device).view(1, -1, 1, 1) * mask
        return to_net(xm), mask

    def generate(self, x_m: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
        out = self.net(x_m, mask)
        return list(out) if isinstance(out, (list, tuple)) else [out]

    def forward(self, x_m: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.generate(x_m, mask)[-1]

    def generators(self) -> list[nn.Module]:
        return [self.net]

    def composited(self, raw: torch.Tensor, batch: dict) -> torch.Tensor:
        """M * raw + (1 - M) * x_M in [-1, 1] (known pixels pasted back)."""
        mask = batch["mask"]
        return raw * mask + to_net(batch["corrupted"]) * (1 - mask)

    def output(self, raw: torch.Tensor, batch: dict) -> torch.Tensor:
        """The evaluated image in [0, 1]: composited or raw, as the method's reference code outputs it."""
        pred, mask = from_net(raw), batch["mask"]
        return pred * mask + batch["corrupted"] * (1 - mask) if self.hparams.composite else pred

    @property
    def trainable(self) -> bool:
        return any(p.requires_grad for g in self.generators() for p in g.parameters())

    # ---- evaluation
    def restore(self, batch):
        pred = self.output(self(*self.net_input(batch)), batch)
        return pred, batch["image"], batch["mask"], batch["corrupted"]

    def inference_net(self) -> nn.Module:
        return _Inference(self)

    def example_input(self, batch: dict) -> torch.Tensor:
        x_m, mask = self.net_input(batch)
        return torch.cat([x_m[:1], mask[:1]], 1)

    def configure_evaluation(self, conv: EvalConvention, ma_model: Path | None = None) -> None:
        super().configure_evaluation(conv, ma_model)
        self.test_metrics = build_inpaint_metrics(conv)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        pred, target, mask, shown = self.restore(batch)
        pred = pred.clamp(0, 1)
        idx = torch.as_tensor(batch["index"], device=pred.device)
        for name, metric in self.test_metrics.items():
            metric.update(pred, target, idx, mask=mask if name in REGION_METRICS else None)
        for j, i in enumerate(idx.tolist()):
            if i < self.n_samples:
                self.test_samples[i] = (shown[j].detach().cpu(), pred[j].detach().cpu(), target[j].detach().cpu())

    def validation_step(self, batch, batch_idx):
        pred, target, mask, _ = self.restore(batch)
        self.log("val/l1", F.l1_loss(pred.clamp(0, 1), target), sync_dist=True)

    # ---- training
    def target(self, batch: dict) -> torch.Tensor:
        return to_net(batch["image"])

    def generator_losses(self, batch: dict, outs: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"l1": self.hparams.w_l1 * F.l1_loss(outs[-1], self.target(batch))}

    def training_step(self, batch, batch_idx):
        parts = self.generator_losses(batch, self.generate(*self.net_input(batch)))
        loss = sum(parts.values())
        self.log_dict({f"train/{k}": v for k, v in parts.items()} | {"train/loss": loss}, prog_bar=True)
        return loss

    def _adam(self, params, lr: float):
        hp = self.hparams
        opt = torch.optim.Adam(params, lr=lr, betas=tuple(hp.betas))
        return opt, torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(hp.milestones), gamma=hp.gamma)

    def generator_parameters(self):
        return [p for g in self.generators() for p in g.parameters() if p.requires_grad]

    def configure_optimizers(self):
        opt, sched = self._adam(self.generator_parameters(), self.hparams.lr)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


class InpaintGANModule(ManualGANSteps, InpaintModule):
    """Generator + discriminator, manual optimisation (tasks/common/gan.py): one G then one D step per batch.

    ``generator_losses`` adds ``adv = gan_weight * g_loss(D(x), D(d_input(x_hat)))`` to the
    non-adversarial terms of :meth:`reconstruction_losses` (override that one in a subclass).
    """

    def __init__(self, net: nn.Module, discriminator: nn.Module, composite: bool = False,
                 hole_fill: Sequence[float] | None = None, lr: float = 2e-4, lr_d: float | None = None,
                 betas: Sequence[float] = (0.5, 0.999), w_l1: float = 1.0, gan_weight: float = 1.0,
                 gan: str = "vanilla", pretrain_steps: int = 0, d_only_steps: int = 0,
                 milestones: Sequence[int] = (), gamma: float = 0.5):
        super().__init__(net, composite=composite, hole_fill=hole_fill, lr=lr, betas=betas, w_l1=w_l1,
                         milestones=milestones, gamma=gamma)
        self.save_hyperparameters(ignore=_module_args(self))
        self.discriminator = discriminator
        self.automatic_optimization = False

    def phase(self) -> str:
        hp, it = self.hparams, self.iteration
        if it < hp.pretrain_steps:
            return "pretrain"
        if it < hp.pretrain_steps + hp.d_only_steps:
            return "discriminator"
        return "adversarial" if hp.gan_weight else "pretrain"

    def d_input(self, batch: dict, out: torch.Tensor) -> torch.Tensor:
        """What D judges as fake: the raw output (override for composited or local-patch inputs)."""
        return out

    def reconstruction_losses(self, batch: dict, outs: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        return InpaintModule.generator_losses(self, batch, outs)

    def adversarial_loss(self, batch: dict, outs: list[torch.Tensor]) -> torch.Tensor:
        real = self.discriminator(self.target(batch)).detach()
        return self.hparams.gan_weight * g_loss(real, self.discriminator(self.d_input(batch, outs[-1])),
                                                self.hparams.gan)

    def generator_losses(self, batch: dict, outs: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        parts = self.reconstruction_losses(batch, outs)
        if self.phase() == "adversarial":
            parts["adv"] = self.adversarial_loss(batch, outs)
        return parts

    def discriminator_loss(self, batch: dict, outs: list[torch.Tensor]) -> torch.Tensor:
        fake = self.d_input(batch, outs[-1].detach())
        return d_loss(self.discriminator(self.target(batch)), self.discriminator(fake), self.hparams.gan)

    def discriminator_step(self, loss: torch.Tensor) -> dict:
        """A D-only step (GLCIC's T_D phase); G's optimizer steps without grads so the counters stay in step."""
        opt_g, opt_d = self.optimizers()
        opt_d.zero_grad()
        self.manual_backward(loss)
        opt_d.step()
        opt_g.zero_grad()  # no stale generator grads from the pre-training phase: G must not move
        opt_g.step()
        self._step_schedulers()
        self.log("train/d", loss, prog_bar=True)
        return {"loss": loss.detach()}

    def training_step(self, batch, batch_idx):
        outs = self.generate(*self.net_input(batch))
        phase = self.phase()
        if phase == "pretrain":
            parts = self.generator_losses(batch, outs)
            self.log_dict({f"train/{k}": v for k, v in parts.items()}, prog_bar=True)
            return self.pixel_phase_step(sum(parts.values()))
        if phase == "discriminator":
            return self.discriminator_step(self.discriminator_loss(batch, [o.detach() for o in outs]))
        return self.adversarial_step(lambda: self.generator_losses(batch, outs),
                                     lambda: self.discriminator_loss(batch, outs))

    def configure_optimizers(self):
        hp = self.hparams
        opt_g, s_g = self._adam(self.generator_parameters(), hp.lr)
        opt_d, s_d = self._adam(self.discriminator.parameters(), hp.lr_d or hp.lr)
        return [opt_g, opt_d], [s_g, s_d]


SMOKE_SPLIT = "smoke split (train: 24 other-class VAL-7K patches, 64-px crops; test: the 8 NORM+TUM samples)"


def plan_notes(module: InpaintModule, ctx=None, *extra: str) -> str:
    """The row's notes: output compositing, hole fill, the smoke split, and what the builder adds (random VGG)."""
    hp = module.hparams
    notes = [f"output {'composited' if hp.get('composite') else 'raw (not composited)'}"]
    if ctx is not None and ctx.profile == "smoke":
        notes.append(SMOKE_SPLIT)
    if hp.get("hole_fill") is not None:
        notes.append("hole refilled with " + "/".join(f"{v:.3f}" for v in hp.hole_fill) + " before G")
    return "; ".join(notes + [e for e in extra if e])
