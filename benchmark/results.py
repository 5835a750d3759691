"""Result records: one JSON file per (profile, task, dataset, method), written atomically.

A record is the unit of resume: a method whose record has status "ok" is skipped on the next run
(unless --force); a "failed" record keeps the error and is retried.  A failure never replaces an ok
record: it is written beside it (``<method>.failed.json``) and shown in the leaderboard's notes.
Files are replaced with os.replace, so a crash mid-write never leaves a truncated or lost result.
"""
from __future__ import annotations

import functools
import json
import os
import platform
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch


@dataclass
class ResultRecord:
    task: str
    dataset: str
    method: str
    profile: str
    status: str                                   # "ok" | "failed"
    label: str = ""
    kind: str = ""
    table: str = ""
    paper: str = ""
    scale: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    convention: dict[str, Any] = field(default_factory=dict)
    efficiency: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)   # steps, epochs, wall time, notes
    env: dict[str, Any] = field(default_factory=dict)     # commit, hardware, versions
    per_image: dict[str, list] = field(default_factory=dict)
    error: str | None = None
    finished: str = ""

    @property
    def key(self) -> tuple[str, str]:
        return (self.dataset, self.method)


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@functools.lru_cache(maxsize=1)
def git_commit() -> str:
    """The checkout's commit (+dirty), read once per process: the code a run imported at its start,
    not whatever the checkout holds when a later record is written.  ``MIRBENCH_COMMIT``: the one a
    parallel run's parent process read (its worker processes record that)."""
    if os.environ.get("MIRBENCH_COMMIT"):
        return os.environ["MIRBENCH_COMMIT"]
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             timeout=5, cwd=Path(__file__).resolve().parents[1])
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, timeout=5, cwd=Path(__file__).resolve().parents[1]).stdout.strip()
        return (out.stdout.strip() or "unknown") + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def onednn_version() -> str | None:
    import re
    m = re.search(r"(?:oneDNN|MKL-DNN) v([\d.]+)", torch.__config__.show())
    return m.group(1) if m else None


def environment(devices: int) -> dict[str, Any]:
    """Where a result was measured: CPU kernels differ between machines (ISA, oneDNN, threads), and a
    learned run amplifies the difference, so the regression check needs to know."""
    import lightning
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"commit": git_commit(), "hardware": gpu or cpu_model(), "cpu": cpu_model(),
            "cpu_isa": torch.backends.cpu.get_cpu_capability(), "onednn": onednn_version(),
            "threads": torch.get_num_threads(), "accelerator": "cuda" if gpu else "cpu", "devices": devices,
            "cpu_count": os.cpu_count(), "torch": torch.__version__, "lightning": lightning.__version__,
            "cuda": torch.version.cuda if gpu else None, "python": platform.python_version()}


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class ResultStore:
    """results/<profile>/<task>/<dataset>/<method>.json"""

    def __init__(self, root: Path):
        self.root = Path(root)

    def path(self, profile: str, task: str, dataset: str, method: str) -> Path:
        return self.root / profile / task / dataset / f"{method}.json"

    def write(self, rec: ResultRecord) -> Path:
        rec.finished = rec.finished or now()
        p = self.path(rec.profile, rec.task, rec.dataset, rec.method)
        atomic_write_text(p, json.dumps(asdict(rec), indent=2, sort_keys=True, default=float) + "\n")
        return p

    def failure_path(self, profile: str, task: str, dataset: str, method: str) -> Path:
        return self.path(profile, task, dataset, method).with_suffix(".failed.json")

    def write_result(self, rec: ResultRecord) -> bool:
        """Write ``rec``; a failure beside an ok record goes to the .failed.json file instead (returns
        True then: the ok result is kept).  A success clears any earlier failure note."""
        fail = self.failure_path(rec.profile, rec.task, rec.dataset, rec.method)
        if rec.status != "ok" and self.is_done(rec.profile, rec.task, rec.dataset, rec.method):
            rec.finished = rec.finished or now()
            atomic_write_text(fail, json.dumps(asdict(rec), indent=2, sort_keys=True, default=float) + "\n")
            return True
        self.write(rec)
        fail.unlink(missing_ok=True)
        return False

    def read(self, profile: str, task: str, dataset: str, method: str) -> ResultRecord | None:
        p = self.path(profile, task, dataset, method)
        if not p.is_file():
            return None
        return ResultRecord(**json.loads(p.read_text()))

    def is_done(self, profile: str, task: str, dataset: str, method: str) -> bool:
        rec = self.read(profile, task, dataset, method)
        return rec is not None and rec.status == "ok"

    def load(self, profile: str, task: str) -> list[ResultRecord]:
        base = self.root / profile / task
        out = []
        for p in sorted(base.glob("*/*.json")):
            if p.name.endswith(".failed.json"):
                continue
            rec = ResultRecord(**json.loads(p.read_text()))
            fail = p.with_suffix(".failed.json")
            if fail.is_file():
                rec.train = {**rec.train, "last_failure": json.loads(fail.read_text()).get("error")}
            out.append(rec)
        return out
