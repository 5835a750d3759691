"""PathImgSR builder (MASRGAN paper, Sec. 4.1): real x4 LR-HR pairs cut from the 10x and 40x levels
of Camelyon16 whole-slide images.  The CLI and the DataModule are in :mod:`datamodules.pathimgsr`.

This module is the build itself (survey, split, sampling rounds, chunks, manifest); its parts live in
:mod:`~datamodules.pathimgsr_levels` (level choice), :mod:`~datamodules.pathimgsr_tissue` (tissue and
tumour masks), :mod:`~datamodules.pathimgsr_registration` (NCC registration and its quality control)
and :mod:`~datamodules.pathimgsr_io` (slide reads, JSON, manifest).

The paper's recipe (Sec. 4.1) and how it is done here:

* Candidate patch selection.  The paper reuses the centres of Li et al.'s 400,000 patches, a list it
  does not publish; candidate centres are drawn here uniformly over tissue instead: a tissue mask is
  computed on a low-resolution thumbnail (one mask cell = 1/8 of the 1050-pixel window, read by
  OpenSlide from a coarse level) with Otsu's threshold on the HSV saturation, bounded to [0.05, 0.15]
  (Otsu assumes glass and tissue; on a field that is all tissue it would split the stain instead).
  With annotations, tumour candidates are drawn inside the tumour polygons, normal ones outside.
* Patch determination.  A 1050x1050 window is read at 40x around the centre; it is kept if over 80 %
  of its pixels are tissue (saturation above the slide's threshold) and, with annotations, over 80 %
  lies inside tumour ("_0"/"_1" polygons minus "_2" cut-outs) or over 80 % outside it (normal).
  Normal patches come from normal slides and from exhaustively annotated tumour slides.
* LR-HR pairs.  The 256x256 LR is read at the level whose downsample is 4 relative to the 40x level
  (the HR level is chosen from the slide's objective power, else from its microns per pixel with
  40x = 0.25 um/px; the LR level by its downsample ratio to it; never from level indices); its luminance is enlarged x4 bicubic (PIL, float 'F' mode so
  nothing is rounded; Keys a = -0.5, MATLAB's bicubic kernel, differing only at the border) and
  registered inside the window by normalised cross-correlation over every offset (skimage
  ``match_template``, FFT-based); the best-matching 1024x1024 crop of the window is the HR image.  Quality control
  (not in the paper): a pair whose best NCC is below ``min_ncc`` or whose offset lies on the border of
  the search range is rejected and counted (``registration_rejected`` in build.json); no two test
  pairs overlap (later ones are dropped and counted, and redrawn).
* Sizes: 5000 tumour + 5000 normal training pairs, 1000 + 1000 test pairs, split by slide: the
  Camelyon16 training slides give the training pairs and its test slides the test pairs (the paper
  samples "from the training set" and "from the test set").  Other slide sets are split by slide with
  a seeded, class-stratified draw.  Without annotations all pairs are of class ``tissue``.

Note: Camelyon16's lower levels are downsamples the scanner software computed from the 40x scan, not
separate captures; the recipe is followed as the paper states it.

Output: ``<out>/{train,test}/{lr,hr}/<name>.png``, ``<out>/manifest.csv`` (one row per pair: split,
class, slide, levels, level-0 coordinates, registration offset and shift from the nominal position,
NCC, tissue and tumour fractions, the latter empty without annotations) and ``<out>/build.json``
(settings, counts, skipped slides, pairs/second).  Work is cut into chunks (slide x class x at most
``chunk_pairs`` pairs, each with its own seed), so the result does not depend on the number of worker
processes; finished chunks are kept under ``<out>/.work`` and an interrupted build resumes where it
stopped.  Slides that cannot be read are skipped with a message.  This module imports neither torch
nor Lightning, so its (spawned) worker processes start in a few seconds.
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing
import time
import zlib
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import openslide
from PIL import Image
from skimage.filters import threshold_otsu

from datamodules.camelyon16 import NON_EXHAUSTIVE
from datamodules.pathimgsr_io import (MANIFEST_FIELDS, log_to_stderr, read_json, read_rgb, write_json,  # noqa: F401
                                      write_manifest)
from datamodules.pathimgsr_levels import SLIDE_SUFFIXES, SlideSkipped, choose_levels, find_slides, slide_name
from datamodules.pathimgsr_registration import MIN_NCC, RegistrationCheck, register
from datamodules.pathimgsr_tissue import SAT_BOUNDS, read_asap_annotation, region_mask, saturation, tissue_fraction

_TUMOUR, _NORMAL, _TISSUE = "tumor", "normal", "tissue"
_MAX_ROUNDS = 8


@dataclass(frozen=True)
class BuildSettings:
    """Everything that decides the pairs.  Defaults are the paper's (Sec. 4.1)."""

    scale: int = 4                           # 40x / 10x
    lr_size: int = 256                       # LR side at 10x; HR side = lr_size * scale = 1024
    window: int = 1050                       # 40x region the enlarged LR is registered in
    hr_magnification: float | None = 40.0    # None: the slide's base level is the HR level
    n_train: tuple[int, int] = (5000, 5000)  # (tumour, normal); without annotations: their sum, 'tissue'
    n_test: tuple[int, int] = (1000, 1000)
    min_tissue: float = 0.8                  # tissue fraction of the window (Sec. 4.1: "over 80%")
    min_region: float = 0.8                  # inside-tumour / inside-normal fraction of the window
    test_fraction: float = 0.2               # share of slides for test when no Camelyon16 split is present
    seed: int = 0
    min_ncc: float = MIN_NCC                 # registration QC: reject pairs whose best NCC is lower
    split_by: str = "slide"                  # 'slide' (the paper); 'region': every slide gives train pairs from
                                             # its left and test pairs from its right test_fraction (smoke:
                                             # two slides of different scanners, both seen in training)
    attempts_per_pair: int = 30              # candidates tried per requested pair before a slide gives up
    chunk_pairs: int = 50                    # pairs per work unit (resume / parallel granularity)

    @property
    def hr_size(self) -> int:
        return self.lr_size * self.scale

    def key(self) -> str:
        return hashlib.sha1(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


PAPER = BuildSettings()


# ----------------------------------------------------------------------------------------------
# survey (per slide) and pair extraction (per chunk); both run in worker processes


@dataclass
class SlideSurvey:
    name: str
    path: str
    annotation: str | None = None
    hr_level: int = 0
    lr_level: int = 0
    hr_downsample: float = 1.0
    lr_downsample: float = 1.0
    hr_mpp: float | None = None
    dimensions: tuple[int, int] = (0, 0)
    cell: tuple[float, float] = (1.0, 1.0)        # level-0 pixels per mask cell (x, y)
    threshold: float = 0.0                        # saturation threshold for tissue
    pools: dict[str, int] = field(default_factory=dict)   # class -> candidate mask cells
    error: str | None = None


def survey_slide(path: str, annotation: str | None, settings: BuildSettings, work: str) -> SlideSurvey:
    """Open a slide, choose its levels, compute its tissue (and tumour) mask; save it under ``work``."""
    name = slide_name(Path(path))
    sv = SlideSurvey(name, str(path), annotation)
    try:
        with openslide.OpenSlide(path) as slide:
            sv.hr_level, sv.lr_level = choose_levels(slide, settings.hr_magnification, settings.scale)
            sv.hr_downsample = float(slide.level_downsamples[sv.hr_level])
            sv.lr_downsample = float(slide.level_downsamples[sv.lr_level])
            mpp = slide.properties.get(openslide.PROPERTY_NAME_MPP_X)
            sv.hr_mpp = float(mpp) * sv.hr_downsample if mpp else None
            sv.dimensions = tuple(slide.dimensions)
            cell = settings.window * sv.hr_downsample / 8             # mask cell: 1/8 of the window
            size = tuple(max(1, round(d / cell)) for d in sv.dimensions)
            thumb = np.asarray(slide.get_thumbnail(size).convert("RGB"))
    except openslide.OpenSlideError as exc:
        sv.error = f"OpenSlide cannot read it ({exc})"
        return sv
    except SlideSkipped as exc:
        sv.error = str(exc)
        return sv
    sv.cell = (sv.dimensions[0] / thumb.shape[1], sv.dimensions[1] / thumb.shape[0])
    sat = saturation(thumb)
    sv.threshold = float(np.clip(threshold_otsu(sat) if np.ptp(sat) > 0 else 1.0, *SAT_BOUNDS))
    labels = (sat > sv.threshold).astype(np.uint8)            # 0 glass, 1 tissue, 2 tissue in tumour
    if annotation:
        tumour, exclusion = read_asap_annotation(Path(annotation))
        labels[region_mask(tumour, exclusion, 0, 0, *sv.cell, labels.shape) & (labels > 0)] = 2
        sv.pools = {_TUMOUR: int((labels == 2).sum()),
                    _NORMAL: 0 if name.lower() in NON_EXHAUSTIVE else int((labels == 1).sum())}
    else:
        n = int((labels > 0).sum())
        sv.pools = {_TISSUE: n, _NORMAL: 0 if name.lower() in NON_EXHAUSTIVE else n}
    np.save(Path(work) / "survey" / f"{name}.npy", labels)
    return sv


@dataclass(frozen=True)
class Chunk:
    id: str
    split: str
    cls: str
    slide: str
    n: int
    taken: tuple[str, ...] = ()


@dataclass(frozen=True)
class Placement:
    """Where one candidate pair sits: LR origin (LR-level pixels), window origin (HR-level pixels)."""

    u: int
    v: int
    wx: int
    wy: int
    nominal_x: float          # offset of the HR crop in the window if the levels were perfectly aligned
    nominal_y: float


def place(cx: float, cy: float, sv: SlideSurvey, s: BuildSettings) -> Placement:
    """Snap a level-0 centre to the LR grid and centre the registration window on the LR patch."""
    ratio = sv.lr_downsample / sv.hr_downsample
    u, v = round(cx / sv.lr_downsample - s.lr_size / 2), round(cy / sv.lr_downsample - s.lr_size / 2)
    cu, cv = (u + s.lr_size / 2) * ratio, (v + s.lr_size / 2) * ratio     # LR centre in HR-level pixels
    wx, wy = round(cu - s.window / 2), round(cv - s.window / 2)
    return Placement(u, v, wx, wy, cu - s.hr_size / 2 - wx, cv - s.hr_size / 2 - wy)


def centre_range_x(split: str, sv: SlideSurvey, s: BuildSettings, half: float) -> tuple[float, float]:
    """Level-0 x range of candidate centres: the whole slide, or (``split_by`` 'region') the left part for
    train and the right ``test_fraction`` for test, ``half`` a window away from the boundary on both
    sides, so no train window reaches into the test region."""
    w = sv.dimensions[0]
    if s.split_by != "region":
        return half, w - half
    boundary = w * (1 - s.test_fraction)
    return (half, boundary - half) if split == "train" else (boundary + half, w - half)


def _candidate_cells(labels: np.ndarray, cls: str, annotated: bool, sv: SlideSurvey, half: float,
                     x_range: tuple[float, float]):
    """Mask cells of ``cls`` whose area meets the centres that keep a window inside the slide (and in
    ``x_range``)."""
    ys, xs = np.nonzero(labels == 2 if cls == _TUMOUR else labels == 1 if annotated else labels > 0)
    (cw, ch), (w, h) = sv.cell, sv.dimensions
    lo, hi = x_range
    keep = ((xs + 1) * cw > lo) & (xs * cw < hi) & ((ys + 1) * ch > half) & (ys * ch < h - half)
    return ys[keep], xs[keep]


def extract_chunk(chunk: Chunk, sv: SlideSurvey, settings: BuildSettings, out: str) -> dict:
    """Draw candidates of ``chunk.cls`` in one slide until ``chunk.n`` pairs are kept or the attempts
    run out; write the PNGs and the chunk's part file (atomically).  Returns the part."""
    t0, s, out_p = time.perf_counter(), settings, Path(out)
    labels = np.load(out_p / ".work" / "survey" / f"{sv.name}.npy")
    half = max(s.window * sv.hr_downsample, s.lr_size * sv.lr_downsample) / 2 + sv.lr_downsample
    x_lo, x_hi = centre_range_x(chunk.split, sv, s, half)
    ys, xs = _candidate_cells(labels, chunk.cls, sv.annotation is not None, sv, half, (x_lo, x_hi))
    check, rejected = RegistrationCheck(s.min_ncc), {"low_ncc": 0, "border_offset": 0}
    rng = np.random.default_rng([s.seed, zlib.crc32(chunk.id.encode())])
    polys = read_asap_annotation(Path(sv.annotation)) if sv.annotation else ([], [])
    taken, rows, attempts = set(chunk.taken), [], 0
    for sub in ("lr", "hr"):
        (out_p / chunk.split / sub).mkdir(parents=True, exist_ok=True)
    with openslide.OpenSlide(sv.path) as slide:
        (lr_w, lr_h), (hr_w, hr_h) = slide.level_dimensions[sv.lr_level], slide.level_dimensions[sv.hr_level]
        while len(rows) < chunk.n and attempts < s.attempts_per_pair * chunk.n and ys.size:
            attempts += 1
            k = rng.integers(ys.size)
            (cw, ch), (w, h) = sv.cell, sv.dimensions      # uniform in the cell, within the valid centres
            cx = rng.uniform(max(xs[k] * cw, x_lo), min((xs[k] + 1) * cw, x_hi))
            cy = rng.uniform(max(ys[k] * ch, half), min((ys[k] + 1) * ch, h - half))
            pl = place(cx, cy, sv, s)
            lr_x, lr_y = round(pl.u * sv.lr_downsample), round(pl.v * sv.lr_downsample)
            wx0, wy0 = round(pl.wx * sv.hr_downsample), round(pl.wy * sv.hr_downsample)
            name = f"{sv.name}_{chunk.cls}_{lr_x:06d}_{lr_y:06d}"
            if (min(pl.u, pl.v, pl.wx, pl.wy) < 0 or pl.u + s.lr_size > lr_w or pl.v + s.lr_size > lr_h
                    or pl.wx + s.window > hr_w or pl.wy + s.window > hr_h or name in taken):
                continue
            tumour_frac = 0.0
            if sv.annotation:                   # the region test first: it needs no pixels
                span = s.window * sv.hr_downsample / 64
                tumour_frac = float(region_mask(*polys, wx0, wy0, span, span, (64, 64)).mean())
                if (tumour_frac if chunk.cls == _TUMOUR else 1.0 - tumour_frac) <= s.min_region:
                    continue
            window = read_rgb(slide, wx0, wy0, sv.hr_level, s.window)
            tissue = tissue_fraction(window, sv.threshold)
            if tissue <= s.min_tissue:
                continue
            lr = read_rgb(slide, lr_x, lr_y, sv.lr_level, s.lr_size)
            dy, dx, ncc = register(window, lr, s.scale)
            why = check.reject_reason(dy, dx, ncc, s.window - s.hr_size)
            if why:
                rejected[why] += 1
                continue
            hr = np.ascontiguousarray(window[dy:dy + s.hr_size, dx:dx + s.hr_size])
            for sub, img in (("lr", lr), ("hr", hr)):      # zlib level 1: 3x faster than 6, ~1 % larger
                Image.fromarray(img).save(out_p / chunk.split / sub / f"{name}.png", compress_level=1)
            taken.add(name)
            rows.append(dict(
                split=chunk.split, name=name, cls=chunk.cls, slide=sv.name,
                lr=f"{chunk.split}/lr/{name}.png", hr=f"{chunk.split}/hr/{name}.png",
                lr_level=sv.lr_level, hr_level=sv.hr_level, lr_x=lr_x, lr_y=lr_y,
                hr_x=round(wx0 + dx * sv.hr_downsample), hr_y=round(wy0 + dy * sv.hr_downsample),
                offset_x=dx, offset_y=dy, shift_x=round(dx - pl.nominal_x, 3), shift_y=round(dy - pl.nominal_y, 3),
                ncc=round(ncc, 5), tissue_fraction=round(tissue, 4),
                tumor_fraction=round(tumour_frac, 4) if chunk.cls != _TISSUE else "",
                hr_mpp=round(sv.hr_mpp, 5) if sv.hr_mpp else ""))
    part = dict(id=chunk.id, rows=rows, attempts=attempts, exhausted=len(rows) < chunk.n, rejected=rejected,
                seconds=round(time.perf_counter() - t0, 3))
    write_json(out_p / ".work" / "parts" / f"{chunk.id}.json", part)
    return part


# ----------------------------------------------------------------------------------------------
# the build: survey, split by slide, rounds of chunks, manifest


@dataclass
class BuildReport:
    out: Path
    counts: dict[str, int]                 # "split/class" -> pairs
    new_pairs: int
    seconds: float
    pairs_per_second: float
    skipped: dict[str, str]                # slide -> reason
    shortfall: dict[str, int]              # "split/class" -> pairs missing
    splits: dict[str, list[str]]           # split -> slides


def split_slides(names: list[str], annotated: dict[str, bool], test_fraction: float, seed: int,
                 test_slides: Iterable[str] | None = None) -> dict[str, str]:
    """slide -> 'train' / 'test'.  Explicit ``test_slides``; else Camelyon16's own split (``test_*``
    slides are its test set); else a seeded draw of ``test_fraction`` of the slides, stratified by
    annotated / not annotated, with at least one slide on each side."""
    if test_slides:
        test = set(test_slides)
        unknown = test - set(names)
        if unknown:
            raise ValueError(f"--test-slides not among the slides: {sorted(unknown)}")
        return {n: "test" if n in test else "train" for n in names}
    if any(n.lower().startswith("test_") for n in names):
        return {n: "test" if n.lower().startswith("test_") else "train" for n in names}
    if len(names) < 2:
        raise ValueError(f"a split by slide needs at least two readable slides, got {names}")
    rng = np.random.default_rng(seed)
    split = {}
    for stratum in (True, False):
        group = sorted(n for n in names if annotated[n] == stratum)
        k = min(len(group) - 1, max(1, round(test_fraction * len(group)))) if len(group) > 1 else 0
        for i, n in enumerate(rng.permutation(group)):
            split[str(n)] = "test" if i < k else "train"
    if "test" not in split.values():
        split[sorted(names)[-1]] = "test"
    if "train" not in split.values():
        split[sorted(names)[0]] = "train"
    return split


def _targets(settings: BuildSettings, annotated: bool) -> dict[tuple[str, str], int]:
    if annotated:
        return {("train", _TUMOUR): settings.n_train[0], ("train", _NORMAL): settings.n_train[1],
                ("test", _TUMOUR): settings.n_test[0], ("test", _NORMAL): settings.n_test[1]}
    return {("train", _TISSUE): sum(settings.n_train), ("test", _TISSUE): sum(settings.n_test)}


def _plan_round(rnd: int, need: dict, eligible: dict, taken: dict, settings: BuildSettings) -> list[Chunk]:
    chunks = []
    for (split, cls), n in sorted(need.items()):
        slides = eligible[(split, cls)]
        if n <= 0 or not slides:
            continue
        order = np.random.default_rng([settings.seed, rnd, zlib.crc32(f"{split}/{cls}".encode())]).permutation(slides)
        for i, slide in enumerate(order):
            quota = n // len(order) + (1 if i < n % len(order) else 0)
            for k, start in enumerate(range(0, quota, settings.chunk_pairs)):
                chunks.append(Chunk(f"{split}-{cls}-{slide}-r{rnd}-c{k}", split, cls, str(slide),
                                    min(settings.chunk_pairs, quota - start), tuple(sorted(taken.get(str(slide), ())))))
    return chunks


def build(slides: Path, out: Path, annotations: Path | None = None, settings: BuildSettings = PAPER,
          workers: int = 0, test_slides: Iterable[str] | None = None,
          log: Callable[[str], None] = log_to_stderr) -> BuildReport:
    """Build PathImgSR from the slides under ``slides`` into ``out`` (see the module docstring).

    ``workers`` > 0 runs the slides and chunks in that many processes (0: in this process).  A
    finished build with the same settings is returned as is; a partial one is resumed.
    """
    t0 = time.perf_counter()
    out = Path(out)
    work = out / ".work"
    (work / "survey").mkdir(parents=True, exist_ok=True)
    (work / "parts").mkdir(parents=True, exist_ok=True)
    files = find_slides(slides)
    if not files:
        raise FileNotFoundError(f"no slides ({', '.join(SLIDE_SUFFIXES)}) under {slides}")
    xmls = _annotation_files(annotations) if annotations else {}
    state = dict(settings=asdict(settings), slides=[slide_name(p) for p in files], annotations=bool(annotations),
                 test_slides=sorted(test_slides or []))
    old = read_json(work / "state.json")
    if old is not None and old != json.loads(json.dumps(state)):
        raise ValueError(f"{out} holds a build with other settings or slides; use a new --out")
    write_json(work / "state.json", state)
    done = read_json(out / "build.json")
    if done and done.get("finished"):
        log(f"[pathimgsr] {out} is already built ({sum(done['counts'].values())} pairs)")
        return _report_from(out, done)

    with _executor(workers) as pool:
        surveys, skipped = _survey(files, xmls, bool(annotations), settings, work, pool, log)
        annotated = {n: sv.annotation is not None for n, sv in surveys.items()}
        if settings.split_by == "region":      # every slide gives both splits, from disjoint regions
            split = {n: "both" for n in surveys}
        else:
            split = split_slides(sorted(surveys), annotated, settings.test_fraction, settings.seed, test_slides)
        extent = {n: settings.lr_size * sv.lr_downsample for n, sv in surveys.items()}   # LR patch, level 0
        targets = _targets(settings, bool(annotations))
        parts, new_pairs, t_pairs = {}, 0, time.perf_counter()
        exhausted: set[tuple[str, str]] = set()
        for rnd in range(_MAX_ROUNDS):
            rows, _ = _without_overlapping_test_pairs(_dedupe(r for _, p in sorted(parts.items()) for r in p["rows"]),
                                                      extent)
            have = {k: sum(1 for r in rows if (r["split"], r["cls"]) == k) for k in targets}
            need = {k: targets[k] - have[k] for k in targets}
            eligible = {(sp, c): sorted(n for n, sv in surveys.items() if split[n] in (sp, "both") and sv.pools.get(c, 0) > 0
                                        and (n, c) not in exhausted and n not in skipped) for sp, c in targets}
            taken: dict[str, set] = {}
            for r in rows:
                taken.setdefault(r["slide"], set()).add(r["name"])
            chunks = _plan_round(rnd, need, eligible, taken, settings)
            if not chunks:
                break
            todo = []
            for c in chunks:
                part = read_json(work / "parts" / f"{c.id}.json")
                if part is None:
                    todo.append(c)
                else:
                    parts[c.id] = part
            if rnd == 0 and len(todo) < len(chunks):
                log(f"[pathimgsr] resuming: {len(chunks) - len(todo)} of {len(chunks)} chunks already done")
            asked = sum(c.n for c in todo)
            for job, part in _run(pool, extract_chunk, [(c, surveys[c.slide], settings, str(out)) for c in todo]):
                c = job[0]
                if isinstance(part, Exception):
                    skipped[c.slide] = f"read error: {part}"
                    log(f"[pathimgsr] skipping slide {c.slide}: {part}")
                    continue
                parts[c.id] = part
                new_pairs += len(part["rows"])
                rate = new_pairs / max(time.perf_counter() - t_pairs, 1e-9)
                log(f"[pathimgsr] round {rnd} {c.split}/{c.cls} {c.slide}: +{len(part['rows'])} "
                    f"({new_pairs} new pairs, {asked} asked this round, {rate:.2f} pairs/s)")
            for c in chunks:
                if c.id in parts and parts[c.id]["exhausted"]:
                    exhausted.add((c.slide, c.cls))

    rows, overlapping = _without_overlapping_test_pairs(
        _dedupe(r for _, p in sorted(parts.items()) for r in p["rows"]), extent)
    rows.sort(key=lambda r: (r["split"] != "train", r["cls"], r["slide"], r["name"]))
    rejected = {k: sum(p.get("rejected", {}).get(k, 0) for p in parts.values()) for k in ("low_ncc", "border_offset")}
    if any(rejected.values()):
        log(f"[pathimgsr] registration QC rejected {rejected['low_ncc']} pairs with NCC < {settings.min_ncc} and "
            f"{rejected['border_offset']} whose offset lay on the border of the search range")
    counts = {f"{sp}/{c}": sum(1 for r in rows if (r["split"], r["cls"]) == (sp, c)) for sp, c in targets}
    shortfall = {f"{sp}/{c}": targets[(sp, c)] - counts[f"{sp}/{c}"] for sp, c in targets
                 if counts[f"{sp}/{c}"] < targets[(sp, c)]}
    for key, n in shortfall.items():
        log(f"[pathimgsr] warning: {key} has {counts[key]} pairs, {n} short of the {counts[key] + n} asked: "
            "its slides gave no more candidates passing the tissue/region tests within the attempt budget")
    write_manifest(out / "manifest.csv", rows)
    seconds = time.perf_counter() - t0
    report = BuildReport(out, counts, new_pairs, seconds, new_pairs / max(seconds, 1e-9), skipped, shortfall,
                         {sp: sorted(n for n, s in split.items() if s in (sp, "both")) for sp in ("train", "test")})
    write_json(out / "build.json", dict(
        finished=True, settings=asdict(settings), key=settings.key(), counts=counts, shortfall=shortfall,
        skipped=skipped, splits=report.splits, new_pairs=new_pairs, seconds=round(seconds, 3),
        registration_rejected=rejected, overlapping_test_pairs_dropped=overlapping,
        pairs_per_second=round(report.pairs_per_second, 3),
        levels={n: dict(hr=sv.hr_level, lr=sv.lr_level, hr_mpp=sv.hr_mpp) for n, sv in surveys.items()}))
    log(f"[pathimgsr] {sum(counts.values())} pairs in {out} ({new_pairs} new in {seconds:.1f} s, "
        f"{report.pairs_per_second:.2f} pairs/s); {len(skipped)} slides skipped")
    return report


def _survey(files, xmls, with_annotations, settings, work, pool, log):
    """Survey every slide (cached under ``work/survey``); returns (surveys, skipped slide -> reason)."""
    surveys, skipped, jobs = {}, {}, []
    for p in files:
        name = slide_name(p)
        xml = xmls.get(name.lower())
        if with_annotations and xml is None and name.lower().startswith("tumor"):
            skipped[name] = "tumour slide without an annotation file"
            continue
        cached = read_json(work / "survey" / f"{name}.json")
        if cached is not None and (work / "survey" / f"{name}.npy").is_file():
            surveys[name] = SlideSurvey(**{**cached, "dimensions": tuple(cached["dimensions"]),
                                           "cell": tuple(cached["cell"])})
        else:
            jobs.append((str(p), str(xml) if xml else None, settings, str(work)))
    for job, sv in _run(pool, survey_slide, jobs):
        if isinstance(sv, Exception):
            sv = SlideSurvey(slide_name(Path(job[0])), job[0], error=f"{type(sv).__name__}: {sv}")
        if sv.error:
            skipped[sv.name] = sv.error
        else:
            write_json(work / "survey" / f"{sv.name}.json", asdict(sv))
            surveys[sv.name] = sv
    for name, reason in sorted(skipped.items()):
        log(f"[pathimgsr] skipping slide {name}: {reason}")
    if not surveys:
        reasons = "; ".join(f"{n}: {r}" for n, r in sorted(skipped.items()))
        if skipped and all("coarser than level" in r or "level (levels at" in r for r in skipped.values()):
            raise FileNotFoundError(
                f"no slide has a level {settings.scale}x coarser than its HR level at the asked magnification; "
                f"PathImgSR needs real optical pairs from a multi-level pyramid (Camelyon16's 40x/10x). "
                f"Skipped: {reasons}")
        raise FileNotFoundError(f"every slide was skipped ({reasons})")
    return surveys, skipped


class _InProcess:
    """Stands in for a process pool when ``workers`` == 0."""

    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _executor(workers: int):
    if workers <= 0:
        return _InProcess()
    # spawn, not fork: the parent (a trainer, pytest) may hold torch/OpenMP threads that fork can deadlock
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))


