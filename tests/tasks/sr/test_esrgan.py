import pytest
import torch

from tasks.common.losses import d_loss, g_loss
from tasks.sr.esrgan import RRDB, PAPER, RRDBNet, ResidualDenseBlock, build_esrgan


def _count(m):
    return sum(p.numel() for p in m.parameters())


def test_paper_size_parameter_count():
    """23 RRDB, 64 features, growth 32, x4: 16.70 M (16,697,987, as the official RRDB_ESRGAN_x4)."""
    net = RRDBNet(nf=PAPER["nf"], nb=PAPER["nb"], gc=PAPER["gc"], scale=4)
    assert _count(net) == 16_697_987
    assert len(net.body) == 23 and len(net.ups) == 2


@pytest.mark.parametrize("scale", [1, 2, 4, 8])
def test_output_shape(scale):
    net = RRDBNet(nf=8, nb=1, gc=4, scale=scale)
    assert net(torch.rand(2, 3, 5, 6)).shape == (2, 3, 5 * scale, 6 * scale)


def test_rejects_non_power_of_two_scale():
    with pytest.raises(ValueError):
        RRDBNet(nf=8, nb=1, gc=4, scale=3)


def test_residual_scaling_is_0_2():
    """With the last conv of every RDB zeroed each RDB is the identity, so the RRDB gives x + 0.2 x."""
    rrdb = RRDB(8, 4)
    for rdb in rrdb.body:
        torch.nn.init.zeros_(rdb.convs[-1].weight)
        torch.nn.init.zeros_(rdb.convs[-1].bias)
    x = torch.rand(1, 8, 4, 4)
    assert torch.allclose(rrdb.body[0](x), x)
    assert torch.allclose(rrdb(x), 1.2 * x)
    assert isinstance(rrdb.body[0], ResidualDenseBlock)


def test_relativistic_losses_match_esrgan_eq_1_2():
    real, fake = torch.randn(6, 1), torch.randn(6, 1)
    d_ra = lambda a, b: torch.sigmoid(a - b.mean())  # noqa: E731
    ld = -(torch.log(d_ra(real, fake)).mean() + torch.log(1 - d_ra(fake, real)).mean()) / 2
    lg = -(torch.log(1 - d_ra(real, fake)).mean() + torch.log(d_ra(fake, real)).mean()) / 2
    assert torch.allclose(d_loss(real, fake, "ragan"), ld, atol=1e-6)
    assert torch.allclose(g_loss(real, fake, "ragan"), lg, atol=1e-6)


def test_smoke_pretrain_then_gan(real_batch, fit, smoke_ctx, param_moves):
    module, plan = build_esrgan(smoke_ctx())
    assert "no pretrained VGG19, perceptual term off" in plan.notes
    assert module.hparams.pretrain_steps == plan.max_steps - 10
    pre = module.hparams.pretrain_steps = 4            # the phases, shortened
    steps = pre + 6
    moves = param_moves(lambda m: (m.net.parameters(), m.discriminator.parameters()))
    trainer = fit(module, real_batch(4, plan.patch_size), steps, [moves])
    assert trainer.global_step == 2 * steps
    assert moves.rows == [(True, False)] * pre + [(True, True)] * (steps - pre)


def test_pretraining_lowers_the_l1_loss(real_batch, fit, smoke_ctx, pixel_error):
    module, plan = build_esrgan(smoke_ctx())
    module.hparams.pretrain_steps, module.hparams.lr = 15, 2e-3
    batch = real_batch(4, plan.patch_size)
    before = pixel_error(module, batch)
    fit(module, batch, 15)
    assert pixel_error(module, batch) < 0.7 * before
