"""Kather et al. 2019 colorectal H&E patches (NCT-CRC-HE-100K / CRC-VAL-HE-7K), 224x224 at 0.5 um/px.

Official layout under ``$MIRBENCH_DATA/kather/<release>/<CLASS>/*.tif`` (the shared sample holds
PNG copies, pixel-identical).  SNADN (Liang et al. 2023, Sec. 3.1) uses "8 kinds" of H&E colon
tissue, 20,000 non-overlapping patches, HR 224 / LR 56 (x4), split 8:1:1 = 16,000 / 2,000 / 2,000.
The release has 9 classes; BACK (near-empty background, which would inflate PSNR) is the one left
out, so the default draw is 2,500 seeded patches from each of the other 8 classes, split 8:1:1 within
each class.  The paper does not say how LR was made: it is the project's MATLAB bicubic ``imresize``
(antialiased, 8-bit rounded), as IRN's data code does.  Draw and split depend only on ``split_seed``,
never on the scale: every method and both scales see the same patches.
"""
from __future__ import annotations

from pathlib import Path

import torch

from datamodules.base import MissingDataError, RestorationDataModule, data_root, read_rgb, split_indices
from datamodules.sr_pairs import PairedSRDataset, bicubic_lr

RELEASES = ("NCT-CRC-HE-100K", "CRC-VAL-HE-7K")
CLASSES = ("ADI", "BACK", "DEB", "LYM", "MUC", "MUS", "NORM", "STR", "TUM")
TISSUE_CLASSES = tuple(c for c in CLASSES if c != "BACK")  # SNADN's "8 kinds"
PATCH_SIZE = (224, 224)
SOURCE = "Zenodo record 1214456 (NCT-CRC-HE-100K.zip, CRC-VAL-HE-7K.zip)"
_EXTS = (".tif", ".tiff", ".png", ".jpg")


def list_patches(release: str, root: Path | None = None, classes: tuple[str, ...] | None = None) -> list[Path]:
    base = (root or data_root()) / "kather" / release
    if not base.is_dir():
        raise MissingDataError(f"Kather {release}", base, SOURCE, make_target="kather")
    files = sorted(p for p in base.glob("*/*") if p.suffix.lower() in _EXTS
                   and (classes is None or p.parent.name in classes))
    if not files:
        raise MissingDataError(f"Kather {release} patches", base / "<CLASS>/*.tif", SOURCE, make_target="kather")
    return files


def draw(files: list[Path], n: int | None, seed: int) -> list[Path]:
    if n is None or n >= len(files):
        return files
    pick = torch.randperm(len(files), generator=torch.Generator().manual_seed(seed))[:n]
    return [files[i] for i in sorted(pick.tolist())]


def stratified_split(files: list[Path], n_per_class: int | None, fractions, seed: int) -> list[list[Path]]:
    """Per class (= parent folder): a seeded draw of ``n_per_class`` files, split by ``fractions``.
    Each part interleaves the classes (1st of each class, 2nd of each class, ...), so that its first
    N items (a test limit) cover every class."""
    per_class: list[list[list[Path]]] = []
    for k, cls in enumerate(sorted({p.parent.name for p in files})):
        members = draw([p for p in files if p.parent.name == cls], n_per_class, seed + k)
        per_class.append([[members[i] for i in idx] for idx in split_indices(len(members), fractions, seed + k)])
    parts = []
    for j in range(len(fractions)):
        cols = [c[j] for c in per_class]
        parts.append([c[r] for r in range(max(map(len, cols), default=0)) for c in cols if r < len(c)])
    return parts


