import torch

from tasks.common.losses import PerceptualLoss, VGGFeatures


def _image(seed=0, size=64):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(2, 3, size, size, generator=g)


def test_random_vgg_keeps_feature_scale_through_depth():
    """Smoke's random VGG must not make the perceptual term vanish (default init: conv5_4 rms ~1e-7)."""
    vgg = VGGFeatures(("relu2_2", "conv5_4"), arch="vgg19", weights_dir=None, allow_random=True)
    assert vgg.random_init
    shallow, deep = vgg(_image())
    for f in (shallow, deep):
        assert 0.3 < f.pow(2).mean().sqrt() < 10


def test_random_vgg_is_the_same_every_time():
    a = VGGFeatures(("relu2_2",), arch="vgg16", weights_dir=None, allow_random=True)
    b = VGGFeatures(("relu2_2",), arch="vgg16", weights_dir=None, allow_random=True)
    x = _image()
    torch.testing.assert_close(a(x)[0], b(x)[0], rtol=0, atol=0)


def test_random_perceptual_loss_outweighs_the_pixel_term_as_with_real_weights():
    per = PerceptualLoss(("conv5_4",), arch="vgg19", weights_dir=None, allow_random=True)
    hr = _image()
    sr = (hr + 0.05 * torch.randn(hr.shape, generator=torch.Generator().manual_seed(1))).requires_grad_(True)
    g_per, = torch.autograd.grad(per(sr, hr), sr)
    g_pix, = torch.autograd.grad(1e-2 * torch.nn.functional.l1_loss(sr, hr), sr)
    assert g_per.norm() > 10 * g_pix.norm()
