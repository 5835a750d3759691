"""Regression checks of a leaderboard.

(a) against the committed leaderboard of the same profile, two kinds of check, named per row in the
    output: training-free rows must reproduce exactly (EXACT_TOLERANCE: float summation order only);
    learned rows within LEARNED_TOLERANCE, derived from the measured run-to-run and machine-to-machine
    spread of smoke training (CPU kernels differ by ISA / oneDNN / thread count and training amplifies
    it).  A row that vanished or started failing is a regression.
(b) against the papers (reported.yaml) for rows whose protocol we reproduce exactly — the
    training-free baselines — within REPORTED_TOLERANCE, stated per dataset with its reason.
"""
from __future__ import annotations

import json
import math
import subprocess
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

# (a) training-free rows: same code and data give the same 8-bit outputs on any CPU; only the order of
# a float reduction (thread count) may move a mean, by a few ULP (tests/benchmark/test_ddp.py)
EXACT_TOLERANCE = 1e-9
# learned rows: a bound is 2x the largest |difference| measured between CPU set-ups for that metric
# (MEASURED_SPREAD), so a real regression (a changed default, a broken loss) still shows.
MEASURED_SPREAD = {
    # fresh `make bench TASK=sr` (smoke) on a 2-core AMD EPYC with AVX2 only, against the committed
    # leaderboard made on an AVX-512 machine, same commit and seed (issue 7, item 11): 12 of 128
    # checks moved; the largest |difference| per metric
    "avx2 vs avx512 machine": {"psnr": 0.16, "rmse": 0.90, "niqe": 0.03},   # QEGAN, QEGAN, MASRNet/T1+T2
    # `python -m benchmark.spread --task sr --methods masrnet,masrgan,qegan --datasets pathimgsr_x4`
    # on an AVX-512 EPYC, against default kernels with 1 thread (masrnet moves <= 0.01 dB; the GAN most)
    "ATEN_CPU_CAPABILITY=avx2 + ONEDNN_MAX_CPU_ISA=AVX2": {"psnr": 0.171, "ssim": 0.0004, "rmse": 0.032,
                                                          "niqe": 0.082},      # MASRGAN, -, QEGAN, MASRGAN
    "2 threads vs 1": {"psnr": 0.226, "ssim": 0.0006, "rmse": 0.103, "niqe": 0.203},  # MASRGAN, -, QEGAN, QEGAN
    # on one machine, runs at the same commit reproduce exactly (issue 7); with this runner a resumed
    # GAN run equals an uninterrupted one bit for bit (tests/benchmark/test_interrupt.py)
    "same machine, rerun or resume": {"psnr": 0.0, "ssim": 0.0, "rmse": 0.0, "niqe": 0.0},
}


