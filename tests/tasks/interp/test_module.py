"""InterpModule and SSAN's loss: terms against hand computations, per-sample sign, training moves the
loss, SyncBatchNorm only on CUDA, the cost wrapper and the evaluation metrics."""
import lightning as L
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from benchmark.metrics.ie import IE
from benchmark.specs import BuildContext, EvalConvention
from tasks.interp.module import (InterpModule, SSANLoss, paper_schedule, ssan_loss, style_distance,
                                 sync_batchnorm_if_cuda)


def _batch(b=2, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    prev, target, nxt = (torch.rand(b, 1, size, size, generator=g) for _ in range(3))
    return {"prev": prev, "target": target, "next": nxt, "index": torch.arange(b), "name": ["a"] * b}


class _Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, 3, padding=1)

    def forward(self, prev, nxt):
        return self.conv(torch.cat([prev, nxt], 1))


def test_pixel_term_is_charbonnier_mean():
    loss = SSANLoss({"pix": 1.0})
    a, b = torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 8)
    assert loss.vgg is None  # no VGG term, no VGG built
    want = torch.sqrt((a - b) ** 2 + 1e-12).mean()
    assert torch.allclose(loss(a, a, b, a)["pix"], want)


def test_style_balance_matches_eq15_per_sample(tmp_path):
    loss = SSANLoss({"bs": 1.0}, weights_dir=tmp_path, allow_random=True)
    assert loss.random_vgg
    bt = _batch(b=3, size=16)
    pred = torch.rand(3, 1, 16, 16)
    got = loss(pred, bt["prev"], bt["target"], bt["next"])["bs"]
    with torch.no_grad():
        f = {k: loss.vgg(v) for k, v in (("p", pred), ("0", bt["prev"]), ("1", bt["target"]), ("2", bt["next"]))}
    want = torch.zeros(3)
    for k, beta in zip("012", (0.1, 1.0, 0.1)):
        s_pred, s_gt = style_distance(f["p"], f[k]), style_distance(f["1"], f[k])
        want += beta * torch.sign(s_pred - s_gt) * s_pred
    assert torch.allclose(got, want.mean(), rtol=1e-5)
    # the GT term (beta 1) is the plain style loss; sample signs do not depend on the batch
    one = loss(pred[:1], bt["prev"][:1], bt["target"][:1], bt["next"][:1])["bs"]
    assert torch.allclose(one, want[0], rtol=1e-5)


def test_paper_loss_needs_pretrained_vgg(tmp_path):
    ctx = BuildContext("interp", "cremi_triplet_c", "paper", None, 1, tmp_path / "none")
    with pytest.raises(FileNotFoundError, match="vgg16"):
        ssan_loss(ctx)
    smoke_ctx = BuildContext("interp", "cremi_triplet_c", "smoke", None, 1, tmp_path / "none")
    smoke = ssan_loss(smoke_ctx)  # no VGG16 file: the VGG terms are dropped, not computed on a random VGG
    assert smoke.dropped_vgg and smoke.vgg is None and set(smoke.weights) == {"pix"}


def test_smoke_keeps_the_paper_loss_where_vgg16_is_present(tmp_path, monkeypatch):
    from tasks.interp import module as interp_module
    monkeypatch.setattr(interp_module, "vgg16_available", lambda ctx: True)
    ctx = BuildContext("interp", "cremi_triplet_c", "smoke", None, 1, tmp_path / "none")
    loss = interp_module.ssan_loss(ctx)   # (the file is absent here, so VGGFeatures falls back to random)
    assert not loss.dropped_vgg and set(loss.weights) == {"bs", "f", "pix"}


def test_training_lowers_the_loss():
    torch.manual_seed(0)
    module = InterpModule(_Tiny(), SSANLoss({"pix": 1.0}), lr=1e-2)
    opt = module.configure_optimizers()["optimizer"]
    bt = _batch()
    bt["target"] = 0.5 * (bt["prev"] + bt["next"])
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = sum(module.loss(module(bt["prev"], bt["next"]), bt["prev"], bt["target"], bt["next"]).values())
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]


def test_scheduler_steps_per_epoch_and_paper_schedule():
    sched = InterpModule(_Tiny(), None).configure_optimizers()["lr_scheduler"]
    assert sched["interval"] == "epoch" and sched["scheduler"].milestones == {30: 1}
    steps, milestones = paper_schedule("cremi_triplet_c", n_train=799)
    assert steps == 50 * (799 // 3) and milestones == (30,)


def test_sync_batchnorm_only_on_cuda():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    kept, note = sync_batchnorm_if_cuda(net, torch.device("cpu"), 2)
    assert kept is net and "CPU" in note and not any(isinstance(m, nn.SyncBatchNorm) for m in kept.modules())
    conv, note = sync_batchnorm_if_cuda(net, torch.device("cuda"), 2)
    assert any(isinstance(m, nn.SyncBatchNorm) for m in conv.modules()) and "SyncBatchNorm" in note
    assert sync_batchnorm_if_cuda(nn.Conv2d(1, 1, 1), torch.device("cuda"), 2)[1] == "no BatchNorm"


def test_cost_wrapper_and_restore():
    module = InterpModule(_Tiny(), None)
    bt = _batch()
    x = module.example_input(bt)
    assert x.shape == (1, 2, 32, 32)
    assert torch.equal(module.inference_net()(x), module(bt["prev"][:1], bt["next"][:1]))
    pred, target, mask, shown = module.restore(bt)
    assert mask is None and shown is bt["prev"] and target is bt["target"]


def test_ie_is_mean_absolute_error_of_8bit_images():
    p = torch.tensor([[[[0.0, 1.0], [128 / 255, 1.2]]]])   # 1.2 is clamped to 255
    t = torch.tensor([[[[10 / 255, 1.0], [100 / 255, 200 / 255]]]])
    m = IE()
    m.update(p, t, torch.tensor([0]))
    assert float(m.compute()) == pytest.approx((10 + 0 + 28 + 55) / 4)


def test_test_loop_records_ie_without_oracle():
    module = InterpModule(_Tiny(), None)
    module.configure_evaluation(EvalConvention(space="gray", crop=0, niqe=False))
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    loader = [_batch(seed=i) | {"index": torch.tensor([2 * i, 2 * i + 1])} for i in range(2)]
    trainer.test(module, dataloaders=DataLoader(loader, batch_size=None), verbose=False)
    res = module.test_results
    assert res["n_images"] == 4 and 0 < res["ie"] < 255 and "dice" not in res
