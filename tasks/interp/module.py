"""The interp task's LightningModule: a network f(prev, next) -> middle slice trained on SSAN's loss.

Contract for method files (tasks/interp/<method>.py):

* Batches are dicts from :mod:`datamodules.cremi_triplet`: ``prev``, ``next``, ``target`` are
  (B, 1, H, W) float32 gray images in [0, 1] (slices z-1, z+1 and the ground-truth z), ``index`` a
  (B,) int64 position in the split, ``name`` a list of "<z>_<y>_<x>" strings.  Training batches are
  already augmented by the DataModule (random h/v flips and temporal swap prev <-> next, applied
  identically to the triplet, SSAN "Parameters in SSAN"); evaluation batches are not.
* A network is an ``nn.Module`` with ``forward(prev, next) -> middle`` (B, 1, H, W), unclamped (the
  output is clamped only for the metrics, so gradients do not die outside [0, 1]).  Optional hooks:
  ``param_groups(lr) -> list[dict]`` (per-module learning rates, e.g. DAIN's x0.01 for flow/depth) and
  ``random_init_note -> str`` (e.g. "PWC-Net random (smoke)").  Networks with BatchNorm get
  SyncBatchNorm on CUDA DDP only (:func:`sync_batchnorm_if_cuda`).
* ``InterpModule(net, loss=SSANLoss(...), lr=1e-3, milestones=...)`` trains it with Adam (0.9, 0.999)
  and a MultiStepLR stepped per *epoch* (the paper: 30 epochs at 1e-3, then x0.1 for 20 more; see
  :func:`paper_schedule`; the smoke profile steps it per iteration, ``milestone_interval="step"``).  ``ssan_loss(ctx)`` builds the paper's loss for a profile.
* ``restore`` returns (prediction, target, None, previous slice): sample strips read previous |
  output | ground truth, and the leaderboard adds the next slice.

The loss (SSAN eq. 12, "Discussion": 10^6 : 1 : 1):
  L = 1e6 * L_bs + 1 * L_f + 1 * L_1
  L_bs  adaptive style-balance loss, eq. 15: sum_k beta_k sign(S(pred, I_k) - S(I_gt, I_k)) S(pred, I_k)
        over I_k = (previous, ground truth, next), beta = (0.1, 1, 0.1); S = eq. 14's style loss on the
        Gram matrices (eq. 13) of VGG16 relu1_2, relu2_2, relu3_3, relu4_3, each term the *mean* over
        the C_j^2 Gram entries (the authors' code; 1e6 is calibrated to it).  The sign is taken per
        sample, so the loss does not depend on how a batch is split over devices.
  L_f   feature reconstruction, eq. 16: sum_j MSE(phi_j(pred), phi_j(I_gt)), layers weighted equally.
  L_1   Charbonnier, eq. 17, eps 1e-6, the mean over pixels (eq. 17 writes a sum; the weights only
        make sense for a mean).
VGG16 is ImageNet-pretrained from MIRBENCH_WEIGHTS (``vgg16-397923af.pth``); gray is replicated to 3
channels without ImageNet normalisation (the authors' code; ``imagenet_norm=True`` is the option).
Without the VGG16 file the smoke profile drops L_bs and L_f and trains on Charbonnier alone; rows say
so (:func:`ssan_loss`).  On a seeded random VGG16 (tasks.common.losses' He-initialised fallback) the
Gram and feature statistics describe nothing about EM, yet on real 64^2 crops 1e6 L_bs's gradient is
~8x Charbonnier's and L_f's ~0.6x, and the VGG passes take 3/4 of a smoke step.  The loss runs in fp32 outside autocast.
"""
from __future__ import annotations

import inspect
import json
import math
from pathlib import Path
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.metrics.dice import Dice, PooledF1
from benchmark.metrics.ie import IE
from benchmark.specs import BuildContext, EvalConvention
from tasks.common.evaluation import EvaluatedModule
from tasks.common.losses import CharbonnierLoss, VGGFeatures, gram

VGG_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")
PAPER_WEIGHTS = {"bs": 1e6, "f": 1.0, "pix": 1.0}          # eq. 12 / Discussion
PAPER_BETA = (0.1, 1.0, 0.1)                                # eq. 15: previous, ground truth, next
# SSAN "Dataset and preprocessing": triplets per dataset, split 3:1:1 -> floor(0.6 n) training triplets
PAPER_TRIPLETS = {"cremi_triplet_a": 3652, "cremi_triplet_b": 2631, "cremi_triplet_c": 1333, "mouse_triplet": 2674}
PAPER_EPOCHS, PAPER_DECAY_EPOCH, PAPER_BATCH, PAPER_LR = 50, 30, 3, 1e-3


