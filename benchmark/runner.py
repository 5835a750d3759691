"""Run every (dataset x method) of a task: build, fit (resumable), test, record, one at a time (or, on
the CPU, ``jobs`` at a time in worker processes).

Data flow of one leaderboard row: DatasetSpec.datamodule -> MethodSpec.build -> Trainer.fit ->
Trainer.test -> Metric objects -> ResultRecord (atomic JSON) -> leaderboard.
Under DDP (``devices > 1``) Lightning re-launches this same command once per extra rank; every
rank walks the same plan and only rank 0 writes.

What a run leaves in ``runs/<profile>/<task>/<dataset>/<method>/``: ``checkpoints/iter_NNNNNN.ckpt``,
``last.ckpt`` (resume) and ``final.ckpt`` (the trained state, what ``MethodSpec.init_from`` loads);
``checkpoints.previous/`` while a ``--force`` rerun is under way (the last good run's, restored if
the rerun fails); ``samples/``; ``logs/``.
"""
from __future__ import annotations

import dataclasses
import gc
import logging
import multiprocessing
import os
import shutil
import sys
import time
import traceback
import warnings
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict
from pathlib import Path

import lightning as L
import torch
from lightning.fabric.utilities.warnings import PossibleUserWarning
from lightning.pytorch.callbacks import RichProgressBar
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from rich.console import Console

from benchmark.callbacks import ExactResume, FiniteLossGuard, IterationCheckpoint, TrainingCurve
from benchmark.loggers import log_sample_grid, make_logger
from benchmark.metrics.efficiency import measure
from benchmark.profiles import get_profile
from benchmark.registry import load_task, select_methods
from benchmark.results import ResultRecord, ResultStore, environment, git_commit
from benchmark.samples import save_samples
from benchmark.specs import BuildContext, DatasetSpec, MethodSpec
from benchmark.weights import require, weight_path
from datamodules.base import weights_root

console = Console(stderr=True)
logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # keep the runner's own lines readable
logging.getLogger("lightning.fabric").setLevel(logging.WARNING)
warnings.filterwarnings("ignore", message=r".*LeafSpec.*")  # a torch deprecation inside Lightning, not ours
# Lightning's "possible user error" hints (few workers, log interval > epoch, ...) are deliberate here
warnings.filterwarnings("ignore", category=PossibleUserWarning)
warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
warnings.filterwarnings("ignore", message=r".*Checkpoint directory .* exists and is not empty.*")
warnings.filterwarnings("ignore", message=r".*is an instance of `nn.Module` and is already saved during checkpointing.*")
warnings.filterwarnings("ignore", message=r".*Experiment logs directory .* exists and is not empty.*")
warnings.filterwarnings("ignore", message=r".*infer the `batch_size` from an ambiguous collection.*")
# manual optimisation (GAN): a checkpoint holds the state after the iteration's steps, which is what we resume from
warnings.filterwarnings("ignore", message=r".*ModelCheckpoint with manual optimization.*")

# how many validation points a training curve gets when the method's plan does not say
VAL_POINTS = 8


class RunInterrupted(KeyboardInterrupt):
    pass


def _check_links(task, m: str, d: str) -> None:
    spec = task.METHODS[m]
    for kind, other in (("init_from", spec.init_from), ("same_as", spec.same_as)):
        if other is None:
            continue
        if other not in task.METHODS:
            raise ValueError(f"method {m}: {kind}={other!r} is not a method of this task")
        if d not in task.METHODS[other].datasets:
            raise ValueError(f"method {m}: {kind}={other!r} does not run on {d}")


def plan_runs(task_name: str, methods: list[str] | None = None, datasets: list[str] | None = None):
    """[(dataset key, method key)] in registry order, only where the method runs on the dataset.

    A method with ``init_from`` follows the method it starts from (added if not selected); a method
    with ``same_as`` is not trained: the run it refers to is planned instead.  A requested method
    that runs on none of the requested datasets is an error, not a silent skip.
    """
    task = load_task(task_name)
    names = select_methods(task, methods)
    if datasets:
        unknown = [d for d in datasets if d not in task.DATASETS]
        if unknown:
            raise ValueError(f"unknown dataset(s) {unknown} for task {task_name}: known are {sorted(task.DATASETS)}")
    dsel = [d for d in task.DATASETS if not datasets or d in datasets]
    nowhere = [m for m in names if not any(d in task.METHODS[m].datasets for d in dsel)]
    if nowhere:
        raise ValueError("; ".join(f"{m} does not run on {', '.join(dsel)} (it runs on "
                                   f"{', '.join(task.METHODS[m].datasets)})" for m in nowhere))
    pairs: list[tuple[str, str]] = []

    def add(d: str, m: str, depth: int = 0) -> None:
        if depth > len(task.METHODS):
            raise ValueError(f"init_from / same_as of {m} form a cycle")
        _check_links(task, m, d)
        spec = task.METHODS[m]
        if spec.same_as:
            return add(d, spec.same_as, depth + 1)
        if spec.init_from:
            add(d, spec.init_from, depth + 1)
        if (d, m) not in pairs:
            pairs.append((d, m))

    for d in dsel:
        for m in names:
            if d in task.METHODS[m].datasets:
                add(d, m)
    return task, pairs


