"""Training-free rows on the real CREMI C sample: the average of the neighbours scores ~19.7 dB on the
raw full-frame triplets (spec §0.4), above every CREMI C PSNR the SSAN paper reports."""
import pytest
import tifffile
import torch

from benchmark.metrics.ie import IE
from benchmark.metrics.psnr_ssim import PSNR
from benchmark.reported import load_reported
from tasks.interp.training_free import Average, CopyPrevious


@pytest.fixture(scope="module")
def triplets(shared_data):
    vol = torch.from_numpy(tifffile.imread(shared_data / "cremi" / "cremi_image.tif")).float() / 255
    zs = [z for z in range(1, 24) if z not in (13, 14, 15)]  # the triplets without the blank slice 14
    pick = lambda d: torch.stack([vol[z + d] for z in zs]).unsqueeze(1)  # noqa: E731
    return pick(-1), pick(0), pick(1)


def _scores(net, triplets):
    prev, target, nxt = triplets
    pred = net(prev, nxt)
    psnr, ie = PSNR("gray"), IE()
    idx = torch.arange(len(target))
    psnr.update(pred, target, idx)
    ie.update(pred, target, idx)
    return float(psnr.compute()), float(ie.compute())


def test_average_beats_every_reported_cremi_c_psnr(triplets):
    psnr, ie = _scores(Average(), triplets)
    # 19.756 dB with the 8-bit rounded output (the spec quotes 19.74 for the unrounded average)
    assert psnr == pytest.approx(19.756, abs=0.002) and ie == pytest.approx(20.7, abs=0.1)
    reported = [e["value"] for e in load_reported()["entries"]
                if e.get("paper") == "ssan" and e.get("dataset") == "cremi_triplet_c" and e["metric"] == "psnr"]
    assert reported and psnr > max(reported)


def test_copy_previous(triplets):
    psnr, _ = _scores(CopyPrevious(), triplets)
    assert psnr == pytest.approx(18.18, abs=0.01)
    prev = triplets[0]
    out = CopyPrevious()(prev, triplets[2])
    assert torch.equal(out, prev) and out.data_ptr() != prev.data_ptr()
