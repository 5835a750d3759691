import math

import lightning as L
import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from benchmark.specs import EvalConvention
from tasks.inpaint.module import InpaintGANModule, InpaintModule, downsample_mask, plan_notes

CONV = EvalConvention(space="rgb", crop=0, niqe=False, region=True)


class _Conv(nn.Module):
    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(4, 3, 3, 1, 1)

    def forward(self, x, m):
        return torch.tanh(self.c(torch.cat([x, m], 1)))


class _Const(nn.Module):
    """Predicts a fixed image (in [-1, 1]) whatever the input: for metric hand computations."""

    def __init__(self, img):
        super().__init__()
        self.register_buffer("img", img)

    def forward(self, x, m):
        return self.img.expand(x.shape[0], -1, -1, -1)


def _batch(b=2, size=32, hole=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(b, 3, size, size, generator=g) * 255).round() / 255
    m = torch.zeros(b, 1, size, size)
    m[0, :, 4:4 + hole, 8:8 + hole] = 1
    m[1:, :, 12:12 + hole, 0:hole] = 1
    xm = ((x * (1 - m) + 0.1 * x * m) * 255).round() / 255
    return {"image": x, "corrupted": xm, "mask": m, "index": torch.arange(b), "name": [str(i) for i in range(b)]}


def _ssim_crop_skimage(p, t):
    from skimage.metrics import structural_similarity
    return structural_similarity(p, t, channel_axis=-1, gaussian_weights=True, sigma=1.5,
                                 use_sample_covariance=False, data_range=255)


def test_region_metrics_against_a_hand_computation():
    batch = _batch()
    pred_img = (torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(5)) * 255).round() / 255
    module = InpaintModule(_Const(pred_img * 2 - 1), composite=False)
    module.configure_evaluation(CONV)
    module.test_step(batch, 0)
    res = {k: float(m.compute()) for k, m in module.test_metrics.items()}
    p, t, m = (pred_img * 255).double(), (batch["image"] * 255).double(), batch["mask"].bool()
    psnr_hole, psnr_all, ssim_box, mses = [], [], [], []
    for j in range(2):
        diff = (p - t[j]) ** 2
        hole = diff[m[j].expand(3, -1, -1)]
        psnr_hole.append(10 * math.log10(255 ** 2 / hole.mean().item()))
        psnr_all.append(10 * math.log10(255 ** 2 / diff.mean().item()))
        mses.append(diff.mean().item())
        ys, xs = torch.nonzero(m[j, 0], as_tuple=True)
        crop = (slice(None), slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
        ssim_box.append(_ssim_crop_skimage(p[crop].permute(1, 2, 0).numpy(), t[j][crop].permute(1, 2, 0).numpy()))
    assert res["psnr_region"] == pytest.approx(np.mean(psnr_hole), abs=1e-6)
    assert res["psnr"] == pytest.approx(np.mean(psnr_all), abs=1e-6)
    assert res["rmse"] == pytest.approx(math.sqrt(np.mean(mses)), abs=1e-6)
    assert res["ssim_region"] == pytest.approx(np.mean(ssim_box), abs=1e-6)
    assert {"psnr_y", "ssim_y", "psnr_region_y", "ssim_region_map"} <= set(res)


def test_composite_flag_pastes_known_pixels_back():
    batch = _batch()
    net = _Const(torch.zeros(3, 32, 32))
    raw = InpaintModule(net, composite=False).restore(batch)[0]
    comp, target, mask, shown = InpaintModule(net, composite=True).restore(batch)
    assert torch.allclose(raw, torch.full_like(raw, 0.5))
    assert torch.equal(comp * (1 - mask), batch["corrupted"] * (1 - mask))
    assert torch.allclose(comp[mask.expand_as(comp) > 0], torch.tensor(0.5))
    assert torch.equal(shown, batch["corrupted"]) and torch.equal(target, batch["image"])
    assert "composited" in plan_notes(InpaintModule(net, composite=True))
    assert "raw (not composited)" in plan_notes(InpaintModule(net, composite=False))


def test_hole_fill_overwrites_the_hole_before_the_generator():
    batch = _batch()
    x_m, mask = InpaintModule(_Conv(), hole_fill=(0.2, 0.4, 0.6)).net_input(batch)
    assert torch.allclose(x_m[0, :, 5, 9], torch.tensor([-0.6, -0.2, 0.2]))
    assert torch.equal(x_m * (1 - mask), (batch["corrupted"] * 2 - 1) * (1 - mask))
    assert "hole refilled" in plan_notes(InpaintModule(_Conv(), hole_fill=(0.2, 0.4, 0.6)))


def test_downsample_mask_is_exact_for_aligned_boxes():
    m = torch.zeros(1, 1, 128, 128)
    m[..., 36:100, 8:72] = 1
    assert torch.equal(downsample_mask(m, 32)[0, 0].nonzero().amin(0), torch.tensor([9, 2]))
    assert downsample_mask(m, 32).sum() == 16 * 16


class _Loader(L.LightningDataModule):
    def __init__(self, batch):
        super().__init__()
        self.batch = batch

    def train_dataloader(self):
        return DataLoader([self.batch] * 64, batch_size=None)


def _fit(module, iterations):
    trainer = L.Trainer(max_steps=iterations * module.optimizer_steps_per_batch, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=0, use_distributed_sampler=False)
    trainer.fit(module, datamodule=_Loader(_batch()))
    return trainer


def test_inpaint_module_training_reduces_l1():
    torch.manual_seed(0)
    module = InpaintModule(_Conv(), lr=1e-2)
    batch = _batch()
    before = float(module.generator_losses(batch, module.generate(*module.net_input(batch)))["l1"])
    _fit(module, 20)
    after = float(module.generator_losses(batch, module.generate(*module.net_input(batch)))["l1"])
    assert after < 0.8 * before


def test_gan_module_phases_and_manual_steps():
    torch.manual_seed(0)
    disc = nn.Sequential(nn.Conv2d(3, 4, 4, 2, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 1))
    module = InpaintGANModule(_Conv(), disc, pretrain_steps=2, d_only_steps=2, lr=1e-2)
    seen, step = [], InpaintGANModule.training_step

    def spy(self, batch, idx):
        g0 = [p.detach().clone() for p in self.net.parameters()]
        d0 = [p.detach().clone() for p in self.discriminator.parameters()]
        phase = self.phase()
        out = step(self, batch, idx)
        moved = lambda ps, qs: any(not torch.equal(a, b.detach()) for a, b in zip(ps, qs))  # noqa: E731
        seen.append((phase, moved(g0, self.net.parameters()), moved(d0, self.discriminator.parameters())))
        return out

    module.training_step = spy.__get__(module)
    trainer = _fit(module, 6)
    assert trainer.global_step == 12  # 2 optimizer steps per iteration
    assert seen == [("pretrain", True, False)] * 2 + [("discriminator", False, True)] * 2 + \
        [("adversarial", True, True)] * 2
