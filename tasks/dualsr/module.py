"""Dual-mapping SR task modules (SNADN, Liang et al. 2023, and its Table 3 baselines).

Contract for method files (tasks/dualsr/<method>.py):

Batch (datamodules/kather.KatherSRDataModule): a dict with
  ``hr`` (B, 3, H, W) and ``lr`` (B, 3, H/s, W/s) in [0, 1] (``lr`` = MATLAB-bicubic x1/s of ``hr``,
  8-bit rounded), ``index`` (position in the split), ``name``, ``label`` (tissue class index), and
  ``ref`` / ``ref_lr``: a *different* HR patch of the same tissue class from the training split
  (seeded per index; never the ground truth) and its bicubic LR, for reference-based SR (TTSR).

Plain SR networks (LR -> SR: bicubic, SRGAN, CSNL, TTSR) use :class:`PlainSRModule` (pixel loss)
or :class:`PlainSRGANModule` (GAN, ``tasks.common.gan.ManualGANSteps``), i.e. the SR task's
SRModule / SRGANModule plus the Y-channel metrics of this task; a subclass may override
``forward`` / ``restore`` / ``training_step`` (TTSR reads ``batch["ref"]``).

Dual (invertible) networks (IRN, SNADN) use :class:`DualModule`.  The network provides
  ``down(hr) -> (lr, z)``  (LR image in channels 0..2, latent z of 3*4^k - 3 channels at H/2^k) and
  ``up(lr, z) -> hr``     (the exact inverse), and optionally ``set_hash_step(step)`` (NLSA rotations).
Training (IRN ``IRN_model.py``, SNADN Sec. 2.3 / Algorithm 1): L_fit = lam_fit * sum (LR_hat - LR_bic)^2,
L_distr = lam_distr * sum z^2 (the N(0, 1) negative log-likelihood up to a constant), L_rec =
lam_rec * sum Charbonnier(up(Quant(LR_hat), z ~ N(0, 1)) - HR); sums over C, H, W, mean over the
batch; one Adam step on their sum, gradient norm clipped at 10.

Evaluation protocols (never mixed in one leaderboard table):
  ``sr``      every method upsamples the bicubic LR (SNADN Algorithm 1 line 14); a dual method draws
              z ~ N(0, 1) from a generator seeded per (test image, draw);
  ``rescale`` a dual method upsamples its own quantised LR (IRN's ``test()``), and its LR is scored
              against the bicubic LR (``psnr_lr``).
Dual methods report the mean over ``n_draws`` (5) z draws of the set-mean PSNR / SSIM and their
sample sd across draws (``psnr_sd``, ``ssim_sd``), and ``psnr_z0``, the PSNR of up(LR, z = 0), the
latent's mean (a diagnostic: what the sampled latent costs a row).  Metrics: the dataset's convention
(RGB, 8-bit, shave = scale, mean of per-image scores) plus ``psnr_y`` / ``ssim_y`` (BT.601 Y, same shave);
NIQE and RMSE are of draw 0.
"""
from __future__ import annotations

import statistics
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.metrics.psnr_ssim import PSNR, SSIM
from benchmark.specs import EvalConvention, TrainPlan
from tasks.common.evaluation import EvaluatedModule
from tasks.sr.module import SRGANModule, SRModule, _module_args

PROTOCOLS = ("sr", "rescale")


def _y_metrics(conv: EvalConvention) -> dict[str, nn.Module]:
    return {"psnr_y": PSNR("y", conv.crop), "ssim_y": SSIM("y", conv.crop)}


class _YLogged:
    """Adds Y-channel PSNR / SSIM (same shave) to the dataset's metrics."""

    def configure_evaluation(self, conv: EvalConvention, ma_model: Path | None = None) -> None:
        super().configure_evaluation(conv, ma_model)
        self.test_metrics.update(_y_metrics(conv))


class PlainSRModule(_YLogged, SRModule):
    """LR -> SR network, pixel loss (the SR task's SRModule); protocol ``sr`` only."""


class PlainSRGANModule(_YLogged, SRGANModule):
    """LR -> SR generator + discriminator, manual optimisation via ManualGANSteps (SR task's SRGANModule)."""


class Quantize(torch.autograd.Function):
    """Clamp to [0, 1] and round to 8 bits; the gradient passes unchanged (IRN ``Quantization``)."""

    @staticmethod
    def forward(ctx, x):
        return (x.clamp(0, 1) * 255.0).round() / 255.0

    @staticmethod
    def backward(ctx, grad):
        return grad


def quantize(x: torch.Tensor) -> torch.Tensor:
    return Quantize.apply(x)


