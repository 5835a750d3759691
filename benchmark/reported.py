"""The papers' reported numbers (leaderboards/reported.yaml), looked up by dataset, scale and method."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import yaml

REPORTED = Path(__file__).resolve().parents[1] / "leaderboards" / "reported.yaml"


@lru_cache(maxsize=4)
def load_reported(path: Path = REPORTED) -> dict:
    with open(path) as f:
        return yaml.safe_load(f)


def reported_for(dataset: str, scale: int | None, method: str, path: Path = REPORTED) -> dict[str, dict]:
    """metric -> {value, paper, table, label} for whole-image results of this dataset/scale/method.

    Single-image figure captions (``scope: single_image``) and numbers derived in the prose are left
    out: a leaderboard compares set means with set means.
    """
    out: dict[str, dict] = {}
    for e in load_reported(path)["entries"]:
        if (e.get("dataset") != dataset or e.get("method") != method or e.get("scope") == "single_image"
                or e.get("derived") or (scale is not None and e.get("scale") not in (None, scale))):
            continue
        metric = e["metric"] + ("_region" if e.get("region") == "corrupted" else "")
        out.setdefault(metric, {"value": float(e["value"]), "paper": e["paper"], "table": e.get("table", ""),
                                "label": e.get("label", method)})
    return out