def _run(pool, fn, jobs):
    """Yield (job, result or the exception it raised) for ``fn(*job)``, in a pool or in process."""
    if pool is None:
        for job in jobs:
            try:
                yield job, fn(*job)
            except Exception as exc:  # noqa: BLE001 - a bad slide must not stop the build
                yield job, exc
        return
    futures = {pool.submit(fn, *job): job for job in jobs}
    for fut in as_completed(futures):
        exc = fut.exception()
        yield futures[fut], (exc if exc is not None else fut.result())


def _without_overlapping_test_pairs(rows: list[dict], extent: dict[str, float]) -> tuple[list[dict], int]:
    """Drop every test pair whose LR footprint (``extent`` level-0 px square from (lr_x, lr_y)) overlaps
    an earlier kept test pair of the same slide (in name order: deterministic).  -> (rows, dropped)."""
    kept, boxes, dropped = [], {}, 0
    for r in sorted(rows, key=lambda r: (r["split"], r["slide"], r["name"])):
        if r["split"] == "test":
            e, x, y = extent.get(r["slide"], 0.0), float(r["lr_x"]), float(r["lr_y"])
            if any(abs(x - bx) < e and abs(y - by) < e for bx, by in boxes.get(r["slide"], ())):
                dropped += 1
                continue
            boxes.setdefault(r["slide"], []).append((x, y))
        kept.append(r)
    return kept, dropped


def _dedupe(rows: Iterable[dict]) -> list[dict]:
    seen, out = set(), []
    for r in rows:
        if r["name"] not in seen:
            seen.add(r["name"])
            out.append(r)
    return out


def _annotation_files(folder: Path) -> dict[str, Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"annotation folder {folder} does not exist")
    return {p.stem.lower(): p for p in sorted(folder.rglob("*.xml"))}


def _report_from(out: Path, done: dict) -> BuildReport:
    return BuildReport(out, done["counts"], 0, 0.0, 0.0, done.get("skipped", {}), done.get("shortfall", {}),
                       done.get("splits", {}))
