"""An interrupted training keeps its checkpoint and no result; the rerun resumes and finishes."""
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _run(tmp_path, mode):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, str(REPO / "tests/benchmark/_interrupt_run.py"), str(tmp_path), mode],
                          capture_output=True, text=True, env=env, timeout=300, cwd=REPO)


def test_interrupted_run_resumes_from_its_last_checkpoint(tmp_path):
    first = _run(tmp_path, "interrupt")
    assert first.returncode != 0, first.stdout + first.stderr
    ckpt = tmp_path / "runs/smoke/sr/kather_x4/tiny/checkpoints/last.ckpt"
    assert ckpt.is_file()
    assert not (tmp_path / "results/smoke/sr/kather_x4/tiny.json").exists()
    second = _run(tmp_path, "resume")
    assert second.returncode == 0, second.stderr[-3000:]
    line = [ln for ln in second.stdout.splitlines() if ln.startswith("RESULT")][0]
    status, resumed, steps = line.split()[1:]
    assert status == "ok" and resumed.endswith("last.ckpt") and steps == "8"
