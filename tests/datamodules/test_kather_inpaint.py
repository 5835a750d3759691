import pytest
import torch

from datamodules.base import CorruptImageError
from datamodules.kather_inpaint import (ALIGN, InpaintDataset, KatherInpaintDataModule, check_counts, corrupt,
                                        eval_box)


@pytest.fixture(scope="module")
def smoke_dm():
    dm = KatherInpaintDataModule(split="smoke", train_crop=64, batch_size=4)
    dm.setup()
    return dm


def test_smoke_split_is_disjoint_and_labelled(smoke_dm):
    test_names = [smoke_dm.test_set[i]["name"] for i in range(len(smoke_dm.test_set))]
    assert len(test_names) == 8 and all(n.startswith(("NORM", "TUM")) for n in test_names)
    train = {p.stem for p in smoke_dm.train_set.files + smoke_dm.val_set.files}
    assert len(train) == 24 and not train & set(test_names)
    assert "split: smoke" in smoke_dm.describe() and "corruption: scale" in smoke_dm.describe()


def test_test_items_paper_geometry_and_box_bounds(smoke_dm):
    for i in range(len(smoke_dm.test_set)):
        item = smoke_dm.test_set[i]
        assert item["image"].shape == (3, 128, 128) and item["mask"].shape == (1, 128, 128)
        top, left, size = item["box"].tolist()
        assert size == 64 and top % ALIGN == 0 and left % ALIGN == 0
        assert 0 <= top <= 64 and 0 <= left <= 64
        assert item["mask"].sum() == 64 * 64
        assert item["mask"][0, top:top + 64, left:left + 64].all()


def test_test_box_is_the_same_for_every_method_loader_and_rank(smoke_dm):
    """Boxes depend on (seed, index) only: another instance, another order or a DDP rank split agrees."""
    other = KatherInpaintDataModule(split="smoke", batch_size=1)
    other.setup()
    boxes = [smoke_dm.test_set[i]["box"].tolist() for i in range(8)]
    assert [other.test_set[i]["box"].tolist() for i in reversed(range(8))] == boxes[::-1]
    assert boxes == [[*eval_box(0, i, 128, 64), 64] for i in range(8)]
    assert len({tuple(b) for b in boxes}) > 1  # random positions, not all centred
    seed1 = KatherInpaintDataModule(split="smoke", seed=1)
    seed1.setup()
    assert [seed1.test_set[i]["box"].tolist() for i in range(8)] != boxes


def test_center_option():
    dm = KatherInpaintDataModule(split="smoke", mask_position="center")
    dm.setup()
    assert dm.test_set[3]["box"].tolist() == [32, 32, 64]


def test_training_draws_new_boxes_on_crops(smoke_dm):
    torch.manual_seed(0)
    items = [smoke_dm.train_set[0] for _ in range(6)]
    assert all(it["image"].shape == (3, 64, 64) and it["box"][2] == 32 for it in items)
    assert len({tuple(it["box"].tolist()) for it in items}) > 1


def test_corruptions(smoke_dm):
    item = smoke_dm.test_set[0]
    x, m = item["image"], item["mask"]
    xs = corrupt(x, m, "scale")
    assert torch.equal(xs * (1 - m), x * (1 - m))
    assert (xs - 0.1 * x).mul(m).abs().max() <= 0.5 / 255 + 1e-6          # eq. 16, 8-bit rounded
    assert torch.allclose(xs * 255, (xs * 255).round(), atol=1e-4)
    xf = corrupt(x, m, "fill")
    assert torch.equal(xf * (1 - m), x * (1 - m))
    assert torch.allclose(xf[m.expand_as(xf) > 0], (torch.tensor(0.1) * 255).round() / 255)
    assert torch.equal(item["corrupted"], xs)
    with pytest.raises(ValueError, match="corruption"):
        corrupt(x, m, "zero")


def test_fill_protocol_dataset():
    dm = KatherInpaintDataModule(split="smoke", corruption="fill")
    dm.setup()
    it = dm.test_set[0]
    assert torch.equal(it["corrupted"], corrupt(it["image"], it["mask"], "fill"))


def test_paper_counts_are_checked(tmp_path):
    with pytest.raises(CorruptImageError, match="expected 1974"):
        check_counts([tmp_path / "a.tif"] * 8, "CRC-VAL-HE-7K")
    with pytest.raises(FileNotFoundError, match="NCT-CRC-HE-100K"):  # the shared sample has no training release
        KatherInpaintDataModule(split="paper").setup()


def test_bad_options():
    with pytest.raises(ValueError, match="mask position"):
        InpaintDataset([], position="corner")
    with pytest.raises(ValueError, match="split"):
        KatherInpaintDataModule(split="random")