def unplanned(task, methods: list[str] | None, datasets: list[str] | None) -> list[str]:
    """'method on dataset' combinations the user named that do not exist (reported, then skipped)."""
    if not methods or not datasets:
        return []
    return [f"{m} does not run on {d} (it runs on {', '.join(task.METHODS[m].datasets)})"
            for d in datasets for m in methods if m in task.METHODS and d not in task.METHODS[m].datasets]


def _strategy(module: L.LightningModule, devices: int):
    if devices <= 1:
        return "auto"
    from lightning.pytorch.strategies import DDPStrategy
    # Manual optimisation (GAN) leaves one network without gradient in every backward by design: the
    # frozen discriminator in G's step, the generator behind sr.detach() in D's step, D in the pixel
    # pre-training phase.  DDP must be told (it then walks the autograd graph once per backward);
    # automatic-optimisation modules use every parameter and keep the cheaper default.
    return DDPStrategy(find_unused_parameters=not module.automatic_optimization)


def _trainer(run_dir: Path, devices: int, logger, module, max_steps: int, val_every: int | None, profile,
             progress: bool, callbacks=()) -> L.Trainer:
    cuda = torch.cuda.is_available()
    bar = progress and sys.stderr.isatty()
    return L.Trainer(
        accelerator="gpu" if cuda else "cpu", devices=devices, strategy=_strategy(module, devices),
        max_steps=max_steps, max_epochs=-1, deterministic=True if not cuda else "warn",
        use_distributed_sampler=False, logger=logger, default_root_dir=str(run_dir),
        callbacks=[FiniteLossGuard(), *callbacks, *([RichProgressBar()] if bar else [])],
        enable_progress_bar=bar, enable_model_summary=False, num_sanity_val_steps=0,
        limit_val_batches=1.0 if val_every else 0,
        val_check_interval=val_every, check_val_every_n_epoch=None if val_every else 1,
        log_every_n_steps=profile.log_every_n_steps)


def _barrier() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


def run_paths(runs_dir: Path, profile: str, task: str, dataset: str, method: str) -> dict[str, Path]:
    run_dir = Path(runs_dir) / profile / task / dataset / method
    return {"run": run_dir, "ckpt": run_dir / "checkpoints", "previous": run_dir / "checkpoints.previous",
            "final": run_dir / "checkpoints" / "final.ckpt", "last": run_dir / "checkpoints" / "last.ckpt"}


def final_checkpoint(runs_dir: Path, profile: str, task: str, dataset: str, method: str) -> Path:
    return run_paths(runs_dir, profile, task, dataset, method)["final"]


def _init_checkpoint(mspec: MethodSpec, runs_dir: Path, profile: str, task: str, dataset: str) -> Path | None:
    if not mspec.init_from:
        return None
    p = final_checkpoint(runs_dir, profile, task, dataset, mspec.init_from)
    if not p.is_file():
        raise FileNotFoundError(f"{mspec.label} starts from the trained {mspec.init_from}, whose final checkpoint "
                                f"{p} does not exist (did {mspec.init_from} fail? its error is above)")
    return p


