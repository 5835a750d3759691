"""`run --profile paper --dry-run`: plan a paper run, and prove the paper path is not broken.

For each method: build the paper-size model and data pipeline, run 2 training iterations at the
paper's patch size (the batch is reduced on CPU, and the table says so) and one test image, then
report parameters, FLOPs per training iteration (torch.utils.flop_counter, forward + backward of
every network the step runs, scaled linearly to the paper's batch), measured seconds per iteration
here, peak memory, and the paper's iterations -> estimated GPU-hours on REFERENCE_GPU.

Data: the paper datamodule where its data exists; else ``DatasetSpec.example_batch`` (a synthetic
batch of the paper's shapes) where the task declares one; else the smoke datamodule's real samples
cropped at the paper patch (resized to it where the samples are smaller).  The table names the source.
"""
from __future__ import annotations

import dataclasses
import os
import threading
import time
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torch.utils.flop_counter import FlopCounterMode

from benchmark.metrics.efficiency import count_params
from benchmark.results import atomic_write_text, cpu_model, now
from benchmark.specs import BuildContext, DatasetSpec, MethodSpec, TrainPlan
from benchmark.weights import require, weight_path

EVAL_ONLY_WEIGHTS = ("nrqm",)  # read by the test metrics only (Ma -> PI)
from datamodules.base import MissingDataError, weights_root

# the estimate's assumptions, printed with every table
REFERENCE_GPU = "NVIDIA A100-SXM4 (TF32 tensor cores: 156 TFLOP/s dense peak)"
REFERENCE_TFLOPS = 156.0
UTILISATION = 0.30          # assumed sustained fraction of peak for these convolutional nets
CPU_BATCH = 2               # training batch on CPU (the paper's batch on a GPU)


class _IterationProbe(L.Callback):
    """FLOPs of the first training iteration, wall time of the second."""

    def __init__(self):
        self.flops, self.seconds, self._counter, self._t0 = None, None, None, None

    def _sync(self, pl_module):
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == 0:
            self._counter = FlopCounterMode(display=False)
            self._counter.__enter__()
        else:
            self._sync(pl_module)
            self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if batch_idx == 0:
            self._counter.__exit__(None, None, None)
            self.flops = int(self._counter.get_total_flops())
        else:
            self._sync(pl_module)
            self.seconds = time.perf_counter() - self._t0


