"""The speed/cost scripts live in benchmark/perf/ and still start (their import graph is intact)."""
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["sr", "data"])
def test_perf_script_starts(name):
    proc = subprocess.run([sys.executable, "-m", f"benchmark.perf.{name}", "--help"], capture_output=True,
                          text=True, cwd=REPO, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"benchmark.perf.{name}" in proc.stdout
