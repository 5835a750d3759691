"""Download the datasets from their official sources (datamodules/sources.py) into $MIRBENCH_DATA.

    python -m datamodules.download kather|crchisto|cremi|cremi_padded|cremi_test|cremi_test_padded|all
           [--root DIR] [--base-url URL] [--file PATH ...] [--keep-archives] [--no-progress] [--list]

What it guarantees:

* streaming HTTP(S) with urllib into ``<name>.part``; an interrupted download keeps the ``.part`` and the
  next run resumes it with an HTTP Range request (or starts over if the server ignores Range);
* the file is checked against its published size and md5 / sha256 while it streams, and renamed to
  its final name (``os.replace``, atomic) only when every check passes; a mismatch deletes the bad
  bytes and raises :class:`ChecksumError` naming the file, both digests and the URL;
* archives are listed first: absolute paths, ``..``, links and device files are refused
  (:class:`UnsafeArchiveError`) and the member list must match the dataset's official layout
  (:class:`LayoutError`) before anything is written; extraction goes to a hidden staging folder in
  the destination and its top-level folders are renamed into place only when complete, so a failure
  leaves nothing half-extracted;
* a web page served instead of the file (a sign-in form, a moved page) is reported as such;
* ``--base-url`` (or env ``MIRBENCH_MIRROR``) replaces the official hosts with a mirror that holds the
  published files side by side under their published names (tests use a loopback server);
* ``--file PATH`` installs a copy you downloaded yourself (e.g. in a browser), after the same checks.

``fetch`` and ``extract`` are the reusable pieces (datamodules/camelyon16.py may use them).
Plain urllib/tarfile/zipfile are used on purpose: no extra dependency; tqdm draws progress if present.
"""
from __future__ import annotations

import argparse
import hashlib
import http.client
import logging
import os
import re
import shutil
import stat
import sys
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath

from datamodules.sources import GROUPS, SOURCES, DatasetSource, RemoteFile

log = logging.getLogger("mirbench.download")

CHUNK = 1 << 20
TIMEOUT_S = 60
USER_AGENT = "mirbench-downloader (python urllib)"
_SKIP_MEMBERS = ("__MACOSX",)       # resource forks that macOS zips carry beside the data


class DownloadError(RuntimeError):
    """A file could not be downloaded or installed; the message says what, from where and what to do."""


class ChecksumError(DownloadError):
    """A file's size or digest differs from the published one (the bad bytes have been deleted)."""


class UnsafeArchiveError(DownloadError):
    """An archive member would escape the destination (absolute path, '..', link or device)."""


class LayoutError(DownloadError):
    """Files are not laid out as the official release lays them out."""


# --------------------------------------------------------------------------------------------- fetch
class _Digests:
    """The md5 / sha256 being checked, updated as bytes arrive."""

    def __init__(self, md5: str | None, sha256: str | None):
        self.expected = {k: v.lower() for k, v in (("md5", md5), ("sha256", sha256)) if v}
        self.reset()

    def reset(self) -> None:
        self.hashes = {k: hashlib.new(k) for k in self.expected}

    def update(self, block: bytes) -> None:
        for h in self.hashes.values():
            h.update(block)

    def update_from(self, path: Path) -> None:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(CHUNK), b""):
                self.update(block)

    def mismatches(self) -> list[str]:
        return [f"{k} {self.hashes[k].hexdigest()} (expected {v})" for k, v in self.expected.items()
                if self.hashes[k].hexdigest() != v]


def verify_file(path: Path, *, md5: str | None = None, sha256: str | None = None, size: int | None = None) -> Path:
    """Raise :class:`ChecksumError` unless ``path`` has the given size and digests (None = not checked)."""
    path = Path(path)
    if size is not None and path.stat().st_size != size:
        raise ChecksumError(f"{path} is {path.stat().st_size:,} bytes, the published file is {size:,} bytes")
    digests = _Digests(md5, sha256)
    if digests.expected:
        digests.update_from(path)
        if bad := digests.mismatches():
            raise ChecksumError(f"{path} does not match the published file: {'; '.join(bad)}")
    return path


def _progress(total: int | None, initial: int, name: str, enabled: bool):
    try:
        from tqdm import tqdm
    except ImportError:                      # progress is optional
        enabled = False
    if not enabled:
        return None
    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024, desc=name,
                file=sys.stderr, leave=False)