class _PeakRSS:
    """Peak resident memory of this process above its level at start (CPU has no allocator statistics)."""

    def __init__(self, every_s: float = 0.005):
        self.every_s, self.peak, self.base, self._stop = every_s, 0, 0, threading.Event()

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _poll(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            time.sleep(self.every_s)

    def __enter__(self):
        self.base = self.peak = self._rss()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    @property
    def mb(self) -> float:
        return (self.peak - self.base) / 2**20


def _resize_batch(batch: dict, patch: int) -> dict:
    """Every image tensor of ``batch`` resized so that the largest becomes ``patch`` pixels (the others
    keep their ratio to it, e.g. an SR LR input becomes patch / scale)."""
    imgs = {k: v for k, v in batch.items() if isinstance(v, torch.Tensor) and v.ndim == 4 and v.is_floating_point()}
    if not imgs or not patch:
        return batch
    top = max(v.shape[-1] for v in imgs.values())
    out = dict(batch)
    for k, v in imgs.items():
        size = max(1, round(patch * v.shape[-1] / top))
        out[k] = F.interpolate(v, size=(size, size), mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)
    return out


def _first(loader):
    return next(iter(loader))


def _data(dspec: DatasetSpec, ctx: BuildContext, plan: TrainPlan, batch_size: int):
    """-> (training batch, test batch or None, description of the data used)."""
    try:
        dm = dspec.datamodule(ctx, plan)
        dm.setup("fit")
        batch = _first(dm.train_dataloader())
        dm.setup("test")
        return batch, _first(dm.test_dataloader()), "paper data"
    except MissingDataError as exc:
        missing = str(exc).split(".")[0]
    smoke_ctx = dataclasses.replace(ctx, profile="smoke")
    test, smoke_dm = None, None
    try:
        smoke_dm = dspec.datamodule(smoke_ctx, plan)
        smoke_dm.setup("test")
        test = _first(smoke_dm.test_dataloader())
    except (MissingDataError, ValueError, RuntimeError):
        smoke_dm = None
    if dspec.example_batch is not None:
        return dspec.example_batch(ctx, plan, batch_size), test, \
            f"synthetic batch of the paper's shapes (paper data absent: {missing})"
    if smoke_dm is None:
        raise MissingDataError(f"{dspec.label}: neither the paper data nor the smoke samples",
                               Path(os.environ.get("MIRBENCH_DATA", "?")), "see README")
    try:
        smoke_dm.setup("fit")
        batch = _first(smoke_dm.train_dataloader())
        how = "cropped at"
        if plan.patch_size and max(v.shape[-1] for v in batch.values() if isinstance(v, torch.Tensor) and v.ndim == 4) \
                != plan.patch_size:
            batch, how = _resize_batch(batch, plan.patch_size), "resized to"
    except (ValueError, RuntimeError, IndexError):  # samples smaller than the paper patch
        smoke_dm = dspec.datamodule(smoke_ctx, dataclasses.replace(plan, patch_size=0, batch_size=1))
        smoke_dm.setup("fit")
        one = _first(smoke_dm.train_dataloader())
        batch = {k: (v.expand(batch_size, *v.shape[1:]).clone() if isinstance(v, torch.Tensor) and v.ndim == 4 else v)
                 for k, v in _resize_batch(one, plan.patch_size).items()}
        how = "resized to"
    return batch, test, f"real smoke samples {how} the paper patch (paper data absent: {missing})"


def _trainer(max_steps: int, callbacks=()) -> L.Trainer:
    cuda = torch.cuda.is_available()
    return L.Trainer(accelerator="gpu" if cuda else "cpu", devices=1, max_steps=max_steps, max_epochs=-1,
                     logger=False, enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
                     callbacks=list(callbacks))


def dry_run_one(task: str, ds_key: str, dspec: DatasetSpec, m_key: str, mspec: MethodSpec, seed: int = 0) -> dict:
    cuda = torch.cuda.is_available()
    L.seed_everything(seed, verbose=False)
    ctx = BuildContext(task, ds_key, "paper", dspec.scale, dspec.in_channels, weights_root(), seed)
    # files the training needs stop the dry run as they stop a real run; the Ma model (PI) is only read
    # by the evaluation, which the dry run does not score: its absence is reported, not fatal
    missing_eval = []
    for need in mspec.needs:
        if need in EVAL_ONLY_WEIGHTS:
            if not weight_path(need, ctx.weights_dir).is_file():
                missing_eval.append(need)
            continue
        require(need, ctx.weights_dir, why=f"{mspec.label} paper profile")
    module, plan = mspec.build(ctx)
    bs = plan.batch_size if cuda else min(plan.batch_size, CPU_BATCH)
    small = dataclasses.replace(plan, batch_size=bs)
    batch, test, source = _data(dspec, ctx, small, bs)
    row = {"method": m_key, "label": mspec.label, "dataset": ds_key, "data": source,
           "params_m": count_params(module.inference_net()) / 1e6, "paper_batch": plan.batch_size,
           "batch_used": bs, "patch": plan.patch_size, "paper_iterations": plan.max_steps,
           "init_from": mspec.init_from,
           "missing_for_evaluation": ", ".join(missing_eval)}
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    with _PeakRSS() as rss:
        if plan.max_steps > 0:
            probe = _IterationProbe()
            spb = getattr(module, "optimizer_steps_per_batch", 1)
            trainer = _trainer(2 * spb, [probe])
            trainer.fit(module, train_dataloaders=DataLoader([batch, batch], batch_size=None))
            flops_paper = probe.flops * plan.batch_size / bs
            row.update(flops_per_iter_t=flops_paper / 1e12, s_per_iter=probe.seconds,
                       gpu_hours=plan.max_steps * flops_paper / (REFERENCE_TFLOPS * 1e12 * UTILISATION) / 3600)
        if test is not None:
            module.configure_evaluation(dspec.eval, None)
            t0 = time.perf_counter()
            _trainer(0).test(module, dataloaders=DataLoader([test], batch_size=None), verbose=False)
            row.update(test_s=time.perf_counter() - t0, test_psnr=module.test_results.get("psnr"))
    row["peak_mem_mb"] = torch.cuda.max_memory_allocated() / 2**20 if cuda else rss.mb
    row["peak_mem_kind"] = "CUDA allocated" if cuda else "process RSS increase"
    return row


def _f(v, fmt: str) -> str:
    return "–" if v is None else format(v, fmt)


def to_markdown(task: str, rows: list[dict], command: str) -> str:
    cuda = torch.cuda.is_available()
    here = torch.cuda.get_device_name(0) if cuda else f"{cpu_model()}, {torch.get_num_threads()} threads"
    out = [f"# {task}: paper-profile dry run", "",
           f"`{command}` — {now()} on {here}.", "",
           "Each learned row built the paper-size model and data pipeline and ran 2 training iterations at the "
           "paper's patch size" + ("" if cuda else f" with the batch reduced to {CPU_BATCH} on CPU") +
           " and one test image. FLOPs per iteration: torch.utils.flop_counter over one whole training "
           "iteration (forward + backward of every network the step runs, e.g. discriminator and VGG loss), "
           "scaled linearly to the paper's batch. s/iter: the second iteration, measured here at the batch used. "
           f"GPU-hours: paper iterations x FLOPs per iteration / ({REFERENCE_TFLOPS:g} TFLOP/s x "
           f"{UTILISATION:.0%} assumed utilisation) on {REFERENCE_GPU}; data loading and validation not included.",
           "", "| Method | Dataset | Params (M) | Patch | Batch: paper (used) | TFLOP / iter | s / iter here | "
               "Peak mem (MB) | Test image (s) | Paper iterations | Est. GPU-hours | Data used |",
           "|" + "---|" * 12]
    for r in rows:
        if r.get("error"):
            out.append(f"| {r['label']} | {r['dataset']} | " + " | ".join(["–"] * 9) + f" | **failed**: {r['error']} |")
            continue
        note = f"; init_from {r['init_from']} not loaded (dry run)" if r.get("init_from") else ""
        if r.get("missing_for_evaluation"):
            note += f"; missing for the real run's evaluation: {r['missing_for_evaluation']}"
        out.append(f"| {r['label']} | {r['dataset']} | {r['params_m']:.3f} | {r['patch'] or 'whole'} | "
                   f"{r['paper_batch']} ({r['batch_used']}) | {_f(r.get('flops_per_iter_t'), '.3f')} | "
                   f"{_f(r.get('s_per_iter'), '.2f')} | {_f(r.get('peak_mem_mb'), '.0f')} | "
                   f"{_f(r.get('test_s'), '.2f')} | {r['paper_iterations']:,} | {_f(r.get('gpu_hours'), '.1f')} | "
                   f"{r['data']}{note} |")
    if rows and not cuda:
        out += ["", "Peak mem: increase of this process's resident memory during the row (CPU has no allocator "
                    "statistics); on a GPU it is torch.cuda.max_memory_allocated."]
    return "\n".join(out) + "\n"


def dry_run(task_name: str, methods: list[str] | None, datasets: list[str] | None, out_dir: Path,
            seed: int = 0, command: str = "") -> tuple[list[dict], Path]:
    from benchmark.runner import plan_runs
    task, pairs = plan_runs(task_name, methods, datasets)
    wanted = set(methods) if methods else set(task.METHODS)
    rows = []
    for d, m in pairs:
        if m not in wanted:
            continue  # an init_from dependency: the dry run loads nothing, so it need not run first
        mspec = task.METHODS[m]
        try:
            rows.append(dry_run_one(task_name, d, task.DATASETS[d], m, mspec, seed))
        except Exception as exc:  # noqa: BLE001 -- one row's error is reported, the others still run
            rows.append({"method": m, "label": mspec.label, "dataset": d, "error": f"{type(exc).__name__}: {exc}"})
    path = Path(out_dir) / f"{task_name}.dryrun.md"
    atomic_write_text(path, to_markdown(task_name, rows, command or f"python -m benchmark run --task {task_name} "
                                        "--profile paper --dry-run"))
    return rows, path
