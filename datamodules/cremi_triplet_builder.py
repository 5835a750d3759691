"""cremi_triplet builder (SSAN, "Dataset and preprocessing"): EM stack -> filtered, aligned triplets.

The paper's pipeline, with the thresholds it does not state chosen and recorded (spec §1):

1. read an EM stack: the official CREMI hdf5 (``volumes/raw`` + its ``resolution``; neuron ids
   ``volumes/labels/neuron_ids`` placed by their ``offset`` attribute in nm), a multi-page tif stack,
   or a folder of z-ordered 2-D slices (PNG / TIFF, natural sort);
2. for every middle slice z, align z-1 and z+1 to z by template matching (zero-mean NCC, the
   ``TM_CCOEFF_NORMED`` of OpenCV = ``skimage.feature.match_template``) over integer shifts within
   +-margin; shifted-in pixels are zero and marked invalid;
3. crop left->right, top->bottom with a stride (512/512 in the paper) from the frame origin
   (``grid='origin'``) or from the valid intersection (``grid='valid'``); crops touching invalid
   pixels are dropped;
4. drop defective / weakly continuous / unevenly blurred crops (:class:`Thresholds`); ``mode='paper'``
   keeps, after the defect and blur rules, the K most continuous crops (K = the paper's count);
5. histogram specification of the neighbours, reference ``hist_ref`` (recorded in build.json):
   ``volume`` (default): the pooled grey-level histogram of every slice that belongs to a kept triplet,
   one reference for the whole build (``hist_ref_counts``); ``middle``: the middle slice of each
   triplet, the paper's choice ("to reduce the difference in brightness and contrast between three
   consecutive images"; ``skimage.exposure.match_histograms``); ``none``.  ``middle`` is not the
   default because it hands each input the grey-level distribution of the very slice to be
   predicted, a ground-truth leak that flatters every method and most of all the trivial average;
   it is kept as the option that reproduces the paper's preprocessing;
6. split 3:1:1: ``zblock`` (contiguous ground-truth z ranges; triplets that share a slice with a later
   split are dropped so no slice is both trained on and tested) or the paper's ``random`` (seeded; with
   z-sliding triplets a test slice is a training input).

Output: ``<out>/<split>/<z>_<y>_<x>/im{1,2,3}.png`` (previous, middle, next; the authors' layout),
``membrane.png`` where neuron labels cover the crop (0 background, 255 membrane, 128 unlabelled), a
``manifest.json`` (one row per triplet: z, y, x, shifts, scores, split) and ``build.json`` (settings,
thresholds, counts, finished).  Kept free of torch so it runs anywhere.
"""
from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

# SSAN "Dataset and preprocessing": triplets kept per CREMI sample (and the private mouse_triplet)
PAPER_COUNTS = {"A": 3652, "B": 2631, "C": 1333, "mouse": 2674}
_SPECIAL_IDS = np.uint64(2 ** 63)  # CREMI marks "ignore" / special labels with ids >= 2^63


def log_to_stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Thresholds:
    """Filter rules (spec §1, step 5).  defect: any frame with std < ``min_std``, more than ``max_clipped``
    of its pixels at 0 or 255, or a flat ``flat_block`` x ``flat_block`` block (max - min <=
    ``flat_range``); continuity: min(NCC(prev, mid), NCC(mid, next)) >= ``min_continuity``; blur: the
    ratio of the largest to the smallest Laplacian variance of the three frames <= ``max_blur_ratio``."""

    min_std: float = 2.0
    max_clipped: float = 0.005
    flat_block: int = 32
    flat_range: int = 2
    min_continuity: float = 0.15
    max_blur_ratio: float = 2.0


HIST_REFS = ("volume", "middle", "none")
HIST_REF_NOTES = {"volume": "neighbours matched to the pooled histogram of every slice in a kept triplet (one "
                            "reference for the build, hist_ref_counts; no per-triplet ground-truth leak)",
                  "middle": "neighbours matched to the middle (ground-truth) slice's histogram (the paper's "
                            "choice; leaks the target's grey-level distribution into the inputs)",
                  "none": "no histogram specification"}