def run_one(task_name: str, ds_key: str, dspec: DatasetSpec, m_key: str, mspec: MethodSpec, profile_name: str,
            devices: int, logger_kind: str, runs_dir: Path, force: bool, seed: int, progress: bool) -> ResultRecord:
    profile = get_profile(profile_name)
    paths = run_paths(runs_dir, profile_name, task_name, ds_key, m_key)
    run_dir, ckpt_dir = paths["run"], paths["ckpt"]
    L.seed_everything(seed, workers=True, verbose=False)
    init = _init_checkpoint(mspec, runs_dir, profile_name, task_name, ds_key)
    ctx = BuildContext(task_name, ds_key, profile_name, dspec.scale, dspec.in_channels, weights_root(), seed,
                       init_checkpoint=init)
    if profile_name == "paper":
        for need in mspec.needs:
            require(need, ctx.weights_dir, why=f"{mspec.label} paper profile")
    module, plan = mspec.build(ctx)
    dm = dspec.datamodule(ctx, plan)
    spb = getattr(module, "optimizer_steps_per_batch", 1)
    config = {"task": task_name, "dataset": ds_key, "method": m_key, "profile": profile_name,
              "plan": asdict(plan), "seed": seed, "hparams": dict(getattr(module, "hparams", {})),
              "steps_per_batch": spb, "init_from": mspec.init_from,
              "init_from_config": _config_hash_of(init) if init else None}
    logger = make_logger(logger_kind, run_dir, f"{task_name}/{ds_key}/{m_key}/{profile_name}", config)
    t0 = time.perf_counter()
    train_info = {"max_steps": plan.max_steps, "batch_size": plan.batch_size, "patch_size": plan.patch_size,
                  "notes": plan.notes, "resumed_from": None, "fidelity": mspec.fidelity,
                  "fidelity_note": mspec.fidelity_note, "protocol": mspec.protocol, "devices": devices,
                  "init_from": mspec.init_from, "init_checkpoint": str(init) if init else None}
    callbacks: list = []
    resume = ExactResume(seed, config)
    curve = TrainingCurve(plan.max_steps)
    val_every = None
    if plan.max_steps > 0:
        val_every = plan.val_every_n_steps or max(1, plan.max_steps // VAL_POINTS)
        every = plan.ckpt_every_n_steps or profile.ckpt_every_n_steps
        callbacks += [resume, curve, IterationCheckpoint(spb, dirpath=str(ckpt_dir), save_last=True, save_top_k=1,
                                                         every_n_train_steps=every * spb)]
        resume.wrap(dm)
        if hasattr(module, "configure_validation"):
            module.configure_validation(dspec.eval)
        _no_val_without_val_set(dm)
    trainer = _trainer(run_dir, devices, logger, module, plan.max_steps * spb, val_every, profile, progress,
                       callbacks)
    if plan.max_steps > 0:
        last = paths["last"]
        ckpt_path = None
        if last.is_file():
            info = resume.check(last)
            ckpt_path = str(last)
            train_info.update(resumed_from=str(last), resumed_at_iteration=info["iteration"])
        trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path)
        if trainer.interrupted:
            advice = "the same command without --force" if force else "the same command"
            raise RunInterrupted(f"{m_key} on {ds_key} interrupted at iteration {trainer.global_step // spb}; "
                                 f"rerun {advice} to resume from {last}")
        trainer.save_checkpoint(paths["final"])  # every rank calls it (barrier); rank 0 writes
        loader = trainer.train_dataloader
        per_device = getattr(getattr(loader, "loader", loader), "batch_size", None) or plan.batch_size
        train_info.update(steps=trainer.global_step // spb, epochs=trainer.current_epoch,
                          per_device_batch=per_device, global_batch=per_device * trainer.world_size,
                          final_checkpoint=str(paths["final"]), curve=curve.curve)
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
        grid = save_samples(module.test_samples, run_dir / "samples", getattr(module, "test_sample_names", {}))
        if grid is not None:
            log_sample_grid(logger, f"samples/{ds_key}/{m_key}", grid)
    if logger is not None:
        logger.finalize("success")
    return rec


def _config_hash_of(ckpt: Path) -> str | None:
    saved = torch.load(ckpt, map_location="cpu", weights_only=False, mmap=True).get("mirbench") or {}
    return saved.get("config_hash")


def _no_val_without_val_set(dm) -> None:
    make = dm.val_dataloader
    dm.val_dataloader = lambda: make() if getattr(dm, "val_set", True) is not None else []


# ---- a failure never costs a good result --------------------------------------------------------

def _pending(paths: dict[str, Path]) -> bool:
    """A --force rerun was started and has not finished (the last good checkpoints are set aside)."""
    return paths["previous"].is_dir()


def _set_aside(paths: dict[str, Path]) -> None:
    """--force: move the last good checkpoints aside (restored if the rerun fails, deleted once it succeeds)."""
    if rank_zero_only.rank == 0:
        if _pending(paths):
            shutil.rmtree(paths["ckpt"], ignore_errors=True)  # a partial earlier rerun: start it over
        elif paths["ckpt"].is_dir():
            paths["ckpt"].rename(paths["previous"])
    _barrier()


