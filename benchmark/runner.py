"""Run every (dataset x method) of a task: build, fit (resumable), test, record, one at a time.

Data flow of one leaderboard row: DatasetSpec.datamodule -> MethodSpec.build -> Trainer.fit ->
Trainer.test -> Metric objects -> ResultRecord (atomic JSON) -> leaderboard.
Under DDP (``devices > 1``) Lightning re-launches this same command once per extra rank; every
rank walks the same plan and only rank 0 writes.
"""
from __future__ import annotations

import gc
import logging
import shutil
import sys
import time
import traceback
import warnings
from dataclasses import asdict
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint, RichProgressBar
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from rich.console import Console

from benchmark.callbacks import FiniteLossGuard
from benchmark.loggers import log_sample_grid, make_logger
from benchmark.metrics.efficiency import measure
from benchmark.profiles import get_profile
from benchmark.registry import load_task, select_methods
from benchmark.results import ResultRecord, ResultStore, environment
from benchmark.samples import save_samples
from benchmark.specs import BuildContext, DatasetSpec, MethodSpec
from benchmark.weights import require, weight_path
from datamodules.base import weights_root

console = Console(stderr=True)
logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # keep the runner's own lines readable
warnings.filterwarnings("ignore", message=r".*LeafSpec.*")  # a torch deprecation inside Lightning, not ours


class RunInterrupted(KeyboardInterrupt):
    pass


def plan_runs(task_name: str, methods: list[str] | None = None, datasets: list[str] | None = None):
    """[(dataset key, method key)] in registry order, only where the method runs on the dataset."""
    task = load_task(task_name)
    names = select_methods(task, methods)
    if datasets:
        unknown = [d for d in datasets if d not in task.DATASETS]
        if unknown:
            raise ValueError(f"unknown dataset(s) {unknown} for task {task_name}: known are {sorted(task.DATASETS)}")
    pairs = [(d, m) for d in task.DATASETS if not datasets or d in datasets
             for m in names if d in task.METHODS[m].datasets]
    return task, pairs


def _trainer(run_dir: Path, devices: int, logger, max_steps: int, plan, profile, progress: bool,
             callbacks=()) -> L.Trainer:
    cuda = torch.cuda.is_available()
    bar = progress and sys.stderr.isatty()
    return L.Trainer(
        accelerator="gpu" if cuda else "cpu", devices=devices,
        strategy="ddp" if devices > 1 else "auto",
        max_steps=max_steps, max_epochs=-1, deterministic=True if not cuda else "warn",
        use_distributed_sampler=False, logger=logger, default_root_dir=str(run_dir),
        callbacks=[FiniteLossGuard(), *callbacks, *( [RichProgressBar()] if bar else [])],
        enable_progress_bar=bar, enable_model_summary=False, num_sanity_val_steps=0,
        limit_val_batches=1.0 if plan.val_every_n_steps else 0,
        val_check_interval=plan.val_every_n_steps, check_val_every_n_epoch=None if plan.val_every_n_steps else 1,
        log_every_n_steps=profile.log_every_n_steps)


