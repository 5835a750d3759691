"""Sample images of a test run and the cross-method grids next to the leaderboard."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

CROP = 160  # centre crop (HR pixels) shown per sample: big enough to judge texture, small on disk


def _center(img: torch.Tensor, size: int = CROP) -> torch.Tensor:
    h, w = img.shape[-2:]
    y, x = max(0, (h - size) // 2), max(0, (w - size) // 2)
    return img[..., y:y + size, x:x + size]


def _to_png(img: torch.Tensor, path: Path) -> None:
    arr = (img.clamp(0, 1) * 255).round().to(torch.uint8)
    if arr.shape[0] == 1:
        arr = arr.expand(3, -1, -1)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr.permute(1, 2, 0).numpy()).save(path)


def _read_png(path: Path) -> torch.Tensor:
    return torch.from_numpy(np.asarray(Image.open(path).convert("RGB")).copy()).permute(2, 0, 1).float() / 255


def save_samples(samples: dict[int, tuple[torch.Tensor, ...]], out_dir: Path) -> torch.Tensor | None:
    """Write input/output/target crops per sample index; return the (input | output | target) grid."""
    rows = []
    for i in sorted(samples):
        shown, pred, target = (_center(t) for t in samples[i])
        for name, img in (("input", shown), ("output", pred), ("target", target)):
            _to_png(img, out_dir / f"{i:03d}_{name}.png")
        rows.append(torch.cat([shown.expand(3, -1, -1), pred.expand(3, -1, -1), target.expand(3, -1, -1)], -1))
    if not rows:
        return None
    width = max(r.shape[-1] for r in rows)
    return torch.cat([F.pad(r, (0, width - r.shape[-1])) for r in rows], -2)


def method_grid(run_dirs: dict[str, Path], out_path: Path, pad: int = 4) -> Path | None:
    """Rows = sample indices; columns = input | each method's output | target."""
    methods = {m: d / "samples" for m, d in run_dirs.items() if (d / "samples").is_dir()}
    if not methods:
        return None
    first = next(iter(methods.values()))
    idx = sorted({p.name.split("_")[0] for p in first.glob("*_output.png")})
    rows = []
    for i in idx:
        cols = [first / f"{i}_input.png"] + [d / f"{i}_output.png" for d in methods.values()] + [first / f"{i}_target.png"]
        imgs = [_read_png(p) for p in cols if p.is_file()]
        if len(imgs) != len(cols):
            continue
        h = max(t.shape[-2] for t in imgs)
        imgs = [F.pad(t, (0, pad, 0, h - t.shape[-2]), value=1.0) for t in imgs]
        rows.append(torch.cat(imgs, -1))
    if not rows:
        return None
    w = max(r.shape[-1] for r in rows)
    grid = torch.cat([F.pad(r, (0, w - r.shape[-1], 0, pad), value=1.0) for r in rows], -2)
    _to_png(grid, out_path)
    return out_path
