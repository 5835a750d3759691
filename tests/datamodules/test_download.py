"""The downloaders against a loopback HTTP server serving archives built from the real shared samples."""
from __future__ import annotations

import dataclasses
import hashlib
import io
import re
import tarfile
import threading
import urllib.parse
import zipfile
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile
from PIL import Image

from datamodules import download as dl
from datamodules.sources import GROUPS, SOURCES


# ------------------------------------------------------------------------------------ loopback server
class _Handler(BaseHTTPRequestHandler):
    """Serves ``server.files`` by name; honours ``Range: bytes=N-`` unless the file's mode says otherwise.

    Modes: "no-range" (always 200, whole body), "cut" (announce the full length, send half, close),
    "html" (a sign-in page).
    """

    timeout = 5

    def do_GET(self):  # noqa: N802 (http.server API)
        srv = self.server
        name = urllib.parse.unquote(self.path.split("?")[0].removeprefix("/mirror/"))
        rng, mode, body = self.headers.get("Range"), srv.modes.get(name, ""), srv.files.get(name)
        srv.requests.append((name, rng))
        if body is None:
            return self.send_error(404, "Not Found")
        if mode == "html":
            page = b"<html><body>Please sign in</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            return self.wfile.write(page)
        start = 0
        if rng and mode != "no-range":
            start = int(re.fullmatch(r"bytes=(\d+)-", rng).group(1))
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                return self.end_headers()
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        payload = body[start:]
        if mode == "cut":
            payload, self.close_connection = payload[: len(payload) // 2], True
        self.wfile.write(payload)
        srv.sent[name] += len(payload)

    def log_message(self, *args):
        pass


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch):
    """No test may reach a real host: every request must go to the loopback server."""
    real_open = dl._open

    def guarded(url, offset):
        assert urllib.parse.urlparse(url).hostname == "127.0.0.1", f"test tried to reach {url}"
        return real_open(url, offset)

    monkeypatch.setattr(dl, "_open", guarded)


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.daemon_threads = True
    srv.files, srv.modes, srv.requests, srv.sent = {}, {}, [], Counter()
    srv.base_url = f"http://127.0.0.1:{srv.server_address[1]}/mirror"
    srv.url = lambda name: f"{srv.base_url}/{urllib.parse.quote(name)}"
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(timeout=5)


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _leftovers(folder: Path) -> list[str]:
    """Partial downloads, staging folders or download caches under ``folder``."""
    return [str(p) for p in folder.rglob("*") if p.name.endswith((".part", ".extracting")) or p.name == ".downloads"]


@pytest.fixture(scope="module")
def slide_bytes(shared_data) -> bytes:
    return (shared_data / "wsi" / "cmu-1-small-region.svs").read_bytes()


# ------------------------------------------------------------------------------------- fetch itself
def test_fetch_resumes_a_partial_download_with_range(server, tmp_path, slide_bytes):
    server.files["slide.svs"] = slide_bytes
    dest = tmp_path / "slide.svs"
    cut = 700_001
    (tmp_path / "slide.svs.part").write_bytes(slide_bytes[:cut])
    out = dl.fetch(server.url("slide.svs"), dest, md5=_md5(slide_bytes), size=len(slide_bytes), progress=False)
    assert out == dest and dest.read_bytes() == slide_bytes
    assert server.requests == [("slide.svs", f"bytes={cut}-")]
    assert server.sent["slide.svs"] == len(slide_bytes) - cut          # only the missing bytes travelled
    assert not (tmp_path / "slide.svs.part").exists()


def test_fetch_starts_over_when_the_server_ignores_range(server, tmp_path, slide_bytes):
    server.files["slide.svs"], server.modes["slide.svs"] = slide_bytes, "no-range"
    (tmp_path / "slide.svs.part").write_bytes(slide_bytes[:1000])
    dl.fetch(server.url("slide.svs"), tmp_path / "slide.svs", sha256=hashlib.sha256(slide_bytes).hexdigest(),
             progress=False)
    assert (tmp_path / "slide.svs").read_bytes() == slide_bytes


def test_fetch_restarts_a_stale_part_longer_than_the_file(server, tmp_path, slide_bytes):
    server.files["slide.svs"] = slide_bytes
    (tmp_path / "slide.svs.part").write_bytes(slide_bytes + b"junk")
    dl.fetch(server.url("slide.svs"), tmp_path / "slide.svs", md5=_md5(slide_bytes), progress=False)
    assert (tmp_path / "slide.svs").read_bytes() == slide_bytes


