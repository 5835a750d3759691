"""Sample images of a test run and the cross-method grids next to the leaderboard."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

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


def save_samples(samples: dict[int, tuple[torch.Tensor, ...]], out_dir: Path,
                 names: dict[int, str] | None = None) -> torch.Tensor | None:
    """Write input/output/target crops per sample index (and the images' names); return the
    (input | output | target) grid."""
    if names:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "names.json").write_text(json.dumps({f"{i:03d}": n for i, n in sorted(names.items())}) + "\n")
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


def _text(draw: ImageDraw.ImageDraw, xy, text: str, width: int) -> None:
    while text and draw.textlength(text) > width - 4:  # clip to the column
        text = text[:-1]
    draw.text((xy[0] + 2, xy[1] + 2), text, fill=(0, 0, 0))


def method_grid(run_dirs: dict[str, Path], out_path: Path, pad: int = 4,
                labels: dict[str, str] | None = None) -> Path | None:
    """Rows = test images (named above each row); columns = input | each method's output | ground
    truth, titled in a header row."""
    methods = {m: d / "samples" for m, d in run_dirs.items() if (d / "samples").is_dir()}
    if not methods:
        return None
    labels = labels or {}
    first = next(iter(methods.values()))
    names = {}
    for d in methods.values():
        if (d / "names.json").is_file():
            names = json.loads((d / "names.json").read_text())
            break
    idx = sorted({p.name.split("_")[0] for p in first.glob("*_output.png")})
    titles = ["input"] + [labels.get(m, m) for m in methods] + ["ground truth"]
    rows = []
    for i in idx:
        cols = [first / f"{i}_input.png"] + [d / f"{i}_output.png" for d in methods.values()] + [first / f"{i}_target.png"]
        if not all(p.is_file() for p in cols):
            continue
        rows.append((names.get(i, f"test image {int(i)}"), [Image.open(p).convert("RGB") for p in cols]))
    if not rows:
        return None
    cw = max(im.width for _, ims in rows for im in ims) + pad
    head, cap = 16, 14
    heights = [max(im.height for im in ims) for _, ims in rows]
    canvas = Image.new("RGB", (cw * len(titles), head + sum(h + cap + pad for h in heights)), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for c, t in enumerate(titles):
        _text(draw, (c * cw, 0), t, cw)
    y = head
    for (name, ims), h in zip(rows, heights):
        _text(draw, (0, y - 2), name, cw * len(titles))
        for c, im in enumerate(ims):
            canvas.paste(im, (c * cw, y + cap))
        y += h + cap + pad
    out_path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out_path)
    return out_path