def _total_from(resp, offset: int) -> int | None:
    """Full file size from Content-Range (206) or Content-Length (200)."""
    if resp.status == 206:
        m = re.match(r"bytes (\d+)-\d+/(\d+|\*)", resp.headers.get("Content-Range", ""))
        if not m or int(m.group(1)) != offset:
            raise DownloadError(f"{resp.url}: the server answered Range bytes={offset}- with "
                                f"Content-Range {resp.headers.get('Content-Range')!r}")
        return None if m.group(2) == "*" else int(m.group(2))
    length = resp.headers.get("Content-Length")
    return int(length) if length is not None else None


def _open(url: str, offset: int):
    headers = {"User-Agent": USER_AGENT, **({"Range": f"bytes={offset}-"} if offset else {})}
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=TIMEOUT_S)


def _stream(url: str, part: Path, size: int | None, digests: _Digests, progress: bool) -> None:
    """Append the missing bytes of ``url`` to ``part`` (resuming with Range), updating ``digests``."""
    name = part.name.removesuffix(".part")
    offset = part.stat().st_size if part.is_file() else 0
    if size is not None and offset > size:
        part.unlink()
        offset = 0
    if offset:
        digests.update_from(part)
    if size is not None and offset == size:
        return
    try:
        resp = _open(url, offset)
    except urllib.error.HTTPError as exc:
        total = re.search(r"/(\d+)$", exc.headers.get("Content-Range", "") if exc.headers else "")
        if exc.code == 416 and offset and total and int(total.group(1)) == offset:
            return                                   # the .part already holds the whole file
        if exc.code == 416 and offset:              # a stale .part longer than the file: start over
            part.unlink()
            digests.reset()
            return _stream(url, part, size, digests, progress)
        raise DownloadError(f"HTTP {exc.code} {exc.reason} while downloading {url}") from exc
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise DownloadError(f"cannot download {url}: {getattr(exc, 'reason', exc)}") from exc
    with resp:
        if resp.headers.get_content_type() == "text/html" and not name.endswith((".html", ".htm")):
            raise DownloadError(f"{url} returned a web page instead of {name} (a sign-in form or a moved "
                                f"page?); download it in a browser and pass it with --file PATH")
        if offset and resp.status == 200:           # the server ignored Range: start over
            offset = 0
            digests.reset()
        total = _total_from(resp, offset)
        if size is not None and total is not None and total != size:
            part.unlink(missing_ok=True)
            raise ChecksumError(f"{url} is {total:,} bytes but the published {name} is {size:,} bytes "
                                f"(a different file?)")
        bar = _progress(total or size, offset, name, progress)
        written = offset
        try:
            with open(part, "ab" if offset else "wb") as fh:
                while block := resp.read(CHUNK):
                    fh.write(block)
                    digests.update(block)
                    written += len(block)
                    if bar is not None:
                        bar.update(len(block))
                fh.flush()
                os.fsync(fh.fileno())
        except (OSError, http.client.HTTPException) as exc:
            raise DownloadError(f"download of {url} interrupted after {written:,} bytes ({exc}); the partial "
                                f"file {part} is kept and the next run resumes it") from exc
        finally:
            if bar is not None:
                bar.close()
    if total is not None and written != total:
        raise DownloadError(f"download of {url} stopped after {written:,} of {total:,} bytes; the partial "
                            f"file {part} is kept and the next run resumes it")


def fetch(url: str, dest: Path, *, md5: str | None = None, sha256: str | None = None, size: int | None = None,
          progress: bool = True) -> Path:
    """Download ``url`` to ``dest`` (resumable via ``dest.part``) and verify it; returns ``dest``.

    An existing ``dest`` is verified instead of downloaded again.  Checks run on the ``.part`` file;
    ``dest`` appears (atomic rename) only when size and digests match.  A mismatch deletes the
    ``.part`` and raises :class:`ChecksumError`; a network failure keeps it and raises
    :class:`DownloadError` (run again to resume).
    """
    dest = Path(dest)
    if dest.is_file():
        try:
            return verify_file(dest, md5=md5, sha256=sha256, size=size)
        except ChecksumError as exc:
            raise ChecksumError(f"{exc}; delete it to download it again") from None
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    digests = _Digests(md5, sha256)
    _stream(url, part, size, digests, progress)
    got = part.stat().st_size
    bad = [f"size {got:,} bytes (expected {size:,})"] if size is not None and got != size else []
    bad += digests.mismatches()
    if bad:
        part.unlink()
        raise ChecksumError(f"{dest.name} downloaded from {url} does not match the published file: "
                            f"{'; '.join(bad)}. The download was deleted; run again, and if it persists the "
                            f"file has changed upstream.")
    os.replace(part, dest)
    return dest


