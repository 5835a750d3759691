"""Trainer callbacks of the runner: a NaN guard, exact resume (per-iteration seeds, replayable training
data, config hash in every checkpoint), readable checkpoint names and the training curve."""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import random

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint


class NonFiniteLossError(FloatingPointError):
    pass


class ConfigChangedError(RuntimeError):
    pass


def _steps(pl_module) -> int:
    return getattr(pl_module, "optimizer_steps_per_batch", 1)


def _loss_of(outputs):
    """A training step's loss: ``outputs["loss"]``, else the sum of the tensors it returns (a manual-
    optimisation step may return only its parts, e.g. rVTT's recon / t1 / t2 / adv)."""
    if isinstance(outputs, dict):
        if "loss" in outputs:
            return outputs["loss"]
        parts = [v for v in outputs.values() if isinstance(v, torch.Tensor) and v.numel() == 1]
        return sum(parts) if parts else None
    return outputs


class FiniteLossGuard(L.Callback):
    """Stop a run with one clear error as soon as the training loss is NaN or infinite."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        loss = _loss_of(outputs)
        if loss is None:
            return
        value = float(loss.detach()) if isinstance(loss, torch.Tensor) else float(loss)
        if not math.isfinite(value):
            iteration = max(trainer.global_step - 1, 0) // _steps(pl_module)  # the step has already been counted
            raise NonFiniteLossError(f"training loss became {value} at iteration {iteration} "
                                     f"(batch {batch_idx}); "
                                     "the last good checkpoint is kept, the run is marked failed")


# ---- exact resume -------------------------------------------------------------------------------

def mix_seed(*parts) -> int:
    """A 63-bit seed from any parts (seed, epoch, position, rank ...): stable across runs and machines."""
    return int.from_bytes(hashlib.blake2b("/".join(map(str, parts)).encode(), digest_size=8).digest(), "little") >> 1


def _seed_all(seed: int) -> None:
    # torch.manual_seed, less its lazily queued CUDA / XPU / MTIA seeding, which formats a stack trace
    # per call (2.5 ms, a tenth of a small smoke step) on a machine that never initialises them
    torch.default_generator.manual_seed(seed)
    if torch.cuda.is_initialized():
        torch.cuda.manual_seed_all(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)


@contextlib.contextmanager
def _seeded(seed: int):
    """Run a block under ``seed`` (torch CPU, numpy, random) and restore the surrounding RNG states."""
    states = torch.get_rng_state(), np.random.get_state(), random.getstate()
    _seed_all(seed)
    try:
        yield
    finally:
        torch.set_rng_state(states[0])
        np.random.set_state(states[1])
        random.setstate(states[2])


def config_hash(config: dict) -> str:
    """sha256 of the run's config (the dict the runner builds), objects reduced to their type names."""
    def stable(o):
        if isinstance(o, dict):
            return {str(k): stable(v) for k, v in sorted(o.items(), key=lambda kv: str(kv[0]))}
        if isinstance(o, (list, tuple)):
            return [stable(v) for v in o]
        if o is None or isinstance(o, (bool, int, float, str)):
            return o
        return f"<{type(o).__module__}.{getattr(o, '__qualname__', type(o).__qualname__)}>"
    return hashlib.sha256(json.dumps(stable(config), sort_keys=True).encode()).hexdigest()[:16]


class _ReplayLoader:
    """A training DataLoader whose batch ``p`` of epoch ``e`` is drawn under the seed (seed, e, p, rank)
    and which skips, without loading them, the batches a resumed checkpoint had already trained on.

    With worker processes (num_workers > 0) the workers' own RNGs decide the crops; there the skip
    replays the sampler order but crops may differ from an uninterrupted run.
    """

    def __init__(self, owner: "ExactResume", loader):
        self.owner, self.loader = owner, loader

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        owner, dl = self.owner, self.loader
        epoch, skip = owner.start_epoch()
        if hasattr(dl.sampler, "set_epoch"):
            dl.sampler.set_epoch(epoch)
        if dl.num_workers > 0:
            it = iter(dl)
            for _ in range(skip):
                next(it)
            yield from it
            return
        for pos, indices in enumerate(dl.batch_sampler):
            if pos < skip:
                continue
            with _seeded(mix_seed(owner.seed, "data", epoch, pos, owner.rank)):
                batch = dl.collate_fn([dl.dataset[i] for i in indices])
            yield batch


