"""Camelyon16 downloader: chosen whole-slide images and their lesion annotations, from the official
open-data locations, resumable and verified against the official checksum list.

Camelyon16 (Ehteshami Bejnordi et al., JAMA 2017; data note Litjens et al., GigaScience 2018) is the
source of PathImgSR (MASRGAN paper, Sec. 4.1).  The release holds 399 slides, each a generic tiled
TIFF written by ASAP: ``normal_001..160`` (without ``normal_086``, renamed ``tumor_111``),
``tumor_001..111`` and ``test_001..130`` (without the duplicate ``test_049``); tumour slides come with
ASAP XML lesion annotations.  Official locations (CC0):

* AWS Open Data, bucket ``camelyon-dataset`` (no sign-in): ``CAMELYON16/images/<name>.tif``,
  ``CAMELYON16/annotations/<name>.xml`` and the checksum list.
* GigaDB dataset 100439 (mirror): ``CAMELYON16/training/{normal,tumor}/<name>.tif``,
  ``CAMELYON16/testing/images/<name>.tif``; annotations zipped in ``{training,testing}/lesion_annotations.zip``.

Files land as ``<out>/images/<name>.tif`` and ``<out>/annotations/<name>.xml``, the input layout of
``python -m datamodules.pathimgsr build --slides <out>/images --annotations <out>/annotations``.
Each file goes through :func:`datamodules.download.fetch` (streams into ``.part``, resumes with an HTTP
Range request, renames only after the checks pass), retried here when a transfer is cut, and is
verified against the official list (SHA-256 ``checksums.txt``; an older MD5 list is also understood,
the algorithm told by the digest length) or, where no list is reachable, against the announced size
only (and says so).  The checksum-list names tried on each mirror (``MIRRORS``) follow the release
README and could not be checked from an offline machine; ``--checksums FILE`` gives a local list.
"""
from __future__ import annotations

import argparse
import re
import sys
import time
import zipfile
from dataclasses import dataclass, field
from http.client import HTTPException
from pathlib import Path
from typing import Callable
from urllib.error import HTTPError, URLError
from urllib.request import urlopen

from datamodules.download import TIMEOUT_S, ChecksumError, DownloadError, fetch

AWS_BASE = "https://camelyon-dataset.s3.amazonaws.com/CAMELYON16/"
GIGADB_BASE = "https://ftp.cngb.org/pub/gigadb/pub/10.5524/100001_101000/100439/CAMELYON16/"

# the official release (README of CAMELYON16): numbers present for each prefix
_NUMBERS = {"normal": [n for n in range(1, 161) if n != 86],
            "tumor": list(range(1, 112)),
            "test": [n for n in range(1, 131) if n != 49]}
# slides whose tumour annotations are not exhaustive (README "Notes about the data"): their
# un-annotated tissue may hold tumour, so they give no "normal" patches
NON_EXHAUSTIVE = frozenset([f"tumor_{n:03d}" for n in (10, 15, 18, 20, 25, 29, 33, 34, 44, 46, 51, 54, 55, 56,
                                                      67, 79, 85, 92, 95, 110)] + ["test_114"])
_DIGESTS = {32: "md5", 64: "sha256"}
__all__ = ["ChecksumError", "NON_EXHAUSTIVE", "download", "download_file", "expand_slides", "official_names"]


def official_names(group: str = "all") -> list[str]:
    """Slide names of the release: ``all``, ``train`` (normal + tumor), ``test``, ``normal`` or ``tumor``."""
    prefixes = {"all": ("normal", "tumor", "test"), "train": ("normal", "tumor"), "test": ("test",),
                "normal": ("normal",), "tumor": ("tumor",)}
    if group not in prefixes:
        raise ValueError(f"unknown slide group {group!r}: expected one of {sorted(prefixes)}")
    return [f"{p}_{n:03d}" for p in prefixes[group] for n in _NUMBERS[p]]