# ------------------------------------------------------------------------------------------- extract
def _member_parts(name: str, archive: Path) -> tuple[str, ...]:
    """The path components of an archive member, refusing any that could land outside the destination."""
    if not name or name.startswith(("/", "\\")) or "\\" in name or re.match(r"^[A-Za-z]:", name):
        raise UnsafeArchiveError(f"{archive}: unsafe member path {name!r} (absolute or Windows-style)")
    parts = tuple(p for p in PurePosixPath(name).parts if p != ".")
    if ".." in parts:
        raise UnsafeArchiveError(f"{archive}: unsafe member path {name!r} (goes up with '..')")
    return parts


def _members(archive: Path) -> tuple[str, list, list[tuple[str, ...]]]:
    """('zip'|'tar', members to extract, their path components), after checking every member."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
        kind, name_of = "zip", (lambda m: m.filename)
        unsafe = [m.filename for m in infos if stat.S_ISLNK(m.external_attr >> 16)]
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            infos = tf.getmembers()
        kind, name_of = "tar", (lambda m: m.name)
        unsafe = [m.name for m in infos if not (m.isreg() or m.isdir())]
    else:
        raise DownloadError(f"{archive} is neither a zip nor a tar archive")
    if unsafe:
        raise UnsafeArchiveError(f"{archive}: member {unsafe[0]!r} is a link or special file")
    parts = [_member_parts(name_of(m), archive) for m in infos]
    kept = [(m, p) for m, p in zip(infos, parts) if p and p[0] not in _SKIP_MEMBERS]
    return kind, [m for m, _ in kept], [p for _, p in kept]


def _is_file(member) -> bool:
    return not member.is_dir() if isinstance(member, zipfile.ZipInfo) else member.isreg()


def _count(paths: set[tuple[str, ...]], pattern: str) -> int:
    pat = PurePosixPath(pattern).parts
    return sum(len(p) == len(pat) and all(fnmatchcase(a, b) for a, b in zip(p, pat)) for p in paths)


def _layout_problems(paths: set[tuple[str, ...]], expect) -> list[str]:
    out = []
    for pattern, n in expect:
        got = _count(paths, pattern)
        if (n is None and got == 0) or (n is not None and got != n):
            out.append(f"{got} paths match {pattern} (expected {'at least 1' if n is None else n})")
    return out


def _with_parents(files: list[tuple[str, ...]]) -> set[tuple[str, ...]]:
    return {f[:i] for f in files for i in range(1, len(f) + 1)}


def check_layout(folder: Path, expect) -> None:
    """Raise :class:`LayoutError` unless ``folder`` holds the files ``expect`` describes."""
    paths = {tuple(p.relative_to(folder).parts) for pattern, _ in expect for p in folder.glob(pattern)}
    if bad := _layout_problems(paths, expect):
        raise LayoutError(f"{folder} is not a complete copy of the official release: {'; '.join(bad)}")


def extract(archive: Path, dest_root: Path, *, expect=()) -> list[Path]:
    """Safely extract a zip or tar archive into ``dest_root``; returns the top-level paths it created.

    Every member is checked first (no absolute paths, '..', links or devices) and, when ``expect``
    (see :class:`RemoteFile`) is given, the member list must match it.  Extraction happens in a hidden
    staging folder inside ``dest_root`` and the top-level entries are renamed into place at the end.
    Existing top-level entries are never overwritten (:class:`DownloadError`).
    """
    archive, dest_root = Path(archive), Path(dest_root)
    kind, members, parts = _members(archive)
    files = [p for m, p in zip(members, parts) if _is_file(m)]
    if bad := _layout_problems(_with_parents(files), expect):
        raise LayoutError(f"{archive.name} is not laid out as the official release: {'; '.join(bad)}")
    tops = sorted({p[0] for p in parts})
    if clash := [t for t in tops if (dest_root / t).exists()]:
        raise DownloadError(f"{dest_root / clash[0]} already exists; remove it to extract {archive.name} again")
    dest_root.mkdir(parents=True, exist_ok=True)
    for stale in dest_root.glob(f".{archive.name}.*.extracting"):   # left by a killed earlier run
        shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{archive.name}.", suffix=".extracting", dir=dest_root))
    try:
        if kind == "zip":
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(staging, members=members)
        else:
            with tarfile.open(archive) as tf:
                tf.extractall(staging, members=members, filter="data")
        if bad := _layout_problems({tuple(p.relative_to(staging).parts) for p in staging.rglob("*")}, expect):
            raise LayoutError(f"extracting {archive.name} did not produce the official layout: {'; '.join(bad)}")
        for top in tops:
            os.replace(staging / top, dest_root / top)
    except (OSError, zipfile.BadZipFile, tarfile.TarError) as exc:
        raise DownloadError(f"cannot extract {archive}: {exc}") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [dest_root / t for t in tops]


# ------------------------------------------------------------------------------------------ datasets
def check_hdf5(path: Path, keys: tuple[str, ...]) -> None:
    """Raise :class:`LayoutError` unless ``path`` is an hdf5 file holding 3-D ``keys`` (CREMI layout)."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            missing = [k for k in keys if k not in f]
            flat = [k for k in keys if k in f and getattr(f[k], "ndim", 0) != 3]
            no_res = "volumes/raw" in keys and "volumes/raw" in f and "resolution" not in f["volumes/raw"].attrs
    except OSError as exc:
        raise LayoutError(f"{path} is not a readable hdf5 file: {exc}") from exc
    if missing or flat or no_res:
        raise LayoutError(f"{path} is not laid out as the official CREMI file: missing {missing}, not 3-D {flat}"
                          f"{', volumes/raw has no resolution attribute' if no_res else ''}")