def _module_args(obj) -> list[str]:
    """Names of the nn.Module arguments of every __init__ in the call chain of ``obj`` (kept out of
    the hyper-parameters: they are saved in the state dict)."""
    names, frame = [], inspect.currentframe().f_back
    while frame is not None and frame.f_locals.get("self") is obj:
        names += [k for k, v in frame.f_locals.items() if isinstance(v, nn.Module) and k != "self"]
        frame = frame.f_back
    return names


# ----------------------------------------------------------------------------------------------
# loss


def style_distance(feats_a: Sequence[torch.Tensor], feats_b: Sequence[torch.Tensor]) -> torch.Tensor:
    """SSAN eq. 14 per sample: sum over layers of the mean squared Gram difference -> (B,)."""
    return sum(((gram(a) - gram(b)) ** 2).flatten(1).mean(1) for a, b in zip(feats_a, feats_b))


class SSANLoss(nn.Module):
    """``weights`` (keys 'bs', 'f', 'pix'; 0 or absent = off) times the three terms; returns the weighted
    terms as a dict (their sum is the training loss).  VGG16 is built only if a VGG term is on."""

    def __init__(self, weights: Mapping[str, float] = PAPER_WEIGHTS, beta: Sequence[float] = PAPER_BETA,
                 eps: float = 1e-6, weights_dir: Path | None = None, allow_random: bool = False,
                 imagenet_norm: bool = False):
        super().__init__()
        unknown = set(weights) - {"bs", "f", "pix"}
        if unknown:
            raise ValueError(f"unknown loss terms {sorted(unknown)}: expected 'bs', 'f', 'pix'")
        self.weights = {k: float(v) for k, v in weights.items() if v}
        self.beta = tuple(float(b) for b in beta)
        self.pixel = CharbonnierLoss(eps)
        self.vgg = None
        self.dropped_vgg = False   # set by ssan_loss: smoke without VGG16 weights trains on Charbonnier only
        if self.weights.get("bs") or self.weights.get("f"):
            self.vgg = VGGFeatures(VGG_LAYERS, arch="vgg16", weights_dir=weights_dir, allow_random=allow_random)
            if not imagenet_norm:  # the authors feed gray x3 in [0, 1] straight into VGG
                self.vgg.mean.zero_()
                self.vgg.std.fill_(1.0)

    @property
    def random_vgg(self) -> bool:
        return self.vgg is not None and self.vgg.random_init

    def describe(self) -> str:
        terms = " + ".join(f"{w:g}*{k}" for k, w in self.weights.items())
        return f"{terms} (bs: style balance beta={self.beta}; f: VGG16 feature MSE; pix: Charbonnier)"

    def forward(self, pred: torch.Tensor, prev: torch.Tensor, target: torch.Tensor,
                nxt: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.autocast(device_type=pred.device.type, enabled=False):
            pred, prev, target, nxt = (t.float() for t in (pred, prev, target, nxt))
            out = {}
            if "pix" in self.weights:
                out["pix"] = self.weights["pix"] * self.pixel(pred, target)
            if self.vgg is None:
                return out
            b = pred.shape[0]
            with torch.no_grad():  # previous, ground truth, next in one pass
                ref = self.vgg(torch.cat([prev, target, nxt]))
            fp = self.vgg(pred)
            if "f" in self.weights:
                out["f"] = self.weights["f"] * sum(F.mse_loss(a, r[b:2 * b]) for a, r in zip(fp, ref))
            if "bs" in self.weights:
                bs = pred.new_zeros(b)
                for k, beta in enumerate(self.beta):
                    fk = [r[k * b:(k + 1) * b] for r in ref]
                    s_pred = style_distance(fp, fk)
                    s_gt = style_distance([r[b:2 * b] for r in ref], fk)  # 0 for k = 1: sign +1
                    bs = bs + beta * torch.sign(s_pred - s_gt).detach() * s_pred
                out["bs"] = self.weights["bs"] * bs.mean()
            return out


# what the smoke profile trains on without VGG16 weights (measured on real 64^2 CREMI crops, prediction = the
# neighbours' mean, with the seeded random VGG16: gradient norms 1e6 L_bs 0.083, L_f 0.0067, Charbonnier 0.011;
# the VGG passes cost ~0.6 s of a ~0.8 s step)
SMOKE_NO_VGG_WEIGHTS = {"pix": 1.0}
SMOKE_NO_VGG_NOTE = ("smoke, no VGG16 weights: L_bs and L_f dropped (on a random VGG16 they measure nothing about "
                     "EM yet 1e6*L_bs would outweigh Charbonnier ~8x, and cost 3/4 of the step); loss = Charbonnier only")


def vgg16_available(ctx: BuildContext) -> bool:
    from benchmark.weights import require
    try:
        require("vgg16", ctx.weights_dir)
    except FileNotFoundError:
        return False
    return True


def ssan_loss(ctx: BuildContext, weights: Mapping[str, float] = PAPER_WEIGHTS, **kwargs) -> SSANLoss:
    """The paper's loss for a profile.  paper: pretrained VGG16 required (a clear error without it).
    smoke: the same loss where VGG16's weights are present; without them the VGG terms are dropped
    (:data:`SMOKE_NO_VGG_NOTE`; ``loss.dropped_vgg`` is set so the row says so) rather than computed on a
    random VGG, where they are meaningless yet dominate the gradient, and slow training."""
    if ctx.profile == "smoke" and not vgg16_available(ctx) and any(weights.get(k) for k in ("bs", "f")):
        loss = SSANLoss(SMOKE_NO_VGG_WEIGHTS, **kwargs)
        loss.dropped_vgg = True
        return loss
    return SSANLoss(weights, weights_dir=ctx.weights_dir, allow_random=ctx.profile == "smoke", **kwargs)


def paper_schedule(dataset: str, n_train: int | None = None, batch_size: int = PAPER_BATCH,
                   devices: int = 1) -> tuple[int, tuple[int, ...]]:
    """(max_steps, epoch milestones) of SSAN's 30 + 20 epochs.  ``n_train`` defaults to the training
    triplets of the built dataset (its build.json) or else the paper's floor(0.6 * count)."""
    if n_train is None:
        n_train = built_train_size(dataset) or math.floor(0.6 * PAPER_TRIPLETS[dataset])
    steps_per_epoch = max(1, n_train // (batch_size * devices))  # training loaders drop the last batch
    return PAPER_EPOCHS * steps_per_epoch, (PAPER_DECAY_EPOCH,)


def built_train_size(dataset: str) -> int | None:
    from datamodules.base import data_root
    sample = dataset.rsplit("_", 1)[-1].upper()
    path = data_root() / "cremi_triplet" / sample / "build.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text()).get("counts", {}).get("train")


# ----------------------------------------------------------------------------------------------
# DDP: synchronized BN (SSAN "Parameters in SSAN") only where it works


def sync_batchnorm_if_cuda(net: nn.Module, device: torch.device, world_size: int) -> tuple[nn.Module, str]:
    """SyncBatchNorm on CUDA DDP; plain BatchNorm otherwise.  torch's SyncBatchNorm raises on CPU
    tensors whenever torch.distributed is initialised (its device check runs first), so CPU DDP keeps
    per-process BN statistics.  Returns the network and a note saying which was used."""
    has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())
    if not has_bn:
        return net, "no BatchNorm"
    if world_size > 1 and device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(net), f"SyncBatchNorm over {world_size} GPUs"
    if world_size > 1:
        return net, f"plain BatchNorm per process ({world_size} CPU processes: SyncBatchNorm needs CUDA)"
    return net, "plain BatchNorm (one process)"


# ----------------------------------------------------------------------------------------------
# module


class _PairInput(nn.Module):
    """Wraps f(prev, next) as f(x) with x = cat(prev, next) on channels, for the cost measurements."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x[:, :1], x[:, 1:])


class InterpModule(EvaluatedModule):
    """f(prev, next) -> middle, trained on :class:`SSANLoss` with Adam and a per-epoch MultiStepLR.

    A network without parameters (average, copy) is training-free: the runner only tests it.
    Test metrics: PSNR / SSIM / RMSE / IE on 8-bit gray, no border crop, per-image mean; with a
    membrane oracle (:mod:`tasks.interp.membrane`, found from the test DataModule) also membrane
    Dice (per-image mean) and F1 (pooled) of oracle(prediction) against oracle(ground truth).
    """

    optimizer_steps_per_batch = 1

    def __init__(self, net: nn.Module, loss: SSANLoss | None = None, lr: float = PAPER_LR,
                 betas: Sequence[float] = (0.9, 0.999), milestones: Sequence[int] = (PAPER_DECAY_EPOCH,),
                 gamma: float = 0.1, weight_decay: float = 0.0, milestone_interval: str = "epoch"):
        super().__init__()
        self.net, self.loss = net, loss
        self.save_hyperparameters(ignore=_module_args(self))
        self.bn_note = ""
        self.membrane_oracle: nn.Module | None = None

    @property
    def trainable(self) -> bool:
        return any(p.requires_grad for p in self.net.parameters())

    def forward(self, prev: torch.Tensor, nxt: torch.Tensor) -> torch.Tensor:
        return self.net(prev, nxt)

    def inference_net(self) -> nn.Module:
        return _PairInput(self.net)

    def example_input(self, batch: dict) -> torch.Tensor:
        return torch.cat([batch["prev"][:1], batch["next"][:1]], 1)

    def restore(self, batch):
        pred = self(batch["prev"], batch["next"])
        self._last_pred = pred  # test_step reuses it for the membrane scores (one forward per batch)
        return pred, batch["target"], None, batch["prev"]

    # -- training
    def setup(self, stage: str) -> None:
        if stage == "fit" and self._trainer is not None:
            world = self.trainer.world_size
            self.net, self.bn_note = sync_batchnorm_if_cuda(self.net, self.trainer.strategy.root_device, world)

    def on_train_start(self) -> None:
        world = self.trainer.world_size
        bs = getattr(self.trainer.datamodule, "batch_size", None)
        if bs is not None:  # recorded in the run's logs (SSAN trains with a global batch of 3)
            self.log("train/global_batch", float(bs * world), rank_zero_only=True)
        self.log("train/sync_batchnorm", float(self.bn_note.startswith("SyncBatchNorm")), rank_zero_only=True)

    def training_step(self, batch, batch_idx):
        if self.loss is None:
            raise RuntimeError("InterpModule has no loss: a trainable network needs one (ssan_loss(ctx))")
        pred = self(batch["prev"], batch["next"])
        terms = self.loss(pred, batch["prev"], batch["target"], batch["next"])
        total = sum(terms.values())
        for k, v in terms.items():
            self.log(f"train/{k}", v.detach())
        self.log("train/loss", total, prog_bar=True)
        return total

    def validation_step(self, batch, batch_idx):
        pred = self(batch["prev"], batch["next"]).clamp(0, 1)
        mse = F.mse_loss((pred * 255).round(), (batch["target"] * 255).round())
        self.log("val/psnr", 10 * torch.log10(255 ** 2 / mse.clamp_min(1e-10)), sync_dist=True)

    def configure_optimizers(self):
        hp = self.hparams
        groups = self.net.param_groups(hp.lr) if hasattr(self.net, "param_groups") else self.net.parameters()
        opt = torch.optim.Adam(groups, lr=hp.lr, betas=tuple(hp.betas), weight_decay=hp.weight_decay)
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(hp.milestones), gamma=hp.gamma)
        interval = getattr(hp, "milestone_interval", "epoch")  # smoke: milestones in steps (epochs of ~30 steps)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": interval}}

    # -- evaluation
    def configure_evaluation(self, conv: EvalConvention, ma_model: Path | None = None) -> None:
        super().configure_evaluation(conv, ma_model)
        self.test_metrics["ie"] = IE(conv.space, conv.crop)
        self.seg_metrics = nn.ModuleDict({"dice": Dice(), "f1": PooledF1()})

    def on_test_start(self) -> None:
        from tasks.interp.membrane import oracle_for
        dm = self._trainer.datamodule if self._trainer is not None else None
        self.membrane_oracle = oracle_for(dm) if dm is not None else None
        if self.membrane_oracle is not None:
            self.membrane_oracle.to(self.device).eval()
        self.seg_metrics.to(self.device)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        super().test_step(batch, batch_idx)
        if self.membrane_oracle is None:
            return
        pred = self._last_pred.clamp(0, 1)
        with torch.no_grad():
            s_pred = self.membrane_oracle.predict(pred)
            s_gt = self.membrane_oracle.predict(batch["target"])
        idx = torch.as_tensor(batch["index"], device=pred.device)
        for m in self.seg_metrics.values():
            m.update(s_pred, s_gt, idx)

    def on_test_epoch_end(self) -> None:
        seg = {}
        if self.membrane_oracle is not None:
            seg = {k: float(m.compute()) for k, m in self.seg_metrics.items()}
            seg["membrane_oracle_dice"] = float(getattr(self.membrane_oracle, "own_dice", float("nan")))
        for m in self.seg_metrics.values():
            m.reset()
        super().on_test_epoch_end()
        self.test_results.update(seg)
        for k, v in seg.items():
            self.log(f"test/{k}", v, sync_dist=False, rank_zero_only=True)
