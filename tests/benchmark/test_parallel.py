"""`run --jobs N`: rows side by side in worker processes give the serial run's records; a row waits for
its init_from row, and a worker never trains that row itself."""
import json
import os
import subprocess
import sys

from benchmark.runner import longest_first, ready_rows, run_task
from tests.benchmark.conftest_paths import REPO

ROWS = [("kather_x2", "nearest"), ("kather_x2", "bicubic"), ("kather_x4", "nearest"), ("kather_x4", "bicubic")]


def _run(tmp_path, name, jobs):
    env = {**os.environ, "PYTHONPATH": str(REPO), "MIRBENCH_TEST_LIMIT": "3", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "benchmark", "run", "--task", "sr", "--methods", "nearest,bicubic",
                           "--datasets", "kather_x2,kather_x4", "--jobs", str(jobs), "--no-progress",
                           "--results-dir", str(tmp_path / name / "r"), "--runs-dir", str(tmp_path / name / "runs"),
                           "--leaderboard-dir", str(tmp_path / name / "lb")],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc.stderr, {(d, m): json.loads((tmp_path / name / f"r/smoke/sr/{d}/{m}.json").read_text())
                         for d, m in ROWS}


def test_parallel_rows_give_the_serial_records(tmp_path):
    out, parallel = _run(tmp_path, "parallel", 2)
    assert "4 to go, 2 at a time" in out and out.count("started ") == 4
    _, serial = _run(tmp_path, "serial", 1)
    for row in ROWS:
        assert parallel[row]["metrics"] == serial[row]["metrics"], row
        assert parallel[row]["per_image"] == serial[row]["per_image"], row
        assert parallel[row]["env"]["commit"] == serial[row]["env"]["commit"]
        assert parallel[row]["env"]["threads"] == max(1, (os.cpu_count() or 1) // 2)
    lb = json.loads((tmp_path / "parallel/lb/sr.json").read_text())
    assert {(r["dataset"], r["method"]) for r in lb["rows"]} >= set(ROWS)


def test_a_row_waits_for_its_init_from_row():
    a, b, c = ("x2", "irn"), ("x2", "irn_rescale"), ("x4", "irn")
    deps = {b: a}
    assert ready_rows([a, b, c], [], deps, 2) == [a, c]
    assert ready_rows([b, c], [a], deps, 1) == [c]            # irn still running: its rescale row waits
    assert ready_rows([b], [c], deps, 1) == [b]
    assert ready_rows([b], [c], deps, 0) == []


def test_a_worker_does_not_train_the_init_from_row(tmp_path):
    recs = run_task("sr", "smoke", ["masrgan"], ["pathimgsr_x4"], results_dir=tmp_path / "r",
                    runs_dir=tmp_path / "runs", progress=False, worker=True)
    assert [(r.method, r.status) for r in recs] == [("masrgan", "failed")]
    assert "starts from the trained masrnet" in recs[0].error
    assert not (tmp_path / "runs/smoke/sr/pathimgsr_x4/masrnet").exists()


def test_rows_start_longest_first_counting_the_rows_that_wait_for_them():
    a, b, c, new = ("x2", "irn"), ("x2", "irn_rescale"), ("x4", "csnl"), ("x4", "new_method")
    seconds = {a: 100.0, b: 30.0, c: 120.0}
    assert longest_first([a, b, c, new], {b: a}, seconds) == [new, a, c, b]   # irn + its rescale row: 130 s


def test_ctrl_c_stops_every_worker_and_the_rerun_resumes_each_row(tmp_path):
    """Two real rows side by side (dualsr SRGAN x2 / x4), Ctrl-C to the process group once both have a
    checkpoint: exit 130, the resume advice, no result; the same command then resumes both rows."""
    import signal
    import time
    env = {**os.environ, "PYTHONPATH": str(REPO), "MIRBENCH_TEST_LIMIT": "2", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "benchmark", "run", "--task", "dualsr", "--methods", "srgan", "--jobs", "2",
           "--no-progress", "--results-dir", str(tmp_path / "r"), "--runs-dir", str(tmp_path / "runs"),
           "--leaderboard-dir", str(tmp_path / "lb")]
    ckpts = [tmp_path / f"runs/smoke/dualsr/{d}/srgan/checkpoints/last.ckpt" for d in ("kather_x2", "kather_x4")]
    # SIG_DFL first: a shell that starts pytest in the background (`... &`) makes it ignore SIGINT, which
    # its children inherit, and Python then installs no KeyboardInterrupt handler
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 300
    while not all(c.is_file() for c in ckpts) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode != 0, err[-2000:]
    assert "rerun the same command to resume" in " ".join(err.split())
    assert not list((tmp_path / "r").rglob("srgan.json"))
    again = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    for d in ("kather_x2", "kather_x4"):
        rec = json.loads((tmp_path / f"r/smoke/dualsr/{d}/srgan.json").read_text())
        assert rec["status"] == "ok" and rec["train"]["resumed_at_iteration"] >= 50