@dataclass(frozen=True)
class BuildSettings:
    crop: int = 512
    stride: int = 512
    margin: int = 64                 # alignment search range (pixels each way)
    grid: str = "origin"             # 'origin' or 'valid'
    mode: str = "filter"             # 'filter' (thresholds) or 'paper' (top-K continuity, K = paper count)
    paper_count: int | None = None   # K for mode='paper'
    hist_ref: str = "volume"         # 'volume' (leak-free), 'middle' (the paper's) or 'none'
    split: str = "zblock"            # 'zblock' or 'random'
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)
    seed: int = 0
    thresholds: Thresholds = field(default_factory=Thresholds)

    def __post_init__(self):
        for name, value, allowed in (("grid", self.grid, ("origin", "valid")), ("mode", self.mode, ("filter", "paper")),
                                     ("hist_ref", self.hist_ref, HIST_REFS),
                                     ("split", self.split, ("zblock", "random"))):
            if value not in allowed:
                raise ValueError(f"{name} {value!r} not in {allowed}")
        if self.mode == "paper" and not self.paper_count:
            raise ValueError("mode='paper' needs paper_count (the paper's triplet count, e.g. 1333 for C)")

    def key(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


PAPER = BuildSettings()
SMOKE = BuildSettings(crop=128, stride=128, margin=16, grid="valid")


# ----------------------------------------------------------------------------------------------
# reading


@dataclass
class Stack:
    raw: np.ndarray                         # (Z, H, W) uint8 (an h5py dataset reads lazily per slice)
    source: str
    resolution: tuple[float, ...] | None = None
    labels: np.ndarray | None = None        # (Z', H', W') neuron ids
    labels_offset: tuple[int, int, int] = (0, 0, 0)  # voxel position of labels[0, 0, 0] in raw

    def label_slice(self, z: int) -> tuple[np.ndarray, int, int] | None:
        """(ids, y0, x0) of raw slice z, or None where no labels cover it."""
        if self.labels is None:
            return None
        lz = z - self.labels_offset[0]
        if not 0 <= lz < self.labels.shape[0]:
            return None
        return np.asarray(self.labels[lz]), self.labels_offset[1], self.labels_offset[2]


def _natural_key(p: Path):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name)]


def read_stack(source: Path, labels: Path | None = None) -> Stack:
    """An EM stack from an hdf5 file (CREMI layout), a tif stack or a folder of 2-D slices."""
    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(f"EM stack not found: {source}")
    if source.is_dir():
        files = sorted((p for p in source.iterdir() if p.suffix.lower() in (".png", ".tif", ".tiff")), key=_natural_key)
        if len(files) < 3:
            raise ValueError(f"{source} holds {len(files)} PNG/TIFF slices; a triplet needs at least 3")
        raw = np.stack([_read_gray(p) for p in files])
        stack = Stack(raw, str(source))
    elif source.suffix.lower() in (".h5", ".hdf", ".hdf5"):
        import h5py
        f = h5py.File(source, "r")
        if "volumes/raw" not in f:
            raise ValueError(f"{source} has no 'volumes/raw' dataset (the CREMI layout)")
        raw = f["volumes/raw"]
        res = tuple(float(v) for v in raw.attrs["resolution"]) if "resolution" in raw.attrs else None
        stack = Stack(raw, str(source), res)
        if "volumes/labels/neuron_ids" in f:
            lab = f["volumes/labels/neuron_ids"]
            off = lab.attrs.get("offset", (0, 0, 0))
            lres = tuple(float(v) for v in lab.attrs.get("resolution", res or (1, 1, 1)))
            stack.labels = lab
            stack.labels_offset = tuple(int(round(o / r)) for o, r in zip(off, lres))
    else:
        import tifffile
        raw = tifffile.imread(source)
        if raw.ndim != 3:
            raise ValueError(f"{source}: expected a (Z, H, W) stack, got shape {raw.shape}")
        stack = Stack(raw, str(source))
    if stack.raw.dtype != np.uint8:
        raise ValueError(f"{source}: expected 8-bit EM sections, got {stack.raw.dtype}")
    if labels is not None:
        import tifffile
        stack.labels = tifffile.imread(labels)
        if stack.labels.shape != tuple(stack.raw.shape):
            raise ValueError(f"labels {stack.labels.shape} do not match the stack {tuple(stack.raw.shape)}")
    return stack


