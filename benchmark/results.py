"""Result records: one JSON file per (profile, task, dataset, method), written atomically.

A record is the unit of resume: a method whose record has status "ok" is skipped on the next run
(unless --force); a "failed" record keeps the error and is retried.  Files are replaced with
os.replace, so a crash mid-write never leaves a truncated or lost result.
"""
from __future__ import annotations

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


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             timeout=5, cwd=Path(__file__).resolve().parents[1])
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, timeout=5, cwd=Path(__file__).resolve().parents[1]).stdout.strip()
        return (out.stdout.strip() or "unknown") + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def environment(devices: int) -> dict[str, Any]:
    import lightning
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"commit": git_commit(), "hardware": gpu or (platform.processor() or platform.machine()),
            "accelerator": "cuda" if gpu else "cpu", "devices": devices, "cpu_count": os.cpu_count(),
            "torch": torch.__version__, "lightning": lightning.__version__, "python": platform.python_version()}


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
        return [ResultRecord(**json.loads(p.read_text())) for p in sorted(base.glob("*/*.json"))]
