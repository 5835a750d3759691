"""mirbench command line: run / leaderboard / regress / list.

  python -m benchmark run --task sr --profile smoke [--methods a,b] [--datasets d] [--devices N]
                          [--logger csv|wandb] [--force] [--keep-going]
  python -m benchmark run --task sr --profile paper --dry-run [--methods a,b]
  python -m benchmark leaderboard --task sr --profile smoke
  python -m benchmark regress --task sr [--current leaderboards/sr.json] [--baseline FILE]
  python -m benchmark list [--task sr]
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from rich.console import Console

console = Console(stderr=True)


def _csv(s: str | None) -> list[str] | None:
    return [x.strip() for x in s.split(",") if x.strip()] if s else None


def _paths(args) -> tuple[Path, Path, Path]:
    return (Path(args.results_dir or os.environ.get("MIRBENCH_RESULTS", "results")),
            Path(args.runs_dir or os.environ.get("MIRBENCH_RUNS", "runs")),
            Path(args.leaderboard_dir or os.environ.get("MIRBENCH_LEADERBOARDS", "leaderboards")))


def _summary(task: str, records) -> None:
    from rich.table import Table

    from benchmark.leaderboard import metric_cols
    cols = metric_cols(task)[:2]
    table = Table(title=f"{task}: this run")
    for c in ["method", "dataset", "status"] + [h for _, h, _ in cols] + ["time (s)"]:
        table.add_column(c, no_wrap=True)
    for r in records:
        vals = [("–" if r.metrics.get(k) is None else f"{r.metrics[k]:.{nd}f}") for k, _, nd in cols]
        status = "ok" if r.status == "ok" else f"[red]{(r.error or 'failed').split(':')[0]}[/]"
        table.add_row(r.method, r.dataset, status, *vals, f"{r.train.get('total_wall_s', 0):.1f}")
    console.print(table)


def _jobs(args) -> int:
    """``--jobs 0`` (auto): one row per CPU core for a CPU smoke run on one device, else one."""
    if args.jobs:
        return args.jobs
    import torch
    cpu_smoke = args.profile == "smoke" and args.devices == 1 and not torch.cuda.is_available()
    return (os.cpu_count() or 1) if cpu_smoke else 1


def cmd_run(args) -> int:
    from lightning.pytorch.utilities.rank_zero import rank_zero_only

    from benchmark.leaderboard import existing, write_leaderboard
    from benchmark.results import ResultStore
    from benchmark.runner import run_task
    results, runs, boards = _paths(args)
    if args.test_limit:
        os.environ["MIRBENCH_TEST_LIMIT"] = str(args.test_limit)  # inherited by DDP ranks
    if args.dry_run:
        from benchmark.dryrun import dry_run
        if args.profile != "paper":
            raise ValueError("--dry-run plans a paper run: use it with --profile paper")
        rows, path = dry_run(args.task, _csv(args.methods), _csv(args.datasets), boards, args.seed,
                             command="python -m benchmark " + " ".join(sys.argv[1:]) if sys.argv[1:] else "")
        print(path.read_text())
        console.print(f"wrote {path}")
        failed = [r for r in rows if r.get("error")]
        for r in failed:
            console.print(f"[red]failed[/]: {r['method']} on {r['dataset']}: {r['error']}")
        return 1 if failed and not args.keep_going else 0
    records = run_task(args.task, args.profile, _csv(args.methods), _csv(args.datasets), args.devices,
                       args.logger, args.force, results, runs, args.seed, progress=not args.no_progress,
                       jobs=_jobs(args))
    if rank_zero_only.rank != 0:
        return 0
    paths = write_leaderboard(args.task, args.profile, ResultStore(results).load(args.profile, args.task),
                              boards, runs, previous=existing(boards, args.task, args.profile))
    if records:
        _summary(args.task, records)
    console.print("wrote " + ", ".join(str(p) for p in paths.values()))
    failed = [r for r in records if r.status != "ok"]
    if failed:
        console.print(f"[red]{len(failed)} run(s) failed[/] (errors above; earlier ok results are kept): "
                      + ", ".join(f"{r.method}/{r.dataset} ({(r.error or '').split(':')[0]})" for r in failed))
        if args.keep_going:
            console.print("--keep-going: exit status 0 despite the failures")
    return 1 if failed and not args.keep_going else 0


def cmd_leaderboard(args) -> int:
    from benchmark.leaderboard import existing, write_leaderboard
    from benchmark.results import ResultStore
    results, runs, boards = _paths(args)
    paths = write_leaderboard(args.task, args.profile, ResultStore(results).load(args.profile, args.task), boards, runs,
                              previous=existing(boards, args.task, args.profile))
    console.print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def cmd_regress(args) -> int:
    from benchmark import regress
    from benchmark.leaderboard import stem
    _, _, boards = _paths(args)
    current_path = Path(args.current or boards / f"{stem(args.task, args.profile)}.json")
    if not current_path.is_file():
        console.print(f"[red]no leaderboard at {current_path}[/]: run `make bench TASK={args.task}` first")
        return 2
    current = regress._load(current_path)
    findings = []
    if args.baseline:
        baseline = regress._load(args.baseline)
    else:
        baseline = regress.committed_leaderboard(Path("leaderboards") / f"{stem(args.task, args.profile)}.json")
        if baseline is None:
            console.print("[yellow]no committed leaderboard to compare with; checking reported numbers only[/]")
    if baseline is not None:
        findings += regress.compare_runs(current, baseline)
    findings += regress.compare_reported(current)
    return 0 if regress.report(findings, show_all=args.all) else 1


def cmd_list(args) -> int:
    from benchmark.registry import TASKS, load_task
    for name in [args.task] if args.task else TASKS:
        try:
            task = load_task(name)
        except ImportError as exc:  # a broken task must not hide the others
            print(f"{name}: cannot be loaded ({exc})")
            continue
        print(f"{name}:")
        for d, spec in task.DATASETS.items():
            print(f"  dataset {d:14s} {spec.label}")
        for m, spec in task.METHODS.items():
            print(f"  method  {m:22s} {spec.kind:13s} {spec.label} [{', '.join(spec.datasets)}]")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmark", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    def common(sp, task_required=True):
        sp.add_argument("--task", required=task_required)
        sp.add_argument("--profile", default="smoke", choices=["smoke", "paper"])
        sp.add_argument("--results-dir")
        sp.add_argument("--runs-dir")
        sp.add_argument("--leaderboard-dir")

    r = sub.add_parser("run", help="train + evaluate every method of a task, write the leaderboard")
    common(r)
    r.add_argument("--methods", help="comma-separated method keys (default: all)")
    r.add_argument("--datasets", help="comma-separated dataset keys (default: all)")
    r.add_argument("--devices", type=int, default=1, help="N > 1: Lightning DDP")
    r.add_argument("--jobs", type=int, default=0,
                   help="rows run side by side on the CPU, each in its own process with cpu_count/N threads "
                        "(default 0 = auto: one per core for a CPU smoke run, else 1)")
    r.add_argument("--logger", default="csv", choices=["csv", "wandb"])
    r.add_argument("--force", action="store_true",
                   help="rerun methods that already have a result (their result and checkpoints are kept until the "
                        "rerun succeeds)")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--test-limit", type=int, help="evaluate on the first N test images only (recorded)")
    r.add_argument("--keep-going", action="store_true", help="exit 0 even if some runs failed (default: exit 1)")
    r.add_argument("--strict", action="store_true", help=argparse.SUPPRESS)  # the default now; kept for old scripts
    r.add_argument("--dry-run", action="store_true",
                   help="with --profile paper: build each paper-size method, run 2 iterations and one test image, "
                        "write leaderboards/<task>.dryrun.md (params, FLOPs, s/iter, memory, GPU-hour estimate)")
    r.add_argument("--no-progress", action="store_true")
    r.set_defaults(fn=cmd_run)
    lb = sub.add_parser("leaderboard", help="rebuild the leaderboard from stored results")
    common(lb)
    lb.set_defaults(fn=cmd_leaderboard)
    rg = sub.add_parser("regress", help="compare a leaderboard with the committed one and the papers")
    common(rg)
    rg.add_argument("--current")
    rg.add_argument("--baseline")
    rg.add_argument("--all", action="store_true", help="show every check, not only failures")
    rg.set_defaults(fn=cmd_regress)
    ls = sub.add_parser("list", help="list tasks, datasets and methods")
    ls.add_argument("--task")
    ls.set_defaults(fn=cmd_list)
    args = p.parse_args(argv)
    try:
        return args.fn(args)
    except KeyboardInterrupt:  # the runner has said how to resume (with or without --force)
        console.print("[yellow]interrupted[/]: finished results are kept")
        return 130
    except (ValueError, FileNotFoundError) as exc:
        console.print(f"[red]error[/]: {exc}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