def _urls(remote: RemoteFile, base_url: str | None) -> tuple[str, ...]:
    if base_url:
        return (f"{base_url.rstrip('/')}/{urllib.parse.quote(remote.filename)}",)
    return remote.urls


def _fetch_any(remote: RemoteFile, dest: Path, base_url: str | None, progress: bool) -> Path:
    """Try the official URLs in turn; a checksum failure is final, a network failure tries the next."""
    errors = []
    for url in _urls(remote, base_url):
        log.info("downloading %s from %s", remote.filename, url)
        try:
            return fetch(url, dest, md5=remote.md5, sha256=remote.sha256, size=remote.size, progress=progress)
        except ChecksumError:
            raise
        except DownloadError as exc:
            errors.append(str(exc))
    raise DownloadError(f"could not download {remote.filename}:\n  " + "\n  ".join(errors) +
                        f"\nDownload it yourself and pass it with --file PATH (it is then verified the same way).")


def _tidy(downloads: Path) -> None:
    """Remove the download cache folder once nothing (no resumable .part) is left in it."""
    if downloads.is_dir() and not any(downloads.iterdir()):
        downloads.rmdir()


def _install_archive(remote: RemoteFile, folder: Path, base_url, progress, local: Path | None, keep: bool) -> None:
    target = folder / remote.installs
    if target.exists():
        check_layout(folder, remote.expect)
        log.info("%s already installed at %s", remote.filename, target)
        return
    try:
        if local is not None:
            archive = verify_file(local, md5=remote.md5, sha256=remote.sha256, size=remote.size)
        else:
            archive = _fetch_any(remote, folder / ".downloads" / remote.filename, base_url, progress)
        try:
            extract(archive, folder, expect=remote.expect)
        except (LayoutError, UnsafeArchiveError):
            if local is None:                # not the published file: do not keep it for a "resume"
                archive.unlink(missing_ok=True)
            raise
        if local is None and not keep:
            archive.unlink()
    finally:
        _tidy(folder / ".downloads")
    log.info("installed %s at %s", remote.filename, target)