class KatherPairs(PairedSRDataset):
    """Bicubic LR/HR pairs plus ``label`` (class index) and a same-class reference patch ``ref`` /
    ``ref_lr`` from ``ref_pool`` (the training split): a seeded draw per (split, index), never the
    image itself, for reference-based SR (TTSR, SNADN Sec. 3.3: "other HR images").
    With ``memory_cache`` the references' decoded HR is kept too (as 8-bit, exact)."""

    def __init__(self, hr_paths, scale: int, ref_pool: list[Path], split_id: int, seed: int = 0, **kwargs):
        super().__init__(hr_paths, scale, **kwargs)
        self.split_id, self.seed = split_id, seed
        self._ref_memory: dict[Path, torch.Tensor] | None = {} if self._memory is not None else None
        self._pool: dict[str, list[Path]] = {}
        for p in ref_pool:
            self._pool.setdefault(p.parent.name, []).append(p)

    def _ref_path(self, i: int) -> Path | None:
        me = Path(self.hr_paths[i])
        pool = [p for p in self._pool.get(me.parent.name, []) if p != me]
        if not pool:
            return None
        g = torch.Generator().manual_seed((self.seed * 7 + self.split_id) * 1_000_003 + i)
        return pool[int(torch.randint(len(pool), (), generator=g))]

    def _ref_hr(self, path: Path) -> torch.Tensor:
        if self._ref_memory is None:
            return read_rgb(path, self.expect_size)
        if path not in self._ref_memory:
            self._ref_memory[path] = read_rgb(path, self.expect_size).mul(255.0).round_().to(torch.uint8)
        return self._ref_memory[path].float().div_(255.0)

    def __getitem__(self, i: int) -> dict:
        out = super().__getitem__(i)
        out["label"] = CLASSES.index(Path(self.hr_paths[i]).parent.name) if Path(
            self.hr_paths[i]).parent.name in CLASSES else -1
        path = self._ref_path(i)
        ref = self._ref_hr(path) if path is not None else out["hr"].new_zeros(3, *PATCH_SIZE)
        h, w = out["hr"].shape[-2:]
        if ref.shape[-2:] != (h, w):  # training crops: a random crop of the reference of the same size
            y = int(torch.randint(0, ref.shape[-2] - h + 1, ()))
            x = int(torch.randint(0, ref.shape[-1] - w + 1, ()))
            ref = ref[:, y:y + h, x:x + w]
        out["ref"], out["ref_lr"] = ref.contiguous(), bicubic_lr(ref, self.scale)
        return out


class KatherSRDataModule(RestorationDataModule):
    """Bicubic x2 / x4 pairs of 224x224 Kather patches, 8 tissue classes, split 8:1:1 per class.

    ``n_patches``: total patches, drawn equally from each class (20,000 = 2,500 x 8); None = all.
    ``memory_cache``: keep every decoded patch in memory as 8-bit (exact); for small draws such as the
    smoke sample (a 20,000-patch draw would hold 3 GB per loader worker).
    """

    def __init__(self, release: str = "NCT-CRC-HE-100K", scale: int = 4, n_patches: int | None = 20_000,
                 patch: int = 0, batch_size: int = 4, split=(0.8, 0.1, 0.1), split_seed: int = 0,
                 test_limit: int | None = None, root: Path | None = None, num_workers: int = 0, seed: int = 0,
                 classes: tuple[str, ...] = TISSUE_CLASSES, memory_cache: bool = False):
        super().__init__(batch_size=batch_size, num_workers=num_workers, seed=seed)
        self.memory_cache = memory_cache
        self.release, self.scale, self.n_patches, self.patch = release, scale, n_patches, patch
        self.split, self.split_seed, self.test_limit, self.root = tuple(split), split_seed, test_limit, root
        self.classes = tuple(classes)

    def setup(self, stage: str | None = None) -> None:
        files = list_patches(self.release, self.root, self.classes)
        n_cls = len({p.parent.name for p in files})
        per_class = None if self.n_patches is None else self.n_patches // n_cls
        tr, va, te = stratified_split(files, per_class, self.split, self.split_seed)
        te = te[: self.test_limit] if self.test_limit else te
        make = lambda paths, sid, train: KatherPairs(paths, self.scale, tr, sid, self.split_seed,  # noqa: E731
                                                     patch=self.patch if train else 0, augment=train,
                                                     expect_size=PATCH_SIZE, memory_cache=self.memory_cache)
        self.train_set, self.val_set, self.test_set = make(tr, 0, True), make(va, 1, False), make(te, 2, False)
