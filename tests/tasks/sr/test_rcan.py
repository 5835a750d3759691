import pytest
import torch
import torch.nn.functional as F

from tasks.sr.rcan import DIV2K_MEAN, RCAB, RCAN, build_rcan


def _count(m):
    return sum(p.numel() for p in m.parameters())


def test_paper_size_parameter_count():
    """10 groups x 20 RCAB, 64 features, r=16, x4: the official code's 15,592,379 less the 24 frozen
    MeanShift weights (buffers here)."""
    net = RCAN(nf=64, n_groups=10, n_blocks=20, reduction=16, scale=4)
    assert _count(net) == 15_592_379 - 24
    assert len(net.body) == 11 and len(net.body[0].body) == 21


def test_rcab_is_skip_plus_channel_gated_features():
    block = RCAB(64, 16)
    squeeze, excite = block.attention.gate[1], block.attention.gate[3]
    assert (squeeze.in_channels, squeeze.out_channels, excite.out_channels) == (64, 4, 64)
    x = torch.rand(2, 64, 5, 5)
    f = block.body(x)
    gate = torch.sigmoid(excite(torch.relu(squeeze(f.mean((2, 3), keepdim=True)))))
    assert torch.allclose(block(x), x + f * gate, atol=1e-6)
    excite.bias.data.fill_(-1e4)  # a closed gate: the block reduces to its identity skip
    assert torch.allclose(block(x), x)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_output_shape(scale):
    net = RCAN(nf=8, n_groups=1, n_blocks=1, reduction=4, scale=scale)
    assert net(torch.rand(2, 3, 7, 9)).shape == (2, 3, 7 * scale, 9 * scale)


def test_mean_shift_adds_the_div2k_mean_back():
    net = RCAN(nf=8, n_groups=1, n_blocks=1, reduction=4, scale=2)
    torch.nn.init.zeros_(net.tail[-1].weight)
    torch.nn.init.zeros_(net.tail[-1].bias)
    out = net(torch.rand(1, 3, 4, 4))
    assert torch.allclose(out, torch.tensor(DIV2K_MEAN).view(1, 3, 1, 1).expand_as(out))


def test_paper_plan(smoke_ctx):
    _, plan = build_rcan(smoke_ctx("paper"))              # Table 1: MASRGAN's one protocol
    assert (plan.max_steps, plan.batch_size, plan.patch_size) == (20_000, 16, 128)
    _, plan = build_rcan(smoke_ctx("paper"), recipe="own")  # "RCAN (own recipe)": its paper's
    assert (plan.max_steps, plan.batch_size, plan.patch_size) == (1_000_000, 16, 192)


def test_smoke_training_lowers_the_l1_loss(real_batch, fit, smoke_ctx):
    module, plan = build_rcan(smoke_ctx())
    assert plan.max_steps > 0 and plan.patch_size % 4 == 0
    batch = real_batch(4, plan.patch_size)
    module.hparams.lr = 2e-3  # a few steps must show the descent; the schedule is the paper's

    def l1():
        with torch.no_grad():
            return F.l1_loss(module(batch["lr"]), batch["hr"]).item()

    before = l1()
    trainer = fit(module, batch, 25)
    assert trainer.global_step == 25
    assert l1() < 0.8 * before