def _charbonnier_sum(x: torch.Tensor, y: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    return torch.sqrt((x - y) ** 2 + eps).sum((1, 2, 3)).mean()


class _UpPass(nn.Module):
    """The test-time network of a dual method, for the cost columns: up(LR, z), z ~ N(0, 1)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        return self.net.up(lr, torch.randn(self.net.z_shape(lr), device=lr.device, dtype=lr.dtype))


def draw_z(net: nn.Module, lr: torch.Tensor, index: Sequence[int], draw: int, seed: int = 0) -> torch.Tensor:
    """z ~ N(0, 1) for each image, from a CPU generator seeded by (seed, image index, draw): the same
    latent on any device, batch size or process count."""
    shape = net.z_shape(lr[:1])[1:]
    zs = [torch.randn(shape, generator=torch.Generator().manual_seed((seed * 1_000_003 + int(i)) * 64 + draw),
                      dtype=torch.float64) for i in index]
    return torch.stack(zs).to(device=lr.device, dtype=lr.dtype)


class DualModule(EvaluatedModule):
    """Invertible rescaling network (down: HR -> (LR, z); up: (LR, z) -> HR) trained as IRN / SNADN.

    ``up_input``: the LR fed to the up branch in training, 'own_q' (Quant(LR_hat), IRN) or 'bicubic'
    (Algorithm 1 l.11 read literally); ``z_train``: 'sample' (z ~ N(0, 1), IRN) or 'encoded' (the
    down branch's own z).  ``init_state``: a state dict to start from (an evaluation-only variant of a
    trained run, e.g. the ``rescale`` row of a network trained once).
    """

    optimizer_steps_per_batch = 1

    def __init__(self, net: nn.Module, scale: int, protocol: str = "sr", lam_fit: float = 4.0,
                 lam_distr: float = 1.0, lam_rec: float = 1.0, lr: float = 2e-4,
                 betas: Sequence[float] = (0.9, 0.999), weight_decay: float = 1e-5, milestones: Sequence[int] = (),
                 gamma: float = 0.5, clip: float = 10.0, up_input: str = "own_q", z_train: str = "sample",
                 n_draws: int = 5, z_seed: int = 0):
        super().__init__()
        if protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {protocol!r}: expected one of {PROTOCOLS}")
        if up_input not in ("own_q", "bicubic") or z_train not in ("sample", "encoded"):
            raise ValueError(f"up_input {up_input!r} / z_train {z_train!r}: expected own_q|bicubic / sample|encoded")
        self.net, self.scale = net, scale
        self.save_hyperparameters(ignore=_module_args(self))

    # ------------------------------------------------------------------ training
    def losses(self, batch: dict) -> dict[str, torch.Tensor]:
        hp = self.hparams
        hr, lr_bic = batch["hr"], batch["lr"]
        lr_hat, z = self.net.down(hr)
        parts = {"fit": hp.lam_fit * ((lr_hat - lr_bic) ** 2).sum((1, 2, 3)).mean(),
                 "distr": hp.lam_distr * (z ** 2).sum() / z.shape[0]}
        lr_up = quantize(lr_hat) if hp.up_input == "own_q" else lr_bic
        z_up = torch.randn_like(z) if hp.z_train == "sample" else z
        parts["rec"] = hp.lam_rec * _charbonnier_sum(self.net.up(lr_up, z_up), hr)
        return parts

    def training_step(self, batch, batch_idx):
        if hasattr(self.net, "set_hash_step"):
            self.net.set_hash_step(self.global_step)  # one set of NLSA rotations per step, both branches
        parts = self.losses(batch)
        loss = sum(parts.values())
        self.log_dict({f"train/{k}": v.detach() for k, v in parts.items()}, prog_bar=True)
        return loss

    def on_before_optimizer_step(self, optimizer) -> None:
        norm = nn.utils.clip_grad_norm_(self.net.parameters(), self.hparams.clip)
        self.log("train/grad_norm", norm)
        self.log("train/clipped", float(norm > self.hparams.clip))

    def on_train_end(self) -> None:
        if hasattr(self.net, "set_hash_step"):
            self.net.set_hash_step(0)  # evaluation uses the fixed rotations of step 0

    def configure_optimizers(self):
        hp = self.hparams
        opt = torch.optim.Adam(self.net.parameters(), lr=hp.lr, betas=tuple(hp.betas), weight_decay=hp.weight_decay)
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(hp.milestones), gamma=hp.gamma)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # ------------------------------------------------------------------ inference
    def test_lr(self, batch: dict) -> torch.Tensor:
        """The LR the up branch sees at test time under the module's protocol."""
        if self.hparams.protocol == "sr":
            return batch["lr"]
        return quantize(self.net.down(batch["hr"])[0])

    def upsample(self, lr: torch.Tensor, index: Sequence[int], draw: int = 0) -> torch.Tensor:
        return self.net.up(lr, draw_z(self.net, lr, index, draw, self.hparams.z_seed))

    def restore(self, batch):
        lr = self.test_lr(batch)
        shown = F.interpolate(lr, scale_factor=self.scale, mode="nearest")
        return self.upsample(lr, _indices(batch), 0), batch["hr"], None, shown

    def inference_net(self) -> nn.Module:
        return _UpPass(self.net)

    def example_input(self, batch: dict) -> torch.Tensor:
        return batch["lr"][:1]

    def validation_step(self, batch, batch_idx):
        sr = self.restore(batch)[0].clamp(0, 1)
        self.log("val/l1", F.l1_loss(sr, batch["hr"]), sync_dist=True)

    # ------------------------------------------------------------------ evaluation over z draws
    def configure_evaluation(self, conv: EvalConvention, ma_model: Path | None = None) -> None:
        super().configure_evaluation(conv, ma_model)
        self.test_metrics.update(_y_metrics(conv))                 # draw 0 (+ NIQE, RMSE)
        self.draw_metrics = nn.ModuleList(                           # draws 1 .. n-1
            nn.ModuleDict({"psnr": PSNR(conv.space, conv.crop), "ssim": SSIM(conv.space, conv.crop),
                           **_y_metrics(conv)}) for _ in range(self.hparams.n_draws - 1)).to(self.device)
        self.lr_metric = PSNR(conv.space, 0).to(self.device) if self.hparams.protocol == "rescale" else None
        self.z0_metric = PSNR(conv.space, conv.crop).to(self.device)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        hr, idx = batch["hr"], torch.as_tensor(batch["index"], device=self.device)
        lr = self.test_lr(batch)
        if self.lr_metric is not None:
            self.lr_metric.update(lr, batch["lr"], idx)
        self.z0_metric.update(self.net.up(lr, lr.new_zeros(self.net.z_shape(lr))).clamp(0, 1), hr, idx)
        for d in range(self.hparams.n_draws):
            pred = self.upsample(lr, idx.tolist(), d).clamp(0, 1)
            for m in (self.test_metrics if d == 0 else self.draw_metrics[d - 1]).values():
                m.update(pred, hr, idx)
            if d == 0:
                shown = F.interpolate(lr, scale_factor=self.scale, mode="nearest")
                for j, i in enumerate(idx.tolist()):
                    if i < self.n_samples:
                        self.test_samples[i] = (shown[j].cpu(), pred[j].cpu(), hr[j].cpu())

    def on_test_epoch_end(self) -> None:
        draws = [self.test_metrics] + list(self.draw_metrics)
        res = {name: float(m.compute()) for name, m in self.test_metrics.items()}
        for key in ("psnr", "ssim", "psnr_y", "ssim_y"):
            vals = [float(d[key].compute()) for d in draws]
            res[key] = statistics.fmean(vals)
            res[f"{key}_sd"] = statistics.stdev(vals) if len(vals) > 1 else 0.0
        per_draw = []
        for d in draws:
            with d["psnr"].sync_context():
                index, values = d["psnr"].per_image()
            per_draw.append(values)
        res["psnr_z0"] = float(self.z0_metric.compute())
        self.z0_metric.reset()
        if self.lr_metric is not None:
            res["psnr_lr"] = float(self.lr_metric.compute())
            self.lr_metric.reset()
        res["n_images"] = int(index.numel())
        res["n_draws"] = len(draws)
        self.test_results = res
        self.test_per_image = {"index": index.tolist(), "psnr": torch.stack(per_draw).mean(0).tolist()}
        for d in draws:
            for m in d.values():
                m.reset()
        for k, v in res.items():
            self.log(f"test/{k}", float(v), sync_dist=False, rank_zero_only=True)


def _indices(batch: dict) -> list[int]:
    return torch.as_tensor(batch["index"]).reshape(-1).tolist()


def load_init_state(module: nn.Module, checkpoint: Path | None) -> bool:
    """Load a Lightning checkpoint's weights into ``module`` (same class); False if there is none."""
    if checkpoint is None:
        return False
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    module.load_state_dict(state.get("state_dict", state))
    return True


def rescale_plan(module: nn.Module, plan: TrainPlan, protocol: str, init_checkpoint: Path | None,
                 evaluated: str) -> TrainPlan:
    """A dual method's plan under ``protocol``: the `rescale` row (the only one compared with the
    paper's Table 2 / 3 numbers) is labelled; given its init_from row's trained network it only tests."""
    if protocol != "rescale":
        return plan
    plan = TrainPlan(max_steps=plan.max_steps, batch_size=plan.batch_size, patch_size=plan.patch_size,
                     val_every_n_steps=plan.val_every_n_steps,
                     notes=f"rescale protocol: up(own quantised LR, z); {plan.notes}")
    if load_init_state(module, init_checkpoint):
        plan = TrainPlan(max_steps=0, batch_size=plan.batch_size, patch_size=plan.patch_size,
                         notes=f"{plan.notes}; {evaluated}".lstrip("; "))
    return plan