def _settle(paths: dict[str, Path], ok: bool) -> None:
    if rank_zero_only.rank == 0 and _pending(paths):
        if ok:
            shutil.rmtree(paths["previous"])
        else:
            shutil.rmtree(paths["ckpt"], ignore_errors=True)
            paths["previous"].rename(paths["ckpt"])
    _barrier()


def _needs_run(store: ResultStore, runs_dir: Path, profile: str, task_name: str, d: str, m: str,
               force: bool, dependency: bool) -> bool:
    paths = run_paths(runs_dir, profile, task_name, d, m)
    if force or _pending(paths) or not store.is_done(profile, task_name, d, m):
        return True
    return dependency and not paths["final"].is_file()  # init_from needs its final checkpoint


def run_task(task_name: str, profile: str = "smoke", methods: list[str] | None = None,
             datasets: list[str] | None = None, devices: int = 1, logger: str = "csv", force: bool = False,
             results_dir: Path = Path("results"), runs_dir: Path = Path("runs"), seed: int = 0,
             progress: bool = True, jobs: int = 1, worker: bool = False) -> list[ResultRecord]:
    """``jobs`` > 1 (CPU only): that many rows at a time, each in its own process (:func:`_run_in_processes`).
    ``worker``: a worker process of such a run: its parent printed the plan and schedules each row after
    its ``init_from`` row, so a missing ``init_from`` checkpoint is an error here, not trained again."""
    get_profile(profile)
    git_commit()  # recorded as of now, before any checkout change during a long run
    results_dir, runs_dir = Path(results_dir), Path(runs_dir)
    task, pairs = plan_runs(task_name, methods, datasets)
    requested = set(methods or task.METHODS)
    store = ResultStore(results_dir)
    need = {(d, m) for d, m in pairs
            if _needs_run(store, runs_dir, profile, task_name, d, m, force and m in requested, False)}
    for d, m in reversed(pairs):  # a method that will train needs its init_from's final checkpoint
        dep = task.METHODS[m].init_from
        if (d, m) in need and dep and _needs_run(store, runs_dir, profile, task_name, d, dep, False, True):
            need.add((d, dep))
    todo = [p for p in pairs if p in need and (not worker or p[1] in requested)]
    parallel = jobs > 1 and len(todo) > 1
    if parallel and (devices > 1 or torch.cuda.is_available()):
        raise ValueError("--jobs N > 1 runs rows side by side on the CPU; with a GPU or --devices > 1 use --jobs 1")
    rank0 = rank_zero_only.rank == 0
    if rank0 and not worker:
        for line in unplanned(task, methods, datasets):
            console.print(f"[yellow]skipped[/]: {line}")
        aliases = [m for m in (methods or task.METHODS) if task.METHODS[m].same_as]
        for m in aliases:
            console.print(f"{m}: same run as {task.METHODS[m].same_as} (not trained again; shown in both tables)")
        console.print(f"[bold]{task_name}[/] ({profile}): {len(pairs)} runs, {len(pairs) - len(todo)} done "
                      f"already, {len(todo)} to go" + (f", {jobs} at a time" if parallel else ""))
    if parallel:
        return _run_in_processes(task, task_name, todo, jobs, profile, logger,
                                 {p for p in todo if force and p[1] in requested}, results_dir, runs_dir, seed)
    records = []
    for i, (d, m) in enumerate(todo, 1):
        mspec, dspec = task.METHODS[m], task.DATASETS[d]
        paths = run_paths(runs_dir, profile, task_name, d, m)
        forced = force and m in requested
        if rank0 and not worker:
            console.print(f"[{i}/{len(todo)}] {m} on {d}" + (" (--force: previous checkpoints kept until it "
                                                             "succeeds)" if forced else ""))
        if forced:
            _set_aside(paths)
        t0 = time.perf_counter()
        try:
            rec = run_one(task_name, d, dspec, m, mspec, profile, devices, logger, runs_dir, forced, seed, progress)
        except (KeyboardInterrupt, SystemExit):  # Lightning turns Ctrl-C during fit into exit(1)
            if rank0:
                advice = "without --force " if force else ""
                console.print(f"[yellow]interrupted[/] during {m} on {d}: results written so far are kept; "
                              f"rerun the same command {advice}to resume from {paths['last']}"
                              + (" (the earlier result stays until the rerun succeeds)" if _pending(paths) else ""))
            raise
        except Exception as exc:  # noqa: BLE001 -- one failing method must not stop the others
            rec = ResultRecord(task=task_name, dataset=d, method=m, profile=profile, status="failed",
                               label=mspec.label, kind=mspec.kind, table=mspec.table, paper=mspec.paper,
                               scale=dspec.scale, error=f"{type(exc).__name__}: {exc}", env=environment(devices),
                               train={"traceback": traceback.format_exc(limit=8)})
        rec.train["total_wall_s"] = round(time.perf_counter() - t0, 2)
        _settle(paths, rec.status == "ok")
        if rank0:
            kept = store.write_result(rec)
            _print_line(task_name, rec, kept)
        records.append(rec)
        gc.collect()
    return records


