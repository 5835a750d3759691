"""Random (prev, target, next) crops of the real CREMI C sample (25 slices; z = 14 is blank, so GT z
1..12 only) for the method tests, read with tifffile (the cremi_triplet DataModule is tested on its own)."""
from pathlib import Path

import numpy as np
import tifffile
import torch


def real_triplets(shared_data: Path, n: int, size: int, seed: int = 0) -> dict:
    vol = tifffile.imread(shared_data / "cremi" / "cremi_image.tif")
    g = np.random.default_rng(seed)
    out = {"prev": [], "target": [], "next": []}
    for _ in range(n):
        z = int(g.integers(1, 13))
        y, x = (int(v) for v in g.integers(0, vol.shape[1] - size, 2))
        for key, dz in (("prev", -1), ("target", 0), ("next", 1)):
            out[key].append(torch.from_numpy(vol[z + dz, y:y + size, x:x + size].astype(np.float32) / 255))
    return {k: torch.stack(v)[:, None] for k, v in out.items()}
