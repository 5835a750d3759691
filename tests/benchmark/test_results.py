import json
import os

import pytest

from benchmark.results import ResultRecord, ResultStore, atomic_write_text


def _rec(**kw):
    base = dict(task="sr", dataset="kather_x4", method="bicubic", profile="smoke", status="ok", metrics={"psnr": 25.0})
    return ResultRecord(**{**base, **kw})


def test_roundtrip_and_done(tmp_path):
    store = ResultStore(tmp_path)
    p = store.write(_rec())
    assert p == tmp_path / "smoke/sr/kather_x4/bicubic.json"
    assert store.read("smoke", "sr", "kather_x4", "bicubic").metrics == {"psnr": 25.0}
    assert store.is_done("smoke", "sr", "kather_x4", "bicubic")
    store.write(_rec(method="x", status="failed", error="boom"))
    assert not store.is_done("smoke", "sr", "kather_x4", "x")
    assert [r.method for r in store.load("smoke", "sr")] == ["bicubic", "x"]


def test_a_crash_during_write_keeps_the_previous_result(tmp_path, monkeypatch):
    store = ResultStore(tmp_path)
    p = store.write(_rec())
    before = p.read_text()

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        store.write(_rec(metrics={"psnr": 1.0}))
    assert p.read_text() == before and json.loads(before)["metrics"]["psnr"] == 25.0
    assert [f.name for f in p.parent.iterdir()] == ["bicubic.json"]  # no temp file left behind


def test_atomic_write_creates_parents(tmp_path):
    atomic_write_text(tmp_path / "a/b/c.txt", "x")
    assert (tmp_path / "a/b/c.txt").read_text() == "x"
