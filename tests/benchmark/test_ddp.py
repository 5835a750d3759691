"""Two-process CPU DDP (gloo, strategy ddp) evaluates exactly like one process: no padded or
duplicated test images, identical per-image scores and means."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _bench(tmp_path: Path, devices: int) -> dict:
    out = tmp_path / f"d{devices}"
    # Lightning gives each CPU DDP rank cpu_count // world_size threads; torch's parallel reductions
    # round differently with another thread count (1 ULP), so both runs use one thread per process
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "benchmark", "run", "--task", "sr", "--methods", "nearest,bicubic",
           "--datasets", "kather_x4", "--devices", str(devices), "--test-limit", "7", "--no-progress",
           "--results-dir", str(out / "results"), "--runs-dir", str(out / "runs"), "--leaderboard-dir", str(out / "lb")]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return {m: json.loads((out / f"results/smoke/sr/kather_x4/{m}.json").read_text()) for m in ("nearest", "bicubic")}


@pytest.mark.timeout(900)
def test_two_process_ddp_metrics_equal_single_process(tmp_path):
    one, two = _bench(tmp_path, 1), _bench(tmp_path, 2)
    for m in ("nearest", "bicubic"):
        assert two[m]["env"]["devices"] == 2
        assert two[m]["metrics"]["n_images"] == one[m]["metrics"]["n_images"] == 7  # odd: padding would show
        assert two[m]["per_image"] == one[m]["per_image"]
        for k, v in one[m]["metrics"].items():
            assert two[m]["metrics"][k] == v, (m, k)  # bit-identical


@pytest.mark.timeout(900)
def test_two_process_ddp_gan_and_rvtt_train_and_evaluate_every_image_once(tmp_path):
    """Manual optimisation under DDP (find_unused_parameters where a step leaves a network without
    gradient): a GAN and rVTT T1+T2 train, test on an odd number of images, each exactly once."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "MIRBENCH_TEST_LIMIT": "5"}
    proc = subprocess.run([sys.executable, str(REPO / "tests/benchmark/_ddp_train.py"), str(tmp_path), "2"],
                          capture_output=True, text=True, env=env, timeout=900, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-4000:]
    lines = [json.loads(ln[len("RESULT "):]) for ln in proc.stdout.splitlines() if ln.startswith("RESULT")]
    assert [r["method"] for r in lines] == ["tiny_gan", "rvtt_t1_t2"], proc.stdout  # rank 0 alone reports
    for r in lines:
        assert r["status"] == "ok", r["error"]
        assert r["env"]["devices"] == 2 and r["train"]["devices"] == 2
        assert r["train"]["global_batch"] == 2 * r["train"]["per_device_batch"]
        assert r["n_images"] == 5 and sorted(r["per_image"]["index"]) == list(range(5))  # no padding, no repeats
    assert [r["train"]["steps"] for r in lines] == [4, 2]
