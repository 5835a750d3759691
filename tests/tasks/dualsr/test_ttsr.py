from pathlib import Path

import pytest
import torch
from torchvision.models.vgg import cfgs, make_layers

from benchmark.specs import BuildContext
from benchmark.weights import MissingWeightsError
from datamodules.kather import KatherSRDataModule
from tasks.dualsr import ttsr
from tasks.dualsr.ttsr import TTSR, search_transfer


def _ctx(scale, profile="smoke", weights=Path("/nonexistent-weights")):
    return BuildContext("dualsr", f"kather_x{scale}", profile, scale, 3, weights)


def _count(m):
    return sum(p.numel() for p in m.parameters() if p.requires_grad)


def test_parameter_counts_match_the_official_code():
    # official TTSR (MainNet.py, 16+16+8+4, 64 features) + LTE = VGG19 up to relu3_1: SNADN's 6.7 M
    x4 = TTSR(4, allow_random=True)
    assert (_count(x4.main), _count(x4.lte), _count(x4)) == (6_174_275, 555_328, 6_729_603)
    # x2 variant: the x4 level dropped (LTE to relu2_1, stages 16+16+8, CSFI2, two-level tail): SNADN's 4.4 M
    x2 = TTSR(2, allow_random=True)
    assert (_count(x2.main), _count(x2.lte), _count(x2)) == (4_311_939, 112_576, 4_424_515)


@pytest.mark.parametrize("scale", [2, 4])
def test_shapes(scale):
    net = TTSR(scale, nf=8, n_blocks=(1, 1, 1, 1), allow_random=True)
    lr, ref = torch.rand(2, 3, 6, 8), torch.rand(2, 3, 6 * scale, 8 * scale)
    out = net(lr, ref, torch.rand(2, 3, 6, 8))
    assert out.shape == (2, 3, 6 * scale, 8 * scale) and 0 <= out.min() and out.max() <= 1


def test_search_and_transfer_match_a_slow_loop():
    torch.manual_seed(0)
    q, k = torch.randn(1, 4, 3, 4, dtype=torch.float64), torch.randn(1, 4, 4, 3, dtype=torch.float64)
    lv1 = torch.randn(1, 2, 8, 6, dtype=torch.float64)        # a reference level at 2x the coarse one
    s, (t0, t1) = search_transfer(q, k, [k, lv1], chunk=5)
    qp, kp = torch.nn.functional.pad(q, (1, 1, 1, 1))[0], torch.nn.functional.pad(k, (1, 1, 1, 1))[0]
    lv1p = torch.nn.functional.pad(lv1, (2, 2, 2, 2))[0]
    keys = [(u, v) for u in range(4) for v in range(3)]
    out0, out1 = torch.zeros(4, 5, 6, dtype=torch.float64), torch.zeros(2, 10, 12, dtype=torch.float64)
    for i in range(3):
        for j in range(4):
            qv = qp[:, i:i + 3, j:j + 3].flatten()
            rel = [torch.dot(qv / qv.norm(), kp[:, u:u + 3, v:v + 3].flatten() / kp[:, u:u + 3, v:v + 3].norm())
                   for u, v in keys]
            best = int(torch.stack(rel).argmax())
            assert s[0, 0, i, j].item() == pytest.approx(rel[best].item())
            u, v = keys[best]
            out0[:, i:i + 3, j:j + 3] += kp[:, u:u + 3, v:v + 3]                    # paste 3x3 at stride 1
            out1[:, 2 * i:2 * i + 6, 2 * j:2 * j + 6] += lv1p[:, 2 * u:2 * u + 6, 2 * v:2 * v + 6]  # 6x6 at 2
    torch.testing.assert_close(t0[0], out0[:, 1:-1, 1:-1] / 9)
    torch.testing.assert_close(t1[0], out1[:, 2:-2, 2:-2] / 9)


def test_lte_loads_the_vgg19_file_and_is_trainable(tmp_path):
    torch.manual_seed(3)
    state = {f"features.{k}": v for k, v in make_layers(cfgs["E"]).state_dict().items()}
    torch.save(state, tmp_path / "vgg19-dcbb9e9d.pth")
    module, plan = ttsr.build_ttsr(_ctx(4, "paper", tmp_path))
    lte = module.net.lte
    assert not lte.random_init and plan.notes == ""
    torch.testing.assert_close(lte.features[10].weight, state["features.10.weight"])      # conv3_1
    assert len(lte.features) == 12 and all(p.requires_grad for p in lte.parameters())
    groups = module.configure_optimizers()["optimizer"].param_groups
    assert [g["lr"] for g in groups] == [1e-4, 1e-5] and len(groups[1]["params"]) == 10
    assert (plan.batch_size, plan.patch_size, plan.max_steps) == (9, 160, 177_777)
    with pytest.raises(MissingWeightsError, match="vgg19"):
        ttsr.build_ttsr(_ctx(4, "paper"))
    module, plan = ttsr.build_ttsr(_ctx(2))
    assert plan.notes.startswith("LTE: VGG19 layer pattern at 1/16 width") and module.net.lte.channels == (4, 8)


@pytest.fixture(scope="module")
def datamodule():
    dm = KatherSRDataModule(release="CRC-VAL-HE-7K", scale=2, n_patches=None, patch=32, batch_size=2,
                            split=(0.5, 0.25, 0.25))
    dm.setup("fit")
    return dm


def test_reference_is_another_training_patch_of_the_same_class(datamodule, shared_data):
    train_paths = {Path(p) for p in datamodule.train_set.hr_paths}
    for ds in (datamodule.train_set, datamodule.test_set):
        for i in range(len(ds)):
            me, ref = Path(ds.hr_paths[i]), ds._ref_path(i)
            assert ref != me and ref in train_paths and ref.parent.name == me.parent.name
            item = ds[i]
            assert not torch.equal(item["ref"], item["hr"])
            if ds is datamodule.test_set:                                 # whole patches at test
                assert item["ref"].shape == item["hr"].shape == (3, 224, 224)
                assert item["ref_lr"].shape == item["lr"].shape
    assert ds._ref_path(0) == ds._ref_path(0)                            # seeded


def test_training_steps_reduce_the_l1_loss_on_real_patches(datamodule):
    batch = next(iter(datamodule.train_dataloader()))
    torch.manual_seed(0)
    module, _ = ttsr.build_ttsr(_ctx(2))
    opt = module.configure_optimizers()["optimizer"]
    lte0 = [p.detach().clone() for p in module.net.lte.parameters()]
    losses = []
    for _ in range(8):
        loss = module.training_step(batch, 0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]
    assert any(not torch.equal(a, b) for a, b in zip(lte0, module.net.lte.parameters()))   # the LTE learns
    packed = module.example_input(batch)
    with torch.no_grad():
        torch.testing.assert_close(module.inference_net()(packed), module(batch["lr"][:1], batch["ref"][:1],
                                                                            batch["ref_lr"][:1]))