class ExactResume(L.Callback):
    """Makes a resumed run train exactly like an uninterrupted one, and refuses a changed config.

    * every training iteration reseeds torch/numpy/random from (seed, iteration, rank), so the
      model's randomness does not depend on what ran before (no RNG state to carry over);
    * training batches come from :class:`_ReplayLoader` (see there); how many batches of the current
      epoch have been trained is part of the checkpoint;
    * every checkpoint stores the hash of the run's config; :meth:`check` compares it before resuming.
    """

    def __init__(self, seed: int, config: dict):
        self.seed, self.config, self.hash = seed, config, config_hash(config)
        self.rank, self.epoch, self.done = 0, 0, 0
        self._restored: tuple[int, int] | None = None
        self.trainer = None

    def wrap(self, dm: L.LightningDataModule) -> None:
        make = dm.train_dataloader
        dm.train_dataloader = lambda: _ReplayLoader(self, make())

    def start_epoch(self) -> tuple[int, int]:
        epoch = self.trainer.current_epoch if self.trainer is not None else 0
        skip = 0
        if self._restored is not None:
            r_epoch, r_done = self._restored
            skip = r_done if r_epoch == epoch else 0
            self._restored = None
        self.epoch, self.done = epoch, skip
        return epoch, skip

    def setup(self, trainer, pl_module, stage):
        self.trainer, self.rank = trainer, trainer.global_rank

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        _seed_all(mix_seed(self.seed, "step", trainer.global_step, self.rank))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.done += 1

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "done": self.done, "config_hash": self.hash}

    def load_state_dict(self, state: dict) -> None:
        self._restored = (state["epoch"], state["done"])

    def on_save_checkpoint(self, trainer, pl_module, checkpoint):
        checkpoint["mirbench"] = {"config_hash": self.hash, "config": self.config}

    def check(self, ckpt_path) -> dict:
        """The checkpoint's mirbench block; ConfigChangedError if it was written under another config."""
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False, mmap=True)
        saved = ckpt.get("mirbench") or {}
        if saved.get("config_hash") != self.hash:
            old, new = saved.get("config") or {}, self.config
            diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k)) or ["(no stored config)"]
            raise ConfigChangedError(
                f"{ckpt_path} was written with another configuration (differs in: {', '.join(diff)}); "
                "resuming would mix two runs. Rerun with --force to start this method over "
                "(its previous result and checkpoints are kept until the new run succeeds).")
        return {"iteration": int(ckpt.get("global_step", 0)) // max(1, saved.get("config", {}).get("steps_per_batch", 1))}


class IterationCheckpoint(ModelCheckpoint):
    """ModelCheckpoint whose file names count training iterations (``iter_000200.ckpt``), not Lightning's
    optimizer steps (a GAN iteration is 2 or more of those)."""

    def __init__(self, steps_per_batch: int, **kw):
        super().__init__(filename="iter_{iteration:06d}", auto_insert_metric_name=False, **kw)
        self.steps_per_batch = steps_per_batch

    def _monitor_candidates(self, trainer):
        cand = super()._monitor_candidates(trainer)
        cand["iteration"] = torch.tensor(trainer.global_step // self.steps_per_batch)
        return cand


class TrainingCurve(L.Callback):
    """Train loss per iteration (binned to at most ``max_points``) and validation PSNR, kept in checkpoints
    so that a resumed run's curve is complete."""

    def __init__(self, max_steps: int, max_points: int = 2000):
        self.every = max(1, math.ceil(max_steps / max_points))
        self.curve: dict[str, list] = {"iteration": [], "loss": [], "val_iteration": [], "val_psnr": []}
        self._acc: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        loss = _loss_of(outputs)
        if loss is None:
            return
        self._acc.append(float(loss.detach()) if isinstance(loss, torch.Tensor) else float(loss))
        it = trainer.global_step // _steps(pl_module)
        if it % self.every == 0 or it >= (trainer.max_steps // _steps(pl_module)):
            self.curve["iteration"].append(it)
            self.curve["loss"].append(sum(self._acc) / len(self._acc))
            self._acc = []

    def on_validation_epoch_end(self, trainer, pl_module):
        psnr = trainer.callback_metrics.get("val/psnr")
        if psnr is not None and not trainer.sanity_checking:
            self.curve["val_iteration"].append(trainer.global_step // _steps(pl_module))
            self.curve["val_psnr"].append(float(psnr))

    def state_dict(self) -> dict:
        return {"curve": self.curve}

    def load_state_dict(self, state: dict) -> None:
        self.curve = state["curve"]
