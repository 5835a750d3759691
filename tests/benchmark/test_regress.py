"""`regress` passes on a fresh smoke bench of the training-free slice and fails on perturbed copies."""
import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmark import regress
from benchmark.leaderboard import write_leaderboard
from benchmark.results import ResultStore
from benchmark.runner import run_task

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bench")
    run_task("sr", "smoke", ["nearest", "bicubic"], ["crchisto_x4", "kather_x2", "kather_x4"],
             results_dir=tmp / "results", runs_dir=tmp / "runs", progress=False)
    paths = write_leaderboard("sr", "smoke", ResultStore(tmp / "results").load("smoke", "sr"), tmp / "lb")
    return paths["json"]


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "benchmark", "regress", "--task", "sr", *args],
                          capture_output=True, text=True, cwd=REPO, timeout=1200)


def test_passes_against_itself_and_the_papers(board):
    lb = json.loads(board.read_text())
    findings = regress.compare_runs(lb, lb) + regress.compare_reported(lb)
    assert findings and all(f.ok for f in findings)
    assert {f.against for f in findings} == {"committed", "rvtt Table 1"}  # smoke Kather is another release
    proc = _cli("--current", str(board), "--baseline", str(board))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_fails_on_a_perturbed_copy(board, tmp_path):
    lb = json.loads(board.read_text())
    bad = copy.deepcopy(lb)
    row = next(r for r in bad["rows"] if r["method"] == "bicubic" and r["dataset"] == "kather_x4")
    row["psnr"] += 0.05
    failed = [f for f in regress.compare_runs(bad, lb) if not f.ok]
    assert [(f.dataset, f.method, f.metric) for f in failed] == [("kather_x4", "bicubic", "psnr")]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    proc = _cli("--current", str(path), "--baseline", str(board))
    assert proc.returncode == 1 and "FAIL" in proc.stdout


def test_missing_or_failing_rows_are_regressions(board):
    lb = json.loads(board.read_text())
    gone = copy.deepcopy(lb)
    gone["rows"] = [r for r in gone["rows"] if r["method"] != "nearest"]
    assert sum(not f.ok for f in regress.compare_runs(gone, lb)) == 3
    broken = copy.deepcopy(lb)
    broken["rows"][0].update(status="failed", error="NonFiniteLossError")
    assert any("now failing" in f.note for f in regress.compare_runs(broken, lb))


def test_convention_slip_is_caught_against_the_papers(board):
    """Full-range Y lowers every PSNR by 1.32 dB: the paper check must notice on CRCH."""
    lb = json.loads(board.read_text())
    slipped = copy.deepcopy(lb)
    for r in slipped["rows"]:
        if r["dataset"] == "crchisto_x4" and r["method"] == "bicubic":
            r["psnr"] -= 1.32
    bad = [f for f in regress.compare_reported(slipped) if not f.ok]
    assert [(f.dataset, f.method, f.metric) for f in bad] == [("crchisto_x4", "bicubic", "psnr")]


def test_profiles_are_never_compared(board):
    lb = json.loads(board.read_text())
    other = dict(lb, profile="paper")
    with pytest.raises(ValueError, match="profiles differ"):
        regress.compare_runs(other, lb)


def test_learned_rows_get_the_measured_tolerance_and_the_output_names_the_check(board, tmp_path):
    lb = json.loads(board.read_text())
    learned = copy.deepcopy(lb)
    row = next(r for r in learned["rows"] if r["method"] == "bicubic" and r["dataset"] == "kather_x4")
    row.update(kind="baseline", method="tiny", label="Tiny")
    moved = copy.deepcopy(learned)
    next(r for r in moved["rows"] if r["method"] == "tiny")["psnr"] += regress.LEARNED_TOLERANCE["psnr"] / 2
    fs = [f for f in regress.compare_runs(moved, learned) if f.method == "tiny"]
    assert fs and all(f.check == "learned" and f.ok for f in fs)
    next(r for r in moved["rows"] if r["method"] == "tiny")["psnr"] += regress.LEARNED_TOLERANCE["psnr"]
    assert [f.metric for f in regress.compare_runs(moved, learned) if not f.ok] == ["psnr"]
    assert {f.check for f in regress.compare_runs(learned, learned) if f.method != "tiny"} == {"exact"}
    # other tasks' metric keys are checked too (relative bound where none was measured)
    assert regress.tolerance("ie", "learned", 0.8) == 0.8 * regress.LEARNED_RELATIVE
    # scored by a segmenter trained at evaluation time: a bound of its own, on training-free rows too
    assert regress.tolerance("dice", "exact", 0.08) == regress.tolerance("dice", "learned", 0.8) == 0.05
    assert regress.tolerance("psnr_lr", "learned", 30.0) == regress.LEARNED_TOLERANCE["psnr"]
    path_a, path_b = tmp_path / "a.json", tmp_path / "b.json"
    path_a.write_text(json.dumps(learned))
    path_b.write_text(json.dumps(learned))
    proc = _cli("--current", str(path_a), "--baseline", str(path_b))
    assert proc.returncode == 0 and "learned check: kather_x4/tiny" in proc.stdout and "exact check:" in proc.stdout