def run_one(task_name: str, ds_key: str, dspec: DatasetSpec, m_key: str, mspec: MethodSpec, profile_name: str,
            devices: int, logger_kind: str, runs_dir: Path, force: bool, seed: int, progress: bool) -> ResultRecord:
    profile = get_profile(profile_name)
    run_dir = runs_dir / profile_name / task_name / ds_key / m_key
    ckpt_dir = run_dir / "checkpoints"
    if force and ckpt_dir.exists() and rank_zero_only.rank == 0:
        shutil.rmtree(ckpt_dir)
    L.seed_everything(seed, workers=True, verbose=False)
    ctx = BuildContext(task_name, ds_key, profile_name, dspec.scale, dspec.in_channels, weights_root(), seed)
    if profile_name == "paper":
        for need in mspec.needs:
            require(need, ctx.weights_dir, why=f"{mspec.label} paper profile")
    module, plan = mspec.build(ctx)
    dm = dspec.datamodule(ctx, plan)
    config = {"task": task_name, "dataset": ds_key, "method": m_key, "profile": profile_name,
              "plan": asdict(plan), "seed": seed, "hparams": dict(getattr(module, "hparams", {}))}
    logger = make_logger(logger_kind, run_dir, f"{task_name}/{ds_key}/{m_key}/{profile_name}", config)
    spb = getattr(module, "optimizer_steps_per_batch", 1)
    t0 = time.perf_counter()
    callbacks = []
    if plan.max_steps > 0:
        callbacks.append(ModelCheckpoint(dirpath=str(ckpt_dir), filename="step{step}", save_last=True,
                                         save_top_k=1,
                                         every_n_train_steps=(plan.ckpt_every_n_steps or profile.ckpt_every_n_steps) * spb))
    trainer = _trainer(run_dir, devices, logger, plan.max_steps * spb, plan, profile, progress, callbacks)
    train_info = {"max_steps": plan.max_steps, "batch_size": plan.batch_size, "patch_size": plan.patch_size,
                  "notes": plan.notes, "resumed_from": None, "fidelity": mspec.fidelity,
                  "fidelity_note": mspec.fidelity_note, "protocol": mspec.protocol}
    if plan.max_steps > 0:
        last = ckpt_dir / "last.ckpt"
        train_info["resumed_from"] = str(last) if last.is_file() else None
        trainer.fit(module, datamodule=dm, ckpt_path=str(last) if last.is_file() else None)
        if trainer.interrupted:
            raise RunInterrupted(f"{m_key} on {ds_key} interrupted at iteration {trainer.global_step // spb}; "
                                 f"rerun the same command to resume from {last}")
        train_info.update(steps=trainer.global_step // spb, epochs=trainer.current_epoch)
    train_info["train_wall_s"] = round(time.perf_counter() - t0, 2)
    nrqm = weight_path("nrqm", ctx.weights_dir)
    module.configure_evaluation(dspec.eval, nrqm if nrqm.is_file() else None)
    t1 = time.perf_counter()
    trainer.test(module, datamodule=dm, verbose=False)
    train_info["test_wall_s"] = round(time.perf_counter() - t1, 2)
    rec = ResultRecord(task=task_name, dataset=ds_key, method=m_key, profile=profile_name, status="ok",
                       label=mspec.label, kind=mspec.kind, table=mspec.table, paper=mspec.paper,
                       scale=dspec.scale,
                       metrics=dict(module.test_results), train=train_info, per_image=module.test_per_image,
                       convention={"description": dspec.eval.describe(), **asdict(dspec.eval),
                                   "ma_model": nrqm.is_file(), "dataset_label": dspec.label,
                                   "reported_key": dspec.reported_key},
                       env=environment(devices))
    if trainer.is_global_zero:
        batch = next(iter(dm.test_dataloader()))
        example = module.example_input(batch)
        rec.efficiency = measure(module.inference_net(), example.to(module.device))
        grid = save_samples(module.test_samples, run_dir / "samples")
        if grid is not None:
            log_sample_grid(logger, f"samples/{ds_key}/{m_key}", grid)
    if logger is not None:
        logger.finalize("success")
    return rec


def run_task(task_name: str, profile: str = "smoke", methods: list[str] | None = None,
             datasets: list[str] | None = None, devices: int = 1, logger: str = "csv", force: bool = False,
             results_dir: Path = Path("results"), runs_dir: Path = Path("runs"), seed: int = 0,
             progress: bool = True) -> list[ResultRecord]:
    get_profile(profile)
    results_dir, runs_dir = Path(results_dir), Path(runs_dir)
    task, pairs = plan_runs(task_name, methods, datasets)
    store = ResultStore(results_dir)
    todo = [(d, m) for d, m in pairs if force or not store.is_done(profile, task_name, d, m)]
    rank0 = rank_zero_only.rank == 0
    if rank0:
        console.print(f"[bold]{task_name}[/] ({profile}): {len(pairs)} runs, {len(pairs) - len(todo)} done "
                      f"already, {len(todo)} to go")
    records = []
    for i, (d, m) in enumerate(todo, 1):
        if rank0:
            console.print(f"[{i}/{len(todo)}] {m} on {d}")
        t0 = time.perf_counter()
        try:
            rec = run_one(task_name, d, task.DATASETS[d], m, task.METHODS[m], profile, devices, logger,
                          runs_dir, force, seed, progress)
        except (KeyboardInterrupt, SystemExit) as exc:  # Lightning turns Ctrl-C during fit into exit(1)
            if rank0:
                console.print(f"[yellow]interrupted[/] during {m} on {d}: results written so far are kept; "
                              f"rerun the same command to resume from {runs_dir / profile / task_name / d / m}"
                              "/checkpoints/last.ckpt")
            raise
        except Exception as exc:  # noqa: BLE001 -- one failing method must not stop the others
            mspec, dspec = task.METHODS[m], task.DATASETS[d]
            rec = ResultRecord(task=task_name, dataset=d, method=m, profile=profile, status="failed",
                               label=mspec.label, kind=mspec.kind, table=mspec.table, paper=mspec.paper,
                       scale=dspec.scale,
                               error=f"{type(exc).__name__}: {exc}", env=environment(devices),
                               train={"traceback": traceback.format_exc(limit=8)})
            if rank0:
                console.print(f"[red]failed[/]: {m} on {d}: {rec.error}")
        rec.train["total_wall_s"] = round(time.perf_counter() - t0, 2)
        if rank0:
            store.write(rec)
            if rec.status == "ok":
                mt = rec.metrics
                console.print(f"  PSNR {mt.get('psnr', float('nan')):.3f}  SSIM {mt.get('ssim', float('nan')):.4f}"
                              f"  ({rec.train['total_wall_s']} s)")
        records.append(rec)
        gc.collect()
    return records