def _twice_the_largest(spread: dict[str, dict[str, float]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for per_metric in spread.values():
        for m, v in per_metric.items():
            out[m] = max(out.get(m, 0.0), 2 * v)
    return out


# SSIM moved by <= 6e-4 in every measurement: its bound keeps the earlier provisional 0.01 (a GAN row's SSIM
# is the least stable, and a 17x margin still flags a broken loss); Ma has not been measured (no NRQM model
# here): provisional, as NIQE's.  Region metrics take the whole-image bounds.
_MEASURED = _twice_the_largest(MEASURED_SPREAD)
LEARNED_TOLERANCE = {"psnr": _MEASURED["psnr"], "ssim": 0.01, "niqe": _MEASURED["niqe"], "rmse": _MEASURED["rmse"],
                     "psnr_region": _MEASURED["psnr"], "ssim_region": 0.01, "ma": _MEASURED["niqe"]}
LEARNED_RELATIVE = 0.02      # metrics of other tasks not measured here (ie, dice, psnr_lr ...): 2 % of the value
RUN_TOLERANCE = LEARNED_TOLERANCE  # the name older callers import

# (b) training-free rows vs the papers, only where our data IS the paper's data: CRCHistoPhenotypes
# is the complete dataset (the paper's 20 test images are unstated: we test a seeded 20), and in the
# paper profile Kather is NCT-CRC-HE-100K as SNADN uses (the smoke profile has 32 CRC-VAL-HE-7K
# patches, another release: not comparable).  Measured differences and their causes are in README
# ("Reproducing the papers' baselines").  A bound is set as tight as that difference allows, so a
# convention slip shows: full-range Y lowers PSNR by 1.32 dB, RGB instead of Y by ~1 dB on CRCH.
REPORTED_TOLERANCE: dict[tuple[str, str, str], dict[str, float]] = {
    # (profile, dataset, method): {metric: absolute tolerance}
    ("smoke", "crchisto_x4", "bicubic"): {"psnr": 0.75, "ssim": 0.02},
    # the paper's nearest is 2.5 dB below ours with the same bicubic LR: its LR/upsampling for this
    # row is unstated (see README); bounded so that a change of ours still shows
    ("smoke", "crchisto_x4", "nearest"): {"psnr": 3.0, "ssim": 0.03},
    ("paper", "crchisto_x4", "bicubic"): {"psnr": 0.75, "ssim": 0.02},
    ("paper", "kather_x2", "bicubic"): {"psnr": 1.0, "ssim": 0.02},
    ("paper", "kather_x4", "bicubic"): {"psnr": 1.0, "ssim": 0.03},
}


def check_kind(row: dict) -> str:
    return "exact" if row.get("kind") == "training-free" else "learned"


# metrics scored by a network trained at evaluation time (interp's membrane segmenter), so they move
# with CPU kernels even on a training-free row; not measured across machines yet: a loose absolute bound
TRAINED_EVALUATOR_TOLERANCE = {"dice": 0.05, "f1": 0.05}


def tolerance(metric: str, kind: str, reference: float) -> float:
    if metric in TRAINED_EVALUATOR_TOLERANCE:
        return TRAINED_EVALUATOR_TOLERANCE[metric]
    if kind == "exact":
        return EXACT_TOLERANCE
    if metric in LEARNED_TOLERANCE:
        return LEARNED_TOLERANCE[metric]
    for prefix in ("psnr", "ssim"):
        if metric.startswith(prefix):
            return LEARNED_TOLERANCE[prefix]
    return abs(reference) * LEARNED_RELATIVE


_NOT_METRICS = {"n_images", "scale", "steps", "wall_s", "devices", "threads", "global_batch", "params_m",
                "flops_g", "latency_ms", "resumed_at_iteration"}


def _metric_keys(row: dict, task: str | None) -> list[str]:
    """The metrics a row reports: the task's leaderboard columns (any task) plus Ma."""
    from benchmark.leaderboard import metric_cols
    keys = [k for k, _, _ in metric_cols(task or row.get("task", ""))] + ["ma"]
    return [k for k in dict.fromkeys(keys) if k not in _NOT_METRICS]


@dataclass
class Finding:
    dataset: str
    method: str
    metric: str
    current: float | None
    reference: float | None
    tolerance: float | None
    against: str
    ok: bool
    note: str = ""
    check: str = ""          # exact | learned | paper


def _load(path_or_text) -> dict:
    if isinstance(path_or_text, dict):
        return path_or_text
    return json.loads(Path(path_or_text).read_text())


def committed_leaderboard(path: Path) -> dict | None:
    """The version of ``path`` in git HEAD (what CI compares a fresh run against)."""
    try:
        out = subprocess.run(["git", "show", f"HEAD:{path.as_posix()}"], capture_output=True, text=True,
                             timeout=10, cwd=Path(__file__).resolve().parents[1])
    except (OSError, subprocess.SubprocessError):
        return None
    return json.loads(out.stdout) if out.returncode == 0 else None


def _rows(lb: dict) -> dict[tuple[str, str], dict]:
    return {(r["dataset"], r["method"]): r for r in lb["rows"]}


def compare_runs(current: dict, baseline: dict, tol: dict[str, float] | None = None) -> list[Finding]:
    """Every ok row of ``baseline`` against ``current``: exact for training-free rows, within the learned
    tolerance for the others (``tol`` overrides the learned bounds).  Rows kept from an older
    leaderboard (not run here) are not checked."""
    if current.get("profile") != baseline.get("profile"):
        raise ValueError(f"profiles differ: {current.get('profile')} vs {baseline.get('profile')}")
    cur, base = _rows(current), _rows(baseline)
    out = []
    for key, b in base.items():
        if b["status"] != "ok" or b.get("same_as"):
            continue
        kind = check_kind(b)
        c = cur.get(key)
        if c is None:
            out.append(Finding(*key, "-", None, None, None, "committed", False,
                               "row missing (not run yet? `make bench` without METHODS runs every method)", kind))
            continue
        if c.get("kept"):
            continue  # not run in this checkout: nothing to compare
        if c["status"] != "ok":
            out.append(Finding(*key, "-", None, None, None, "committed", False, f"now failing: {c.get('error')}", kind))
            continue
        for metric in _metric_keys(b, baseline.get("task")):
            bv, cv = b.get(metric), c.get(metric)
            if bv is None:
                continue
            t = (tol or {}).get(metric) if kind == "learned" and tol else None
            t = tolerance(metric, kind, bv) if t is None else t
            ok = cv is not None and (math.isclose(cv, bv, abs_tol=t) or (math.isinf(cv) and cv == bv)
                                     or (math.isnan(cv) and math.isnan(bv)))
            out.append(Finding(*key, metric, cv, bv, t, "committed", ok, check=kind))
    return out


def compare_reported(current: dict, tol: dict[tuple[str, str, str], dict[str, float]] | None = None) -> list[Finding]:
    tol = tol or REPORTED_TOLERANCE
    out = []
    for (ds, method), r in _rows(current).items():
        bounds = tol.get((current.get("profile"), ds, method))
        if r["kind"] != "training-free" or r["status"] != "ok" or bounds is None:
            continue
        for metric, t in bounds.items():
            ref = r.get(f"reported_{metric}")
            if ref is None or r.get(metric) is None:
                continue
            ok = abs(r[metric] - ref) <= t
            out.append(Finding(ds, method, metric, r[metric], ref, t, r.get(f"reported_{metric}_source", "paper"), ok,
                               check="paper"))
    return out


def report(findings: list[Finding], console: Console | None = None, show_all: bool = False) -> bool:
    """Print the failures (or, with ``show_all``, every check); on success a one-line-per-group summary."""
    console = console or Console(width=160)
    bad = [f for f in findings if not f.ok]
    if bad or show_all:
        table = Table(title="regressions" if bad else "regression checks")
        for col in ("against", "check", "dataset", "method", "metric", "current", "reference", "diff", "tol", "ok"):
            table.add_column(col, no_wrap=True)
        for f in (findings if show_all else bad):
            diff = "–" if f.current is None or f.reference is None else f"{f.current - f.reference:+.4f}"
            table.add_row(f.against, f.check, f.dataset, f.method, f.metric, "–" if f.current is None else f"{f.current:.4f}",
                          "–" if f.reference is None else f"{f.reference:.4f}", diff,
                          "–" if f.tolerance is None else f"{f.tolerance:g}", "ok" if f.ok else f"[red]FAIL[/] {f.note}")
        console.print(table)
    else:
        table = Table(title="regression checks: all within tolerance")
        for col in ("against", "check", "metric", "checks", "max |diff|", "tolerance"):
            table.add_column(col, no_wrap=True)
        groups: dict[tuple[str, str, str], list[Finding]] = {}
        for f in findings:  # runs: one line per (kind, metric); paper checks: one per row, with their own bounds
            label = f.metric if f.against == "committed" else f"{f.dataset}/{f.method} {f.metric}"
            groups.setdefault((f.against, f.check, label), []).append(f)
        for (against, check, metric), fs in groups.items():
            diffs = [abs(f.current - f.reference) for f in fs if f.current is not None and f.reference is not None
                     and not math.isinf(f.current)]
            table.add_row(against, check, metric, str(len(fs)), f"{max(diffs):.2e}" if diffs else "–",
                          f"{fs[0].tolerance:g}" if fs[0].tolerance is not None else "–")
        console.print(table)
        kinds = {}
        for f in findings:
            if f.against == "committed":
                kinds.setdefault(f.check, set()).add(f"{f.dataset}/{f.method}")
        for k, rows in sorted(kinds.items()):
            console.print(f"{k} check: {', '.join(sorted(rows))}")
    console.print(f"{len(findings) - len(bad)} checks passed, {len(bad)} failed")
    return not bad
