"""Paired SR datasets: aligned crops, and the memory-mapped decoded cache gives the same items."""
import torch

from datamodules.sr_pairs import PairedSRDataset, bicubic_lr


def _real_pairs(tmp_path, shared_data, n=3):
    """Real Kather patches as (LR PNG, HR PNG) pairs in tmp, like a built PathImgSR."""
    from PIL import Image
    hr_paths, lr_paths = [], []
    for i, p in enumerate(sorted((shared_data / "kather/CRC-VAL-HE-7K").glob("*/*.png"))[:n]):
        hr = Image.open(p).convert("RGB")
        hr_paths.append(tmp_path / f"hr{i}.png")
        lr_paths.append(tmp_path / f"lr{i}.png")
        hr.save(hr_paths[-1])
        t = torch.from_numpy(__import__("numpy").asarray(hr).copy()).permute(2, 0, 1).float() / 255
        lr = (bicubic_lr(t, 4) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        Image.fromarray(lr).save(lr_paths[-1])
    return hr_paths, lr_paths


def test_decoded_cache_gives_identical_aligned_crops(tmp_path, shared_data):
    hr_paths, lr_paths = _real_pairs(tmp_path, shared_data)
    plain = PairedSRDataset(hr_paths, 4, lr_paths=lr_paths, patch=64, augment=True)
    cached = PairedSRDataset(hr_paths, 4, lr_paths=lr_paths, patch=64, augment=True,
                             decoded_cache=tmp_path / "cache")
    for i in range(len(plain)):
        torch.manual_seed(i)
        a = plain[i]
        torch.manual_seed(i)
        b = cached[i]
        assert torch.equal(a["lr"], b["lr"]) and torch.equal(a["hr"], b["hr"])
        assert a["hr"].shape == (3, 64, 64) and a["lr"].shape == (3, 16, 16) and b["hr"].dtype == torch.float32
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 2 * len(plain)
    # the crop is aligned: the HR crop's bicubic LR is close to the LR crop (away from crop borders)
    torch.manual_seed(0)
    item = cached[0]
    assert (bicubic_lr(item["hr"], 4)[:, 2:-2, 2:-2] - item["lr"][:, 2:-2, 2:-2]).abs().mean() < 0.02


def test_memory_cache_of_bicubic_pairs_gives_identical_items(shared_data):
    hr_paths = sorted((shared_data / "kather/CRC-VAL-HE-7K").glob("*/*.png"))[:3]
    for patch, augment in ((64, True), (0, False)):
        plain = PairedSRDataset(hr_paths, 4, patch=patch, augment=augment)
        cached = PairedSRDataset(hr_paths, 4, patch=patch, augment=augment, memory_cache=True)
        for rep in range(2):  # the second pass reads the memory copy
            for i in range(len(plain)):
                torch.manual_seed(10 * rep + i)
                a = plain[i]
                torch.manual_seed(10 * rep + i)
                b = cached[i]
                assert torch.equal(a["lr"], b["lr"]) and torch.equal(a["hr"], b["hr"])
                assert b["hr"].dtype == torch.float32
    assert len(cached._memory) == len(plain)