def _read_gray(path: Path) -> np.ndarray:
    from PIL import Image
    with Image.open(path) as im:
        arr = np.asarray(im)
    if arr.ndim == 3:
        arr = np.asarray(Image.fromarray(arr).convert("L"))
    if arr.dtype != np.uint8:
        raise ValueError(f"{path}: expected an 8-bit slice, got {arr.dtype}")
    return arr


# ----------------------------------------------------------------------------------------------
# alignment, filters


def align_shift(moving: np.ndarray, ref: np.ndarray, margin: int) -> tuple[tuple[int, int], float]:
    """Integer (dy, dx) such that ``shift(moving, dy, dx)`` best matches ``ref``, and its NCC.

    The template is ``moving`` without a ``margin`` border; zero-mean NCC over every placement within
    +-margin.  A flat image (no structure) gives (0, 0) and NCC 0."""
    from skimage.feature import match_template
    tpl = moving[margin:moving.shape[0] - margin, margin:moving.shape[1] - margin].astype(np.float32)
    if tpl.std() == 0 or ref.std() == 0:
        return (0, 0), 0.0
    ncc = np.nan_to_num(match_template(ref.astype(np.float32), tpl), nan=-1.0)
    py, px = np.unravel_index(int(np.argmax(ncc)), ncc.shape)
    return (int(py) - margin, int(px) - margin), float(ncc[py, px])


def shift_image(img: np.ndarray, dy: int, dx: int) -> tuple[np.ndarray, np.ndarray]:
    """out[y, x] = img[y - dy, x - dx], zero outside; and the validity mask."""
    h, w = img.shape
    out, valid = np.zeros_like(img), np.zeros((h, w), bool)
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[yd, xd] = img[ys, xs]
    valid[yd, xd] = True
    return out, valid


def ncc(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64) - a.mean(), b.astype(np.float64) - b.mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 0 else 0.0


def laplacian_var(img: np.ndarray) -> float:
    from scipy.ndimage import laplace
    return float(laplace(img.astype(np.float64)).var())


