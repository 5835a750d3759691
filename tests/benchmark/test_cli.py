"""The command line: one clear message and a non-zero exit for bad input; W&B never needs a network."""
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "benchmark", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=1200, env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})


def test_unknown_method_is_one_clear_error():
    proc = _cli("run", "--task", "sr", "--methods", "bicubc", "--no-progress")
    assert proc.returncode == 2
    assert "unknown method(s) ['bicubc']" in proc.stderr and "bicubic" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_list_shows_every_sr_method():
    out = _cli("list", "--task", "sr").stdout
    for key in ("nearest", "bicubic", "masrnet", "masrgan_d_patchgan", "rvtt_t1_t2", "ignn", "spsr"):
        assert key in out


def test_wandb_logger_runs_offline_without_network(tmp_path):
    proc = _cli("run", "--task", "sr", "--methods", "bicubic", "--datasets", "kather_x4", "--logger", "wandb",
                "--no-progress", "--results-dir", str(tmp_path / "r"), "--runs-dir", str(tmp_path / "runs"),
                "--leaderboard-dir", str(tmp_path / "lb"),
                env={"WANDB_MODE": "offline", "WANDB_SILENT": "true", "HTTPS_PROXY": "http://127.0.0.1:9"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    rec = json.loads((tmp_path / "r/smoke/sr/kather_x4/bicubic.json").read_text())
    assert rec["status"] == "ok"
    runs = list((tmp_path / "runs/smoke/sr/kather_x4/bicubic/wandb").glob("offline-run-*"))
    assert runs, "no offline W&B run was written"


def test_failed_runs_make_a_non_zero_exit_unless_keep_going(tmp_path):
    args = ["run", "--task", "sr", "--methods", "bicubic", "--datasets", "kather_x4", "--no-progress",
            "--results-dir", str(tmp_path / "r"), "--runs-dir", str(tmp_path / "runs"), "--leaderboard-dir",
            str(tmp_path / "lb")]
    proc = _cli(*args, env={"MIRBENCH_DATA": str(tmp_path / "nowhere")})
    assert proc.returncode == 1, proc.stderr[-2000:]
    err = " ".join(proc.stderr.split())  # rich wraps long lines
    assert "MissingDataError" in err and "1 run(s) failed" in err
    proc = _cli(*args, "--keep-going", env={"MIRBENCH_DATA": str(tmp_path / "nowhere")})
    assert proc.returncode == 0 and "--keep-going" in proc.stderr


def test_a_method_on_a_dataset_it_does_not_run_on_is_reported():
    proc = _cli("run", "--task", "sr", "--methods", "rcan", "--datasets", "crchisto_x4", "--no-progress")
    assert proc.returncode == 2 and "rcan does not run on crchisto_x4" in " ".join(proc.stderr.split())
