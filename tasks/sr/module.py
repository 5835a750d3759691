"""SR LightningModules: pixel-loss training (SRModule) and GAN training with manual optimisation
(SRGANModule).  Every SR method is one of these wrapping its network(s), or a subclass of them."""
from __future__ import annotations

import inspect
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from tasks.common.evaluation import EvaluatedModule
from tasks.common.gan import ManualGANSteps
from tasks.common.losses import PerceptualLoss, d_loss, g_loss, pixel_loss
from tasks.common.roi import points_to_disc_mask
from tasks.sr.protocol import StepSchedule


def _module_args(obj) -> list[str]:
    """Names of the nn.Module arguments of every __init__ in the call chain of ``obj``: networks are
    saved in the checkpoint's state dict, not as hyper-parameters."""
    names, frame = [], inspect.currentframe().f_back
    while frame is not None and frame.f_locals.get("self") is obj:
        names += [k for k, v in frame.f_locals.items() if isinstance(v, nn.Module) and k != "self"]
        frame = frame.f_back
    return names


class SRModule(EvaluatedModule):
    """LR -> SR network trained on a pixel loss with Adam and a step-wise schedule (x ``gamma`` at every
    milestone iteration; from ``restart_at`` > 0 on the lr restarts: :class:`~tasks.sr.protocol.StepSchedule`).

    A network without parameters (nearest, bicubic) is training-free: the runner only tests it.
    """

    optimizer_steps_per_batch = 1  # Lightning counts optimizer steps; the runner counts iterations

    def __init__(self, net: nn.Module, scale: int, lr: float = 1e-4, betas: Sequence[float] = (0.9, 0.999),
                 milestones: Sequence[int] = (), gamma: float = 0.5, loss: str = "l1", weight_decay: float = 0.0,
                 restart_at: int = 0, restart_scale: float = 1.0):
        super().__init__()
        self.net, self.scale = net, scale
        self.save_hyperparameters(ignore=_module_args(self))
        self.pixel = pixel_loss(loss)

    @property
    def trainable(self) -> bool:
        return any(p.requires_grad for p in self.net.parameters())

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        return self.net(lr)

    def inference_net(self) -> nn.Module:
        return self.net

    def example_input(self, batch: dict) -> torch.Tensor:
        return batch["lr"][:1]

    def restore(self, batch):
        """Mask (for the region metrics): nucleus discs around ``batch["points"]`` (CRCH nuclei; roi.py)."""
        lr, hr = batch["lr"], batch["hr"]
        shown = F.interpolate(lr, scale_factor=self.scale, mode="nearest")
        mask = points_to_disc_mask(batch["points"], hr.shape[-2:]) if "points" in batch else None
        return self(lr), hr, mask, shown

    def training_step(self, batch, batch_idx):
        loss = self.pixel(self(batch["lr"]), batch["hr"])
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx):
        sr = self(batch["lr"]).clamp(0, 1)
        self.log("val/l1", F.l1_loss(sr, batch["hr"]), sync_dist=True)

    def _adam(self, params):
        hp = self.hparams
        opt = torch.optim.Adam(params, lr=hp.lr, betas=tuple(hp.betas), weight_decay=hp.weight_decay)
        return opt, self._schedule(opt)

    def _schedule(self, opt) -> torch.optim.lr_scheduler.LambdaLR:
        hp = self.hparams
        return torch.optim.lr_scheduler.LambdaLR(
            opt, StepSchedule(hp.milestones, hp.gamma, hp.get("restart_at", 0), hp.get("restart_scale", 1.0)))

    def configure_optimizers(self):
        opt, sched = self._adam(self.net.parameters())
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


class SRGANModule(ManualGANSteps, SRModule):
    """Generator + discriminator with Lightning manual optimisation (one G and one D step per batch).

    G loss = w_pix * pixel + w_per * perceptual + w_adv * adversarial; ``gan`` is 'vanilla', 'lsgan'
    or 'ragan' (ESRGAN's relativistic average).  The first ``pretrain_steps`` steps train G on the
    pixel loss alone: the PSNR-oriented initialisation ESRGAN/SRGAN start the GAN phase from.
    """

    def __init__(self, net: nn.Module, discriminator: nn.Module, scale: int, perceptual: PerceptualLoss | None,
                 w_pix: float = 1e-2, w_per: float = 1.0, w_adv: float = 5e-3, gan: str = "ragan",
                 pretrain_steps: int = 0, lr: float = 1e-4, lr_d: float | None = None,
                 betas: Sequence[float] = (0.9, 0.999), milestones: Sequence[int] = (), gamma: float = 0.5,
                 loss: str = "l1", restart_at: int = 0, restart_scale: float = 1.0):
        super().__init__(net, scale, lr=lr, betas=betas, milestones=milestones, gamma=gamma, loss=loss,
                         restart_at=restart_at, restart_scale=restart_scale)
        self.save_hyperparameters(ignore=_module_args(self))
        self.discriminator, self.perceptual = discriminator, perceptual
        self.automatic_optimization = False

    def configure_optimizers(self):
        opt_g, s_g = self._adam(self.net.parameters())
        hp = self.hparams
        opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=hp.lr_d or hp.lr, betas=tuple(hp.betas))
        return [opt_g, opt_d], [s_g, self._schedule(opt_d)]

    def generator_loss(self, sr, hr) -> dict[str, torch.Tensor]:
        hp = self.hparams
        parts = {"pix": hp.w_pix * self.pixel(sr, hr)}
        if self.perceptual is not None and hp.w_per:
            parts["per"] = hp.w_per * self.perceptual(sr, hr)
        real = self.discriminator(hr).detach()
        parts["adv"] = hp.w_adv * g_loss(real, self.discriminator(sr), hp.gan)
        return parts

    def training_step(self, batch, batch_idx):
        lr, hr = batch["lr"], batch["hr"]
        sr = self(lr)
        if self.iteration < self.hparams.pretrain_steps:
            return self.pixel_phase_step(self.pixel(sr, hr))
        return self.adversarial_step(lambda: self.generator_loss(sr, hr),
                                     lambda: d_loss(self.discriminator(hr), self.discriminator(sr.detach()),
                                                    self.hparams.gan))


def load_generator(net: nn.Module, checkpoint, prefix: str = "net.") -> None:
    """Load a trained generator into ``net`` from a runner checkpoint (MethodSpec.init_from): the
    weights under ``prefix`` of its "state_dict".  Every key must match (a clear error otherwise)."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    state = state.get("state_dict", state)
    weights = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if not weights:
        raise ValueError(f"{checkpoint} holds no '{prefix}*' weights to initialise the generator from")
    try:
        missing, unexpected = net.load_state_dict(weights, strict=False)
    except RuntimeError as exc:  # same keys, other shapes
        raise ValueError(f"{checkpoint} does not fit this generator: {str(exc).splitlines()[-1].strip()} "
                         "(was it trained with another configuration?)") from None
    if missing or unexpected:
        raise ValueError(f"{checkpoint} does not fit this generator: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]} (was it trained with another configuration?)")