def test_interrupted_download_leaves_only_a_resumable_part(server, tmp_path, slide_bytes):
    server.files["slide.svs"], server.modes["slide.svs"] = slide_bytes, "cut"
    dest = tmp_path / "slide.svs"
    with pytest.raises(dl.DownloadError, match="resumes"):
        dl.fetch(server.url("slide.svs"), dest, md5=_md5(slide_bytes), size=len(slide_bytes), progress=False)
    part = tmp_path / "slide.svs.part"
    assert not dest.exists() and part.read_bytes() == slide_bytes[: len(slide_bytes) // 2]
    server.modes.clear()
    dl.fetch(server.url("slide.svs"), dest, md5=_md5(slide_bytes), size=len(slide_bytes), progress=False)
    assert dest.read_bytes() == slide_bytes and not part.exists()
    assert server.requests[-1] == ("slide.svs", f"bytes={len(slide_bytes) // 2}-")


def test_checksum_mismatch_is_clear_and_leaves_nothing(server, tmp_path, slide_bytes):
    server.files["slide.svs"] = slide_bytes
    with pytest.raises(dl.ChecksumError, match=r"slide\.svs.*md5 \w+ \(expected 0{32}\)"):
        dl.fetch(server.url("slide.svs"), tmp_path / "slide.svs", md5="0" * 32, progress=False)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(dl.ChecksumError, match="bytes"):             # announced size differs: no transfer
        dl.fetch(server.url("slide.svs"), tmp_path / "slide.svs", size=123, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_http_errors_and_web_pages_are_reported(server, tmp_path, slide_bytes):
    with pytest.raises(dl.DownloadError, match=r"HTTP 404.*missing\.zip"):
        dl.fetch(server.url("missing.zip"), tmp_path / "missing.zip", progress=False)
    server.files["login.zip"], server.modes["login.zip"] = slide_bytes, "html"
    with pytest.raises(dl.DownloadError, match="web page"):
        dl.fetch(server.url("login.zip"), tmp_path / "login.zip", progress=False)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------- extraction
def test_extract_refuses_path_traversal_links_and_absolute_paths(tmp_path):
    dest = tmp_path / "dest"
    evil_zip = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil_zip, "w") as zf:
        zf.writestr("ok/a.txt", "fine")
        zf.writestr("../escaped.txt", "bad")
    with pytest.raises(dl.UnsafeArchiveError, match=r"\.\."):
        dl.extract(evil_zip, dest)
    for name, kind in (("link", tarfile.SYMTYPE), ("/abs.txt", tarfile.REGTYPE)):
        evil_tar = tmp_path / "evil.tar"
        with tarfile.open(evil_tar, "w") as tf:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, "/etc/passwd" if kind == tarfile.SYMTYPE else ""
            tf.addfile(info, io.BytesIO(b"") if kind == tarfile.REGTYPE else None)
        with pytest.raises(dl.UnsafeArchiveError):
            dl.extract(evil_tar, dest)
    assert not dest.exists() and not (tmp_path / "escaped.txt").exists()


def test_extract_tar_into_place_and_never_overwrite(tmp_path, shared_data):
    tiles = sorted((shared_data / "kather" / "Kather_texture_2016_image_tiles_5000").glob("0[12]_*/*.tif"))[:4]
    archive = tmp_path / "tiles.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        for t in tiles:
            tf.add(t, arcname=f"Kather_texture_2016_image_tiles_5000/{t.parent.name}/{t.name}")
    dest = tmp_path / "kather"
    expect = (("Kather_texture_2016_image_tiles_5000/*/*.tif", 4),)
    assert dl.extract(archive, dest, expect=expect) == [dest / "Kather_texture_2016_image_tiles_5000"]
    for t in tiles:
        assert (dest / "Kather_texture_2016_image_tiles_5000" / t.parent.name / t.name).read_bytes() == t.read_bytes()
    with pytest.raises(dl.DownloadError, match="already exists"):
        dl.extract(archive, dest)
    assert _leftovers(dest) == []


# -------------------------------------------------------------------------- datasets, end to end
def _nct_zip(shared_data: Path) -> bytes:
    """Four real Kather patches as an NCT-CRC-HE-100K.zip: NCT-CRC-HE-100K/<CLASS>/<name>.tif."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for cls in ("NORM", "TUM"):
            for png in sorted((shared_data / "kather" / "CRC-VAL-HE-7K" / cls).glob("*.png"))[:2]:
                tif = io.BytesIO()
                Image.open(png).save(tif, format="TIFF")
                zf.writestr(f"NCT-CRC-HE-100K/{cls}/{png.stem}.tif", tif.getvalue())
    return buf.getvalue()


def test_cli_installs_kather_in_the_official_layout(server, tmp_path, shared_data, monkeypatch):
    from datamodules.base import read_rgb
    from datamodules.kather import list_patches

    data = _nct_zip(shared_data)
    server.files["NCT-CRC-HE-100K.zip"] = data
    nct = SOURCES["kather"].files[0]
    tiny = dataclasses.replace(nct, size=len(data), md5=_md5(data), expect=(("NCT-CRC-HE-100K/*/*.tif", 4),))
    monkeypatch.setitem(SOURCES, "kather", dataclasses.replace(SOURCES["kather"], files=(tiny,)))
    root = tmp_path / "data"
    argv = ["kather", "--root", str(root), "--base-url", server.base_url, "--no-progress"]
    assert dl.main(argv) == 0
    patches = list_patches("NCT-CRC-HE-100K", root)
    assert [p.parent.name for p in patches] == ["NORM", "NORM", "TUM", "TUM"]
    for p in patches:
        src = shared_data / "kather" / "CRC-VAL-HE-7K" / p.parent.name / f"{p.stem}.png"
        assert (read_rgb(p) == read_rgb(src)).all()                      # pixels survive the round trip
    assert _leftovers(root) == []                                        # archive removed, no staging
    n_requests = len(server.requests)
    assert dl.main(argv) == 0 and len(server.requests) == n_requests    # installed: nothing downloaded again
    with pytest.raises(SystemExit):                                      # a --file that is not a published one
        dl.main(argv + ["--file", str(tmp_path / "other.zip")])


def test_mirror_from_environment_and_checksum_failure_exit_code(server, tmp_path, shared_data, monkeypatch, capsys):
    server.files["NCT-CRC-HE-100K.zip"] = _nct_zip(shared_data)
    monkeypatch.setenv("MIRBENCH_MIRROR", server.base_url)
    root = tmp_path / "data"
    assert dl.main(["kather", "--root", str(root), "--no-progress"]) == 1     # the real md5 / size
    err = capsys.readouterr().err
    assert "NCT-CRC-HE-100K.zip" in err and "11,690,284,003" in err
    assert not (root / "kather" / "NCT-CRC-HE-100K").exists() and _leftovers(root) == []


def test_crchisto_real_source_end_to_end(server, tmp_path, shared_data):
    """The complete shared CRCHistoPhenotypes zipped as published, through the real source entry."""
    from datamodules.crchisto import load_records

    folder = shared_data / "crchisto" / "CRCHistoPhenotypes_2016_04_28"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for f in sorted(folder.rglob("*")):
            zf.write(f, f"CRCHistoPhenotypes_2016_04_28/{f.relative_to(folder).as_posix()}")
    server.files["CRCHistoPhenotypes_2016_04_28.zip"] = buf.getvalue()
    root = tmp_path / "data"
    assert dl.download("crchisto", root, base_url=server.base_url, progress=False) == root / "crchisto"
    records = load_records(root)
    assert len(records) == 100 and records[0].image.is_file()
    assert [len(r.nuclei) for r in records] == [len(r.nuclei) for r in load_records(shared_data)]
    assert _leftovers(root) == []


def test_crchisto_wrong_layout_is_refused_before_extraction(server, tmp_path, shared_data):
    """Two images only: the member list does not match the release, nothing is extracted or kept."""
    folder = shared_data / "crchisto" / "CRCHistoPhenotypes_2016_04_28"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for n in (1, 2):
            for f in sorted((folder / "Detection" / f"img{n}").iterdir()) + sorted(
                    (folder / "Classification" / f"img{n}").iterdir()):
                zf.write(f, f"CRCHistoPhenotypes_2016_04_28/{f.relative_to(folder).as_posix()}")
    server.files["CRCHistoPhenotypes_2016_04_28.zip"] = buf.getvalue()
    root = tmp_path / "data"
    with pytest.raises(dl.LayoutError, match=r"2 paths match .*img\*\.bmp \(expected 100\)"):
        dl.download("crchisto", root, base_url=server.base_url, progress=False)
    assert not (root / "crchisto" / "CRCHistoPhenotypes_2016_04_28").exists() and _leftovers(root) == []


def _cremi_hdf(shared_data: Path, labels: bool = True, resolution: bool = True) -> bytes:
    """A real CREMI crop written in the official layout: volumes/raw (+ labels/neuron_ids), resolution."""
    raw = tifffile.imread(shared_data / "cremi" / "cremi_image.tif")[:3, :64, :64]
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        ds = f.create_dataset("volumes/raw", data=raw)
        if resolution:
            ds.attrs["resolution"] = (40.0, 4.0, 4.0)
        if labels:
            ids = tifffile.imread(shared_data / "cremi" / "cremi_labels.tif")[:3, :64, :64].astype(np.uint64)
            f.create_dataset("volumes/labels/neuron_ids", data=ids).attrs["resolution"] = (40.0, 4.0, 4.0)
    return buf.getvalue()


def test_cremi_published_checksum_rejects_other_bytes(server, tmp_path, shared_data):
    for s in "ABC":
        server.files[f"sample_{s}_20160501.hdf"] = _cremi_hdf(shared_data)
    root = tmp_path / "data"
    with pytest.raises(dl.ChecksumError, match=r"sample_A_20160501\.hdf.*sha256 .*expected 4c563d1b"):
        dl.download("cremi", root, base_url=server.base_url, progress=False)
    assert [p.name for p in (root / "cremi").rglob("*") if p.is_file()] == [] and _leftovers(root) == []


def test_cremi_volumes_without_checksum_are_checked_by_structure(server, tmp_path, shared_data):
    from datamodules.download import main

    for s in "ABC":                                   # '+' in the name travels URL-encoded
        server.files[f"sample_{s}+_20160601.hdf"] = _cremi_hdf(shared_data, labels=False)
    root = tmp_path / "data"
    assert main(["cremi_test", "--root", str(root), "--base-url", server.base_url, "--no-progress"]) == 0
    with h5py.File(root / "cremi" / "sample_B+_20160601.hdf", "r") as f:
        raw = tifffile.imread(shared_data / "cremi" / "cremi_image.tif")[:3, :64, :64]
        assert (f["volumes/raw"][:] == raw).all() and tuple(f["volumes/raw"].attrs["resolution"]) == (40, 4, 4)
    for s in "ABC":                                   # padded training volumes need neuron ids too
        server.files[f"sample_{s}_padded_20160501.hdf"] = _cremi_hdf(shared_data, labels=False)
    with pytest.raises(dl.LayoutError, match="neuron_ids"):
        dl.download("cremi_padded", root, progress=False, base_url=server.base_url)
    assert not (root / "cremi" / "sample_A_padded_20160501.hdf").exists() and _leftovers(root) == []


def test_local_copy_is_verified_like_a_download(tmp_path, shared_data):
    mine = [tmp_path / "browser" / f"sample_{s}+_padded_20160601.hdf" for s in "ABC"]
    mine[0].parent.mkdir()
    for i, path in enumerate(mine):
        path.write_bytes(_cremi_hdf(shared_data, labels=False, resolution=i > 0))
    root = tmp_path / "data"
    with pytest.raises(dl.LayoutError, match="resolution"):
        dl.download("cremi_test_padded", root, files=tuple(mine), progress=False)
    assert all(p.is_file() for p in mine) and not (root / "cremi" / mine[0].name).exists()
    mine[0].write_bytes(_cremi_hdf(shared_data, labels=False))
    dl.download("cremi_test_padded", root, files=tuple(mine), progress=False)
    assert sorted(p.name for p in (root / "cremi").iterdir()) == sorted(p.name for p in mine)


def test_samples_are_not_mistaken_for_the_release(shared_data):
    with pytest.raises(dl.LayoutError, match=r"0 paths match CRC-VAL-HE-7K/\*/\*\.tif \(expected 7180\)"):
        dl.check_layout(shared_data / "kather", SOURCES["kather"].files[1].expect)


def test_sources_are_official_and_well_formed():
    hosts = {"zenodo.org", "warwick.ac.uk", "cremi.org"}
    for key, src in SOURCES.items():
        assert src.key == key and src.files
        for f in src.files:
            for url in f.urls:
                parsed = urllib.parse.urlparse(url)
                assert parsed.scheme == "https" and parsed.hostname in hosts, url
                assert urllib.parse.unquote(parsed.path).rsplit("/", 1)[-1].lower() == f.filename.lower()
            assert f.md5 is None or re.fullmatch(r"[0-9a-f]{32}", f.md5)
            assert f.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", f.sha256)
            assert f.archive == bool(f.expect) and f.archive != bool(f.hdf5_keys)
    assert {k for g in GROUPS.values() for k in g} <= set(SOURCES)
    verified = {f.filename for s in SOURCES.values() for f in s.files if f.md5 or f.sha256}
    assert verified == {"NCT-CRC-HE-100K.zip", "CRC-VAL-HE-7K.zip", "Kather_texture_2016_image_tiles_5000.zip",
                        "sample_A_20160501.hdf", "sample_B_20160501.hdf", "sample_C_20160501.hdf"}