def defect_reason(frame: np.ndarray, th: Thresholds) -> str | None:
    if frame.std() < th.min_std:
        return "flat frame"
    if ((frame == 0) | (frame == 255)).mean() > th.max_clipped:
        return "clipped pixels"
    b = th.flat_block
    h, w = (frame.shape[0] // b) * b, (frame.shape[1] // b) * b
    blocks = frame[:h, :w].reshape(h // b, b, w // b, b)
    if ((blocks.max(axis=(1, 3)).astype(int) - blocks.min(axis=(1, 3))) <= th.flat_range).any():
        return "flat block"
    return None


def crop_scores(frames: tuple[np.ndarray, np.ndarray, np.ndarray], th: Thresholds) -> dict:
    """Defect reason (or None), continuity and blur ratio of one aligned triplet crop."""
    defect = next((r for r in (defect_reason(f, th) for f in frames) if r), None)
    cont = min(ncc(frames[0], frames[1]), ncc(frames[1], frames[2]))
    lv = [laplacian_var(f) for f in frames]
    blur = max(lv) / min(lv) if min(lv) > 0 else float("inf")
    return {"defect": defect, "continuity": round(cont, 6), "blur_ratio": round(blur, 6)}


def _grid(lo: int, hi: int, crop: int, stride: int) -> list[int]:
    return list(range(lo, hi - crop + 1, stride))


def membrane_mask(ids: np.ndarray) -> np.ndarray:
    """Membrane = 4-neighbour boundaries between different neuron ids, dilated by 1 px; 0 = background,
    255 = membrane, 128 = unlabelled (id 0 or a special id >= 2^63, and their boundaries)."""
    from scipy.ndimage import binary_dilation
    ids = ids.astype(np.uint64)
    known = (ids > 0) & (ids < _SPECIAL_IDS)
    edge = np.zeros(ids.shape, bool)
    for a, b in (((slice(None), slice(1, None)), (slice(None), slice(None, -1))),
                 ((slice(1, None), slice(None)), (slice(None, -1), slice(None)))):
        diff = (ids[a] != ids[b]) & known[a] & known[b]
        edge[a] |= diff
        edge[b] |= diff
    edge = binary_dilation(edge)
    out = np.where(edge, 255, 0).astype(np.uint8)
    out[~known & ~edge] = 128
    return out


# ----------------------------------------------------------------------------------------------
# build


def _candidates(stack: Stack, s: BuildSettings, log) -> list[dict]:
    """Aligned crops of every triplet with their scores (no filtering yet)."""
    rows = []
    n_z = stack.raw.shape[0]
    for z in range(1, n_z - 1):
        mid = np.asarray(stack.raw[z])
        shifted, shifts, valid = [], [], np.ones(mid.shape, bool)
        for nz in (z - 1, z + 1):
            (dy, dx), score = align_shift(np.asarray(stack.raw[nz]), mid, s.margin)
            img, v = shift_image(np.asarray(stack.raw[nz]), dy, dx)
            shifted.append(img)
            shifts.append([dy, dx])
            valid &= v
        h, w = mid.shape
        if s.grid == "valid":
            ys, xs = np.flatnonzero(valid.any(1)), np.flatnonzero(valid.any(0))  # a rectangle
            gy, gx = _grid(int(ys[0]), int(ys[-1]) + 1, s.crop, s.stride), _grid(int(xs[0]), int(xs[-1]) + 1, s.crop, s.stride)
        else:
            gy, gx = _grid(0, h, s.crop, s.stride), _grid(0, w, s.crop, s.stride)
        for y in gy:
            for x in gx:
                win = (slice(y, y + s.crop), slice(x, x + s.crop))
                row = {"z": z, "y": y, "x": x, "shifts": shifts}
                if not valid[win].all():
                    row.update(defect="alignment fill", continuity=None, blur_ratio=None)
                else:
                    row.update(crop_scores((shifted[0][win], mid[win], shifted[1][win]), s.thresholds))
                rows.append(row)
        log(f"  z={z}: shifts {shifts}, {len(gy) * len(gx)} crops")
    return rows


def select(rows: list[dict], s: BuildSettings) -> tuple[list[dict], dict]:
    """Apply the filters; returns the kept rows and what each rule dropped (and the implied tau_c)."""
    th = s.thresholds
    for r in rows:
        if r["defect"]:
            r["dropped"] = "defect: " + r["defect"]
        elif r["blur_ratio"] > th.max_blur_ratio:
            r["dropped"] = "blur"
        elif s.mode == "filter" and r["continuity"] < th.min_continuity:
            r["dropped"] = "continuity"
        else:
            r["dropped"] = None
    kept = [r for r in rows if r["dropped"] is None]
    info = {}
    if s.mode == "paper":
        kept.sort(key=lambda r: (-r["continuity"], r["z"], r["y"], r["x"]))
        for r in kept[s.paper_count:]:
            r["dropped"] = "continuity (paper top-K)"
        kept = kept[: s.paper_count]
        info["implied_min_continuity"] = kept[-1]["continuity"] if kept else None
        info["shortfall"] = max(0, s.paper_count - len(kept))
    drops, by_z = {}, {}
    for r in rows:
        if r["dropped"]:
            k = r["dropped"].split(":")[0]
            drops[k] = drops.get(k, 0) + 1
            by_z.setdefault(k, {}).setdefault(str(r["z"]), 0)
            by_z[k][str(r["z"])] += 1
    info["dropped"], info["dropped_by_z"] = drops, by_z
    return sorted(kept, key=lambda r: (r["z"], r["y"], r["x"])), info


def assign_splits(kept: list[dict], s: BuildSettings) -> list[dict]:
    """Set r['split'] in place; returns the rows that stay (zblock drops the guard triplets)."""
    if s.split == "random":
        n = len(kept)
        perm = np.random.default_rng(s.seed).permutation(n)
        n_tr, n_va = int(np.floor(s.fractions[0] * n)), int(np.floor(s.fractions[1] * n))
        for rank, i in enumerate(perm):
            kept[i]["split"] = "train" if rank < n_tr else "val" if rank < n_tr + n_va else "test"
        return kept
    zs = sorted({r["z"] for r in kept})
    n_tr, n_va = int(np.floor(s.fractions[0] * len(zs))), int(np.floor(s.fractions[1] * len(zs)))
    block = {z: "train" if i < n_tr else "val" if i < n_tr + n_va else "test" for i, z in enumerate(zs)}
    out, used = [], set()  # slices of the splits already kept: test first, then val, then train
    for split in ("test", "val", "train"):
        rows = [r for r in kept if block[r["z"]] == split]
        ok = [r for r in rows if not ({r["z"] - 1, r["z"], r["z"] + 1} & used)]
        for r in rows:
            r["split"] = split if r in ok else None
        used |= {z for r in ok for z in (r["z"] - 1, r["z"], r["z"] + 1)}
        out += ok
    return sorted(out, key=lambda r: (r["z"], r["y"], r["x"]))


def match_to_counts(img: np.ndarray, ref_counts: np.ndarray) -> np.ndarray:
    """uint8 histogram specification of ``img`` to a reference histogram (256 counts): the quantile
    mapping of ``skimage.exposure.match_histograms`` (equal to it when ``ref_counts`` is a reference
    image's bincount), written out because that function takes a reference image, not a histogram."""
    src_counts = np.bincount(img.ravel(), minlength=256)
    src_q = np.cumsum(src_counts) / img.size
    values = np.flatnonzero(ref_counts)
    ref_q = np.cumsum(ref_counts[values]) / ref_counts.sum()
    lut = np.interp(src_q, ref_q, values)
    return np.clip(np.round(lut[img]), 0, 255).astype(np.uint8)


def volume_histogram(stack: "Stack", kept: list[dict]) -> np.ndarray:
    """Pooled grey-level counts (256) of every slice that is part of a kept triplet (blank or defective
    slices are not: their triplets were dropped)."""
    counts = np.zeros(256, np.int64)
    for z in sorted({zz for r in kept for zz in (r["z"] - 1, r["z"], r["z"] + 1)}):
        counts += np.bincount(np.asarray(stack.raw[z]).ravel(), minlength=256)
    return counts


def _write_png(path: Path, arr: np.ndarray) -> None:
    from PIL import Image
    Image.fromarray(arr).save(path, optimize=False, compress_level=1)


def build(source: Path, out: Path, settings: BuildSettings = PAPER, labels: Path | None = None,
          log: Callable[[str], None] = log_to_stderr) -> dict:
    """Build the triplets of one stack into ``out``; returns the build.json content."""
    from skimage.exposure import match_histograms
    out = Path(out)
    stack = read_stack(source, labels)
    if stack.raw.shape[0] < 3:
        raise ValueError(f"{source} has {stack.raw.shape[0]} slices; a triplet needs 3")
    log(f"cremi_triplet: {source} {tuple(stack.raw.shape)}, settings {settings.key()}")
    rows = _candidates(stack, settings, log)
    kept, info = select(rows, settings)
    kept = assign_splits(kept, settings)
    out.mkdir(parents=True, exist_ok=True)
    counts = {"candidates": len(rows), "kept": len(kept), "train": 0, "val": 0, "test": 0, "membrane": 0}
    cache: dict[int, np.ndarray] = {}
    c = settings.crop
    ref_counts = volume_histogram(stack, kept) if settings.hist_ref == "volume" and kept else None
    for r in kept:
        z = r["z"]
        for zz in (z - 1, z, z + 1):
            if zz not in cache:
                cache = {k: v for k, v in cache.items() if k >= z - 1}
                cache[zz] = np.asarray(stack.raw[zz])
        win = (slice(r["y"], r["y"] + c), slice(r["x"], r["x"] + c))
        mid = cache[z][win]
        frames = []
        for zz, (dy, dx) in ((z - 1, r["shifts"][0]), (z + 1, r["shifts"][1])):
            img = shift_image(cache[zz], dy, dx)[0][win]
            if settings.hist_ref == "middle":
                img = np.clip(np.round(match_histograms(img, mid)), 0, 255).astype(np.uint8)
            elif settings.hist_ref == "volume":
                img = match_to_counts(img, ref_counts)
            frames.append(img)
        name = f"{z:04d}_{r['y']:05d}_{r['x']:05d}"
        d = out / r["split"] / name
        d.mkdir(parents=True, exist_ok=True)
        for k, img in enumerate((frames[0], mid, frames[1]), 1):
            _write_png(d / f"im{k}.png", np.ascontiguousarray(img))
        lab = stack.label_slice(z)
        r["membrane"] = False
        if lab is not None:
            ids, y0, x0 = lab
            full = np.zeros(mid.shape, np.uint64)  # unlabelled outside the labelled box
            ys, xs = slice(max(r["y"], y0), min(r["y"] + c, y0 + ids.shape[0])), slice(max(r["x"], x0), min(r["x"] + c, x0 + ids.shape[1]))
            if ys.start < ys.stop and xs.start < xs.stop:
                full[ys.start - r["y"]:ys.stop - r["y"], xs.start - r["x"]:xs.stop - r["x"]] = ids[ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0]
            m = membrane_mask(full)
            if (m == 255).sum() > 0:
                _write_png(d / "membrane.png", m)
                r["membrane"] = True
                counts["membrane"] += 1
        r["name"] = name
        counts[r["split"]] += 1
    manifest = [{k: r[k] for k in ("name", "split", "z", "y", "x", "shifts", "continuity", "blur_ratio", "membrane")}
                for r in kept]
    (out / "manifest.json").write_text(json.dumps(manifest, indent=0) + "\n")
    report = {"source": str(source), "shape": list(stack.raw.shape), "resolution": stack.resolution,
              "labels": stack.labels is not None, "labels_offset": list(stack.labels_offset),
              "settings": asdict(settings), "counts": counts, **info, "finished": True,
              "hist_ref": settings.hist_ref, "hist_ref_note": HIST_REF_NOTES[settings.hist_ref],
              "hist_ref_counts": None if ref_counts is None else ref_counts.tolist()}
    (out / "build.json").write_text(json.dumps(report, indent=1) + "\n")
    log(f"cremi_triplet: kept {counts['kept']} of {counts['candidates']} crops "
        f"(train {counts['train']}, val {counts['val']}, test {counts['test']}); dropped {info['dropped']}")
    return report


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def settings_from(**kw) -> BuildSettings:
    th = {k: kw.pop(k) for k in list(kw) if k in Thresholds.__dataclass_fields__}
    return replace(PAPER, **kw, thresholds=replace(Thresholds(), **th))


def atomic_build(source: Path, final: Path, settings: BuildSettings, labels: Path | None = None,
                 log: Callable[[str], None] = log_to_stderr) -> Path:
    """Build into a temporary sibling and move it into place (a concurrent builder's copy wins)."""
    import shutil
    tmp = final.with_name(f".{final.name}.{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    build(source, tmp, settings, labels, log)
    final.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(tmp, final)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    return final
