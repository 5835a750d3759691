"""Camelyon16 downloader against a loopback HTTP server laid out like the AWS open-data bucket."""
from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from datamodules.camelyon16 import (ChecksumError, NON_EXHAUSTIVE, download, expand_slides, main, official_names,
                                    parse_checksums)

XML = b'<?xml version="1.0"?><ASAP_Annotations><Annotations></Annotations></ASAP_Annotations>'


class _Server:
    """Serves ``files`` (URL path -> bytes) with Range support; ``cut`` paths drop the connection
    half-way through their first full-body response, like a flaky link."""

    def __init__(self, files: dict[str, bytes], cut: set[str] = frozenset()):
        self.files, self.cut, self.requests = files, set(cut), []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server API)
                server.requests.append((self.path, self.headers.get("Range")))
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                start = int(self.headers["Range"].split("=")[1].split("-")[0]) if self.headers.get("Range") else 0
                if start >= len(body):
                    self.send_error(416)
                    return
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                if self.path in server.cut and not start:
                    server.cut.discard(self.path)
                    self.wfile.write(body[: len(body) // 2])
                    self.close_connection = True
                    return
                self.wfile.write(body[start:])

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/CAMELYON16/"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def bucket(shared_data) -> dict[str, bytes]:
    """Real slide bytes under the official names, an annotation, and a SHA-256 checksums.txt."""
    slides = {"tumor_001.tif": (shared_data / "wsi" / "cmu-1-small-region.svs").read_bytes(),
              "normal_001.tif": (shared_data / "wsi" / "OS-1-detail.ome.tif").read_bytes(),
              "test_001.tif": (shared_data / "wsi" / "OS-1-detail.ome.tif").read_bytes()}
    files = {f"/CAMELYON16/images/{n}": b for n, b in slides.items()}
    files["/CAMELYON16/annotations/tumor_001.xml"] = XML
    sums = "".join(f"{hashlib.sha256(b).hexdigest()}  images/{n}\n" for n, b in slides.items())
    sums += f"{hashlib.sha256(XML).hexdigest()}  annotations/tumor_001.xml\n"
    files["/CAMELYON16/checksums.txt"] = sums.encode()
    return files


def test_slide_lists_follow_the_release():
    assert len(official_names()) == 399 and len(official_names("test")) == 129
    assert "normal_086" not in official_names() and "test_049" not in official_names("test")
    assert expand_slides(["tumor_001-003", "test_048-050", "normal_005,tumor_002"]) == [
        "tumor_001", "tumor_002", "tumor_003", "test_048", "test_050", "normal_005"]
    for bad in (["test_049"], ["tumor_112"], ["slide_1"]):
        with pytest.raises(ValueError):
            expand_slides(bad)
    assert "tumor_010" in NON_EXHAUSTIVE and "test_114" in NON_EXHAUSTIVE


def test_parse_checksums_tells_the_algorithm_by_length():
    sums = parse_checksums(f"{'a' * 64}  CAMELYON16/images/Tumor_001.tif\n{'b' * 32} *normal_001.tif\nnoise\n")
    assert sums == {"tumor_001.tif": ("sha256", "a" * 64), "normal_001.tif": ("md5", "b" * 32)}


def test_download_resumes_a_cut_transfer_and_verifies(tmp_path, bucket):
    cut = {"/CAMELYON16/images/tumor_001.tif"}
    with _Server(bucket, cut) as srv:
        report = download(tmp_path, ["tumor_001", "normal_001", "test_001"], base_url=srv.url, progress=False,
                          log=lambda s: None)
    for name in ("tumor_001", "normal_001", "test_001"):
        assert (tmp_path / "images" / f"{name}.tif").read_bytes() == bucket[f"/CAMELYON16/images/{name}.tif"]
    assert (tmp_path / "annotations" / "tumor_001.xml").read_bytes() == XML
    assert report.verified["tumor_001.tif"] == "sha256" and report.missing_annotations == ["test_001"]
    ranges = [r for p, r in srv.requests if p.endswith("tumor_001.tif")]
    assert ranges[0] is None and ranges[1].startswith("bytes=") and int(ranges[1][6:-1]) > 0   # resumed
    assert not list(tmp_path.rglob("*.part"))
    with _Server(bucket) as srv:                                  # a second run re-verifies, moves nothing
        again = download(tmp_path, ["tumor_001"], base_url=srv.url, progress=False, log=lambda s: None)
    assert again.bytes == 0


def test_download_rejects_a_file_that_does_not_match_its_checksum(tmp_path, bucket):
    bucket["/CAMELYON16/images/normal_001.tif"] = b"corrupted" + bucket["/CAMELYON16/images/normal_001.tif"][9:]
    with _Server(bucket) as srv, pytest.raises(ChecksumError, match="normal_001.tif"):
        download(tmp_path, ["normal_001"], base_url=srv.url, progress=False, log=lambda s: None)
    assert not (tmp_path / "images" / "normal_001.tif").exists()
    assert not (tmp_path / "images" / "normal_001.tif.part").exists()


def test_cli_downloads_and_reports_missing_slides(tmp_path, bucket, capsys):
    del bucket["/CAMELYON16/checksums.txt"]                       # no list: size-only, and says so
    with _Server(bucket) as srv:
        assert main(["download", "--out", str(tmp_path), "--slides", "normal_001", "--base-url", srv.url,
                     "--no-progress"]) == 0
        assert main(["download", "--out", str(tmp_path), "--slides", "normal_002", "--base-url", srv.url,
                     "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "verified by size only" in err and "normal_002.tif: not found" in err
    assert (tmp_path / "images" / "normal_001.tif").stat().st_size == len(bucket["/CAMELYON16/images/normal_001.tif"])
