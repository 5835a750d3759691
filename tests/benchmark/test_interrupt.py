"""An interrupted GAN training keeps its checkpoint and no result; the rerun resumes and ends with the
same numbers as an uninterrupted run (per-iteration seeds + replayed training batches)."""
import json
import os
import subprocess
import sys

import pytest

from tests.benchmark.conftest_paths import REPO


def _run(root, mode, *extra):
    env = {**os.environ, "PYTHONPATH": str(REPO), "MIRBENCH_TEST_LIMIT": "3", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(REPO / "tests/benchmark/_interrupt_run.py"), str(root), mode, "gan",
                           *extra], capture_output=True, text=True, env=env, timeout=600, cwd=REPO)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")]
    return proc, json.loads(lines[0][len("RESULT "):]) if lines else None


@pytest.mark.timeout(900)
def test_interrupted_gan_resumes_to_the_uninterrupted_numbers(tmp_path):
    first, _ = _run(tmp_path / "a", "interrupt")
    assert first.returncode != 0, first.stdout + first.stderr
    ckpts = tmp_path / "a/runs/smoke/sr/kather_x4/tiny_gan/checkpoints"
    assert (ckpts / "last.ckpt").is_file() and (ckpts / "iter_000004.ckpt").is_file()  # readable names
    assert "rerun the same command to resume" in " ".join(first.stderr.split())  # rich wraps lines
    assert not (tmp_path / "a/results/smoke/sr/kather_x4/tiny_gan.json").exists()
    second, resumed = _run(tmp_path / "a", "resume")
    assert second.returncode == 0, second.stderr[-3000:]
    full, straight = _run(tmp_path / "b", "full")
    assert full.returncode == 0, full.stderr[-3000:]
    assert resumed["status"] == straight["status"] == "ok"
    assert resumed["train"]["resumed_at_iteration"] == 4 and straight["train"]["resumed_from"] is None
    assert resumed["train"]["steps"] == straight["train"]["steps"] == 8
    assert resumed["per_image"] == straight["per_image"]
    assert resumed["metrics"] == straight["metrics"]
    rc, sc = resumed["train"]["curve"], straight["train"]["curve"]
    assert (rc["iteration"], rc["loss"]) == (sc["iteration"], sc["loss"])  # the loss curve survives the interruption
    # validation points: those after the last checkpoint before the interruption are lost (and Lightning
    # does not validate on the first iteration after a restart); the others are the same numbers
    rv, sv = dict(zip(rc["val_iteration"], rc["val_psnr"])), dict(zip(sc["val_iteration"], sc["val_psnr"]))
    # (the smoke Kather split has no validation image per class, so this run may record none)
    assert rv.items() <= sv.items()
    assert (ckpts / "final.ckpt").is_file()
