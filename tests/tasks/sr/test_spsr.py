import torch
import torch.nn.functional as F

from tasks.sr.esrgan import RRDBNet
from tasks.sr.spsr import SPSRNet, build_spsr, gradient_map


def _count(m):
    return sum(p.numel() for p in m.parameters())


def _conv(i, o, k=3):
    return i * o * k * k + o


def _rrdb(nf, gc=32):
    return 3 * (sum(_conv(nf + i * gc, gc) for i in range(4)) + _conv(nf + 4 * gc, nf))


def test_paper_size_parameter_count():
    """Official SPSRNet (nf 64, nb 23, gc 32, x4), counted layer by layer from architecture.py."""
    net = SPSRNet(nf=64, nb=23, gc=32, scale=4)
    sr_branch = _conv(3, 64) + 23 * _rrdb(64) + _conv(64, 64) + 2 * _conv(64, 64) + 2 * _conv(64, 64)
    grad_branch = (_conv(3, 64) + 4 * (_rrdb(128) + _conv(128, 64)) + _conv(64, 64) + 2 * _conv(64, 64)
                   + 2 * _conv(64, 64) + _conv(64, 3, 1))
    fusion = _rrdb(128) + _conv(128, 64) + _conv(64, 64) + _conv(64, 3)
    assert _count(net) == sr_branch + grad_branch + fusion == 24_796_230
    assert net.taps == [5, 10, 15, 20]
    # the SR branch is ESRGAN's RRDBNet with its last conv (64 -> 3) made 64 -> 64
    assert sr_branch == _count(RRDBNet(nf=64, nb=23, gc=32, scale=4)) - _conv(64, 3) + _conv(64, 64)
    assert _count(net.fusion) == fusion


def test_gradient_map_matches_the_official_convolutions():
    """Official Get_gradient_nopadding: 3x3 kernels [-1, 0, 1] (h) and its transpose (v), padding 1."""
    x = torch.rand(2, 3, 9, 11)
    kh = torch.tensor([[0., 0, 0], [-1, 0, 1], [0, 0, 0]]).view(1, 1, 3, 3).repeat(3, 1, 1, 1)
    kv = torch.tensor([[0., -1, 0], [0, 0, 0], [0, 1, 0]]).view(1, 1, 3, 3).repeat(3, 1, 1, 1)
    gh, gv = F.conv2d(x, kh, padding=1, groups=3), F.conv2d(x, kv, padding=1, groups=3)
    assert torch.allclose(gradient_map(x), torch.sqrt(gh ** 2 + gv ** 2 + 1e-6), atol=1e-6)
    ramp = torch.arange(8.).view(1, 1, 1, 8).expand(1, 1, 6, 8)   # I(x, y) = x: |grad| = 2 inside
    assert torch.allclose(gradient_map(ramp)[..., 1:-1, 1:-1], torch.tensor(2.), atol=1e-5)


def test_forward_shapes():
    net = SPSRNet(nf=8, nb=4, gc=4, scale=4)
    sr, branch = net.forward_train(torch.rand(2, 3, 6, 7))
    assert sr.shape == branch.shape == (2, 3, 24, 28)
    assert net(torch.rand(1, 3, 5, 5)).shape == (1, 3, 20, 20)


def _spsr_groups(module):
    """(SR + gradient branches, fusion block, image D, gradient D)"""
    fusion = {id(p) for p in module.net.fusion.parameters()}
    return ([p for p in module.net.parameters() if id(p) not in fusion], module.net.fusion.parameters(),
            module.discriminator.parameters(), module.grad_discriminator.parameters())


def test_smoke_phases_pretrain_fusion_only_then_all(real_batch, fit, smoke_ctx, param_moves):
    module, plan = build_spsr(smoke_ctx())
    assert "no pretrained VGG19, perceptual term off" in plan.notes
    module.hparams.pretrain_steps = 4                   # the phases, shortened
    pre, init = module.hparams.pretrain_steps, module.hparams.branch_init_steps
    steps = pre + init + 3
    moves = param_moves(_spsr_groups)
    trainer = fit(module, real_batch(4, plan.patch_size), steps, [moves])
    assert trainer.global_step == 3 * steps
    # (branches, fusion, image D, gradient D)
    assert moves.rows[:pre] == [(True, True, False, False)] * pre
    assert moves.rows[pre:pre + init] == [(False, True, True, True)] * init
    assert moves.rows[pre + init:] == [(True, True, True, True)] * (steps - pre - init)


def test_pretraining_lowers_the_l1_loss(real_batch, fit, smoke_ctx, pixel_error):
    module, plan = build_spsr(smoke_ctx())
    module.hparams.pretrain_steps, module.hparams.lr = 15, 2e-3
    batch = real_batch(4, plan.patch_size)
    before = pixel_error(module, batch)
    fit(module, batch, 15)
    assert pixel_error(module, batch) < 0.7 * before