def expand_slides(tokens: list[str]) -> list[str]:
    """Slide list from names (``tumor_001``), ranges (``tumor_001-010``) and groups (``all``, ``test``...).

    Every name is checked against the release; the result keeps first-seen order without repeats.
    """
    out: list[str] = []
    for tok in (t.strip().lower().removesuffix(".tif") for tok in tokens for t in tok.split(",")):
        if not tok:
            continue
        m = re.fullmatch(r"(normal|tumor|test)_(\d{1,3})(?:-(?:\1_)?(\d{1,3}))?", tok)
        if m:
            lo, hi = int(m.group(2)), int(m.group(3) or m.group(2))
            names = [f"{m.group(1)}_{n:03d}" for n in range(lo, hi + 1) if n in _NUMBERS[m.group(1)]]
            if not names or (lo == hi and lo not in _NUMBERS[m.group(1)]):
                raise ValueError(f"{tok!r} is not in the Camelyon16 release")
        elif tok in ("all", "train", "test", "normal", "tumor"):
            names = official_names(tok)
        else:
            raise ValueError(f"{tok!r}: expected a slide name (tumor_001), a range (tumor_001-010) or a "
                             "group (all, train, test, normal, tumor)")
        out.extend(n for n in names if n not in out)
    return out


@dataclass(frozen=True)
class Mirror:
    """Where a source keeps each file, relative to its base URL."""

    name: str
    base: str
    checksum_files: tuple[str, ...]
    image: Callable[[str], str]
    annotation: Callable[[str], str] | None = None          # one XML per slide
    annotation_zip: Callable[[str], str] | None = None      # or a zip per set

    def url(self, rel: str) -> str:
        return self.base.rstrip("/") + "/" + rel


def _gigadb_image(name: str) -> str:
    prefix = name.split("_")[0]
    return f"testing/images/{name}.tif" if prefix == "test" else f"training/{prefix}/{name}.tif"


MIRRORS = {
    "aws": Mirror("aws", AWS_BASE, ("checksums.txt", "checksums.md5"), image=lambda n: f"images/{n}.tif",
                  annotation=lambda n: f"annotations/{n}.xml"),
    "gigadb": Mirror("gigadb", GIGADB_BASE, ("checksums.md5", "checksums.txt"), image=_gigadb_image,
                     annotation_zip=lambda n: ("testing" if n.startswith("test") else "training")
                     + "/lesion_annotations.zip"),
}


@dataclass
class DownloadReport:
    files: list[Path] = field(default_factory=list)
    verified: dict[str, str] = field(default_factory=dict)    # file name -> "sha256" / "md5" / "size only"
    missing_annotations: list[str] = field(default_factory=list)
    bytes: int = 0
    seconds: float = 0.0


def parse_checksums(text: str) -> dict[str, tuple[str, str]]:
    """``<hex digest> [*]<path>`` lines (sha256sum / md5sum output) -> {file name: (algorithm, digest)}."""
    out = {}
    for line in text.splitlines():
        m = re.match(r"\s*([0-9a-fA-F]{32}|[0-9a-fA-F]{64})\s+\*?(.+?)\s*$", line)
        if m:
            out[Path(m.group(2).replace("\\", "/")).name.lower()] = (_DIGESTS[len(m.group(1))], m.group(1).lower())
    return out


def download_file(url: str, dest: Path, digest: tuple[str, str] | None = None, retries: int = 5,
                  progress: bool = True, log: Callable[[str], None] = print) -> int:
    """:func:`datamodules.download.fetch` ``url`` to ``dest``, verified by ``(algorithm, hex digest)``,
    resumed up to ``retries`` times when the transfer is cut.  Returns the bytes transferred.

    Raises FileNotFoundError on HTTP 404 and :class:`ChecksumError` when the file does not verify.
    """
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    had = dest.stat().st_size if dest.is_file() else part.stat().st_size if part.is_file() else 0
    present = dest.is_file()
    for attempt in range(retries + 1):
        try:
            fetch(url, dest, progress=progress, **({digest[0]: digest[1]} if digest else {}))
            return 0 if present else dest.stat().st_size - had
        except ChecksumError:
            raise
        except DownloadError as exc:
            if isinstance(exc.__cause__, HTTPError) and exc.__cause__.code == 404:
                raise FileNotFoundError(f"{url}: not found (HTTP 404)") from None
            if attempt == retries:
                raise ConnectionError(f"{exc} (gave up after {retries} retries)") from exc
            log(f"[camelyon16] {exc}; resuming")
            time.sleep(min(30.0, 0.2 * 2**attempt))
    raise AssertionError("unreachable")


