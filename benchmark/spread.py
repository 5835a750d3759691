"""Measure how far learned smoke rows move between CPU set-ups (issue 7, item 11), the numbers
:data:`benchmark.regress.MEASURED_SPREAD` is built from.

Runs the same methods, same commit and seed, once per set-up in a fresh results folder, each in its
own process, and prints the largest |difference| per metric against the first set-up:

  python -m benchmark.spread --task sr --methods masrnet,masrgan,qegan --datasets pathimgsr_x4

Set-ups: the machine's default kernels with 1 thread; AVX2 kernels only (``ATEN_CPU_CAPABILITY=avx2``
for ATen, ``ONEDNN_MAX_CPU_ISA=AVX2`` for oneDNN: what a 2-core AVX2-only EPYC runs) with 1 thread;
default kernels with 2 threads.  A set-up the machine cannot emulate (e.g. AVX-512 on an AVX2 host)
gives the same kernels as the default and shows a spread of 0: the output says which ISA ran.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

SETUPS = {
    "default, 1 thread": {"OMP_NUM_THREADS": "1"},
    "avx2 kernels, 1 thread": {"OMP_NUM_THREADS": "1", "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
    "default, 2 threads": {"OMP_NUM_THREADS": "2"},
}


def _run(task: str, methods: str, datasets: str | None, env: dict, out: Path) -> dict[tuple[str, str], dict]:
    cmd = [sys.executable, "-m", "benchmark", "run", "--task", task, "--profile", "smoke", "--methods", methods,
           "--results-dir", str(out / "results"), "--runs-dir", str(out / "runs"),
           "--leaderboard-dir", str(out / "lb"), "--no-progress", "--keep-going"]
    if datasets:
        cmd += ["--datasets", datasets]
    subprocess.run(cmd, env=os.environ | env, check=True, stdout=subprocess.DEVNULL)
    records = {}
    for f in (out / "results").rglob("*.json"):
        r = json.loads(f.read_text())
        if r.get("status") == "ok":
            records[(r["dataset"], r["method"])] = r
    return records


def measure(task: str, methods: str, datasets: str | None) -> dict:
    runs = {}
    with tempfile.TemporaryDirectory(prefix="mirbench-spread-") as tmp:
        for i, (name, env) in enumerate(SETUPS.items()):
            print(f"[{i + 1}/{len(SETUPS)}] {name} ...", file=sys.stderr, flush=True)
            runs[name] = _run(task, methods, datasets, env, Path(tmp) / str(i))
    base_name = next(iter(SETUPS))
    base = runs[base_name]
    report = {"task": task, "base": base_name, "setups": {}}
    for name, recs in list(runs.items())[1:]:
        worst: dict[str, tuple[float, str]] = {}
        for key, r in recs.items():
            if key not in base:
                continue
            for m, v in r["metrics"].items():
                b = base[key]["metrics"].get(m)
                if isinstance(v, (int, float)) and isinstance(b, (int, float)) and v == v and b == b:
                    d = abs(v - b)
                    if d >= worst.get(m, (-1.0, ""))[0]:
                        worst[m] = (d, f"{key[1]}/{key[0]}")
        isa = {r["env"].get("cpu_isa") for r in recs.values()}
        report["setups"][name] = {"cpu_isa": sorted(i for i in isa if i), "max_abs_diff": {
            m: {"value": round(d, 6), "row": row} for m, (d, row) in sorted(worst.items())}}
    return report


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", required=True)
    p.add_argument("--methods", required=True)
    p.add_argument("--datasets")
    p.add_argument("--out", help="also write the report as JSON here")
    args = p.parse_args(argv)
    report = measure(args.task, args.methods, args.datasets)
    for name, s in report["setups"].items():
        print(f"{name} vs {report['base']} (ISA {', '.join(s['cpu_isa']) or '?'}):")
        for m, d in s["max_abs_diff"].items():
            print(f"  {m:14s} {d['value']:.6f}  ({d['row']})")
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