def _committed_seconds(task_name: str, profile: str) -> dict[tuple[str, str], float]:
    """Each row's wall time in the committed leaderboard (leaderboards/<task>.json), if any."""
    from benchmark.leaderboard import existing
    board = existing(Path(__file__).resolve().parents[1] / "leaderboards", task_name, profile) or {}
    return {(r["dataset"], r["method"]): float(r["wall_s"]) for r in board.get("rows", [])
            if r.get("wall_s") is not None}


def longest_first(todo: list, deps: dict, seconds: dict) -> list:
    """``todo`` ordered by the time of each row plus the rows that wait for it, longest first (rows with
    no time on record first of all), so that the last rows of a parallel run do not run alone."""
    chain = {p: seconds.get(p, float("inf")) for p in todo}
    for child, parent in deps.items():
        if parent in chain:
            chain[parent] += seconds.get(child, 0.0)
    return sorted(todo, key=lambda p: -chain[p])  # stable: plan order among equals


def ready_rows(pending: list, running: list, deps: dict, free: int) -> list:
    """The first ``free`` rows of ``pending`` (in its order) whose ``init_from`` row (``deps``) is
    neither pending nor running."""
    blocked = set(pending) | set(running)
    return [p for p in pending if deps.get(p) not in blocked][:max(free, 0)]


def _worker_init(threads: int, commit: str) -> None:
    torch.set_num_threads(threads)
    os.environ["MIRBENCH_COMMIT"] = commit  # the parent's, read at its start (results.git_commit)


def _run_in_processes(task, task_name: str, todo: list[tuple[str, str]], jobs: int, profile: str, logger: str,
                      forced: set[tuple[str, str]], results_dir: Path, runs_dir: Path,
                      seed: int) -> list[ResultRecord]:
    """Rows side by side, ``jobs`` at a time, each row a serial :func:`run_task` in a worker process with
    ``cpu_count // jobs`` threads (tiny smoke networks gain little from a second thread, much from a
    second core); a row waits for its ``init_from`` row.  Records, resume and failures are those of a
    serial run: each worker writes its row's record; the rows' numbers do not depend on the order."""
    threads = max(1, (os.cpu_count() or 1) // jobs)
    deps = {(d, m): (d, task.METHODS[m].init_from) for d, m in todo if task.METHODS[m].init_from}
    pending, running, records = longest_first(todo, deps, _committed_seconds(task_name, profile)), {}, []
    pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_init,
                               initargs=(threads, git_commit()))
    try:
        while pending or running:
            for pair in ready_rows(pending, list(running.values()), deps, jobs - len(running)):
                pending.remove(pair)
                d, m = pair
                console.print(f"started {m} on {d}" + (" (--force: previous checkpoints kept until it succeeds)"
                                                       if pair in forced else ""))
                running[pool.submit(run_task, task_name, profile, [m], [d], 1, logger, pair in forced,
                                    results_dir, runs_dir, seed, False, 1, True)] = pair
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in done:
                d, m = running.pop(fut)
                try:
                    records += fut.result()
                except BrokenProcessPool as exc:
                    raise RuntimeError(f"the worker process running {m} on {d} died (out of memory?): results "
                                       "written so far are kept; rerun the same command to resume") from exc
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]: results written so far are kept; rerun the same command to resume")
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return records


def _print_line(task_name: str, rec: ResultRecord, kept_ok: bool) -> None:
    from benchmark.leaderboard import metric_cols
    if rec.status != "ok":
        console.print(f"  [red]failed[/] {rec.method} on {rec.dataset}: {rec.error}"
                      + ("  [yellow](its earlier ok result and checkpoints are kept)[/]" if kept_ok else ""))
        return
    shown = [(h, rec.metrics.get(k), nd) for k, h, nd in metric_cols(task_name)[:2]]
    values = "  ".join(f"{h} {v:.{nd}f}" for h, v, nd in shown if v is not None)
    console.print(f"  {rec.method} on {rec.dataset}: {values}  ({rec.train['total_wall_s']:.1f} s)")