def fetch_checksums(mirror: Mirror, log: Callable[[str], None] = print) -> dict[str, tuple[str, str]]:
    """The mirror's official checksum list, or {} (with a message) if none is reachable."""
    for rel in mirror.checksum_files:
        try:
            with urlopen(mirror.url(rel), timeout=TIMEOUT_S) as resp:
                sums = parse_checksums(resp.read().decode("utf-8", "replace"))
            if sums:
                return sums
        except (HTTPError, URLError, HTTPException, ConnectionError, TimeoutError):
            continue
    log(f"[camelyon16] no checksum list reachable at {mirror.base} ({', '.join(mirror.checksum_files)}); "
        "files are verified by size only")
    return {}


def download(out: Path, slides: list[str], mirror: str | Mirror = "aws", base_url: str | None = None,
             annotations: bool = True, checksums: Path | None = None, progress: bool = True,
             log: Callable[[str], None] = print) -> DownloadReport:
    """Download ``slides`` (see :func:`expand_slides`) and, for tumour/test slides, their annotations.

    ``base_url`` replaces the mirror's base URL (same layout), e.g. a local copy or a test server;
    ``checksums`` is a local checksum list used instead of the mirror's.
    """
    m = MIRRORS[mirror] if isinstance(mirror, str) else mirror
    if base_url:
        m = Mirror(m.name, base_url, m.checksum_files, m.image, m.annotation, m.annotation_zip)
    names = expand_slides(slides)
    sums = parse_checksums(Path(checksums).read_text()) if checksums else fetch_checksums(m, log)
    out = Path(out)
    report, t0 = DownloadReport(), time.perf_counter()
    for i, name in enumerate(names, 1):
        dest = out / "images" / f"{name}.tif"
        digest = sums.get(dest.name)
        log(f"[camelyon16] {i}/{len(names)} {name}.tif")
        report.bytes += download_file(m.url(m.image(name)), dest, digest, progress=progress, log=log)
        report.files.append(dest)
        report.verified[dest.name] = digest[0] if digest else "size only"
        if annotations and not name.startswith("normal"):
            xml = _download_annotation(m, name, out, sums, log)
            if xml is None:
                report.missing_annotations.append(name)
                if name.startswith("tumor"):
                    raise FileNotFoundError(f"tumour slide {name} has no annotation at {m.base}")
            else:
                report.files.append(xml)
    report.seconds = time.perf_counter() - t0
    rate = report.bytes / 2**20 / max(report.seconds, 1e-9)
    log(f"[camelyon16] {len(names)} slides in {out} ({report.bytes / 2**20:.1f} MiB at {rate:.1f} MiB/s); "
        f"{len(report.missing_annotations)} test slides without annotation (normal)")
    return report


def _download_annotation(m: Mirror, name: str, out: Path, sums: dict, log) -> Path | None:
    dest = out / "annotations" / f"{name}.xml"
    if m.annotation is not None:
        try:
            download_file(m.url(m.annotation(name)), dest, sums.get(dest.name), progress=False, log=log)
        except FileNotFoundError:
            return None
        return dest
    rel = m.annotation_zip(name)
    archive = out / ".downloads" / rel.replace("/", "_")
    download_file(m.url(rel), archive, sums.get(Path(rel).name), log=log)
    with zipfile.ZipFile(archive) as zf:
        member = next((n for n in zf.namelist() if Path(n).name.lower() == dest.name), None)
        if member is None:
            return None
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(zf.read(member))
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m datamodules.camelyon16", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("download", help="download chosen Camelyon16 slides and their annotations")
    d.add_argument("--out", type=Path, required=True)
    d.add_argument("--slides", nargs="+", required=True,
                   help="names (tumor_001), ranges (normal_001-020) or groups: all, train, test, normal, tumor")
    d.add_argument("--mirror", choices=sorted(MIRRORS), default="aws")
    d.add_argument("--base-url", help="same layout as --mirror at another address")
    d.add_argument("--checksums", type=Path, help="local checksum list instead of the mirror's")
    d.add_argument("--no-annotations", action="store_true")
    d.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    try:
        download(args.out, args.slides, args.mirror, args.base_url, not args.no_annotations, args.checksums,
                 not args.no_progress, log)
    except (ValueError, FileNotFoundError, ConnectionError, DownloadError) as exc:
        log(f"error: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