def _install_file(remote: RemoteFile, folder: Path, base_url, progress, local: Path | None) -> None:
    dest = folder / remote.installs
    if dest.exists():
        verify_file(dest, md5=remote.md5, sha256=remote.sha256, size=remote.size)
        if remote.hdf5_keys:
            check_hdf5(dest, remote.hdf5_keys)
        log.info("%s already installed at %s", remote.filename, dest)
        return
    staged = folder / ".downloads" / remote.filename
    try:
        if local is not None:
            verify_file(local, md5=remote.md5, sha256=remote.sha256, size=remote.size)
            staged.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(local, staged)
        else:
            _fetch_any(remote, staged, base_url, progress)
        try:
            if remote.hdf5_keys:
                check_hdf5(staged, remote.hdf5_keys)
        except LayoutError:
            staged.unlink()
            raise
        os.replace(staged, dest)
    finally:
        _tidy(staged.parent)
    log.info("installed %s at %s", remote.filename, dest)


def _default_root() -> Path:
    from datamodules.base import data_root     # imported lazily: it pulls in torch and lightning

    return data_root()


def download(source: str | DatasetSource, root: Path | None = None, *, base_url: str | None = None,
             files: tuple[Path, ...] = (), keep_archives: bool = False, progress: bool = True) -> Path:
    """Install one dataset under ``root`` (default $MIRBENCH_DATA) in its official layout; returns its folder.

    ``files``: local copies of published files (matched by file name) used instead of downloading.
    """
    src = SOURCES[source] if isinstance(source, str) else source
    folder = Path(root if root is not None else _default_root()) / src.folder
    local = {Path(f).name: Path(f) for f in files}
    for remote in src.files:
        if remote.archive:
            _install_archive(remote, folder, base_url, progress, local.get(remote.filename), keep_archives)
        else:
            _install_file(remote, folder, base_url, progress, local.get(remote.filename))
    return folder


def main(argv: list[str] | None = None) -> int:
    names = sorted(SOURCES) + sorted(GROUPS)
    p = argparse.ArgumentParser(prog="python -m datamodules.download", description=__doc__.split("\n\n")[0])
    p.add_argument("datasets", nargs="*", metavar="DATASET", help=f"one or more of {', '.join(names)}")
    p.add_argument("--root", type=Path, default=None, help="data folder (default: $MIRBENCH_DATA or ./data)")
    p.add_argument("--base-url", default=os.environ.get("MIRBENCH_MIRROR"),
                   help="mirror holding the published files by name (default: $MIRBENCH_MIRROR, else official)")
    p.add_argument("--file", dest="files", type=Path, action="append", default=[],
                   help="a published file you downloaded yourself (repeatable)")
    p.add_argument("--keep-archives", action="store_true", help="keep the downloaded archives after extraction")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--list", action="store_true", help="list datasets, files and official URLs")
    args = p.parse_args(argv)
    if unknown := [d for d in args.datasets if d not in names]:
        p.error(f"unknown dataset {unknown[0]!r}; choose from {', '.join(names)}")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.list or not args.datasets:
        for s in SOURCES.values():
            print(f"{s.key:18s} {s.label}  [{s.licence}]  -> $MIRBENCH_DATA/{s.folder}")
            for f in s.files:
                check = "md5" if f.md5 else "sha256" if f.sha256 else "layout only"
                print(f"    {f.filename}  ({check})  {f.urls[0]}")
        print(f"{'all':18s} {' + '.join(GROUPS['all'])}")
        return 0 if args.list else 2
    keys = [k for d in args.datasets for k in GROUPS.get(d, (d,))]
    published = {f.filename for k in keys for f in SOURCES[k].files}
    if stray := [f for f in args.files if f.name not in published]:
        p.error(f"--file {stray[0]}: not a file of {', '.join(dict.fromkeys(keys))} (expected one of "
                f"{', '.join(sorted(published))})")
    for key in dict.fromkeys(keys):
        try:
            folder = download(key, args.root, base_url=args.base_url, files=tuple(args.files),
                              keep_archives=args.keep_archives, progress=not args.no_progress)
        except DownloadError as exc:
            print(f"error ({key}): {exc}", file=sys.stderr)
            if SOURCES[key].note:
                print(f"note: {SOURCES[key].note}", file=sys.stderr)
            return 1
        log.info("%s ready in %s", key, folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
