"""MATLAB imresize reproduction: exact on cases MATLAB's definition fixes analytically."""
import numpy as np
import pytest
import torch

from datamodules.imresize import _cubic, imresize


def test_constant_image_is_preserved():
    x = torch.full((1, 3, 37, 41), 0.3, dtype=torch.float64)
    assert torch.allclose(imresize(x, 0.25), torch.full((1, 3, 10, 11), 0.3, dtype=torch.float64))
    assert torch.allclose(imresize(x, 3.0), torch.full((1, 3, 111, 123), 0.3, dtype=torch.float64))


def test_cubic_kernel_is_keys_a_minus_half():
    x = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 2.5], dtype=torch.float64)
    # Keys (1981) with a = -0.5, MATLAB's 'bicubic'
    ref = [1.0, 0.5625, 0.0, -0.0625, 0.0, 0.0]
    assert _cubic(x).tolist() == pytest.approx(ref)


def test_downscale_by_two_uses_widened_antialias_kernel():
    """x0.5 of a 1-D ramp: MATLAB's result is the ramp sampled at pixel-pair centres (linear data)."""
    ramp = torch.arange(16, dtype=torch.float64).view(1, 1, 1, 16).expand(1, 1, 4, 16)
    out = imresize(ramp, size=(4, 8))
    inner = out[0, 0, 0, 2:-2]
    np.testing.assert_allclose(inner.numpy(), np.arange(4, 12, 2)[:4] + 0.5, atol=1e-12)


def test_upscale_interpolates_exactly_at_integer_phase():
    """x2 upsampling of a linear ramp away from the borders is the ramp at the MATLAB sample points."""
    ramp = torch.arange(12, dtype=torch.float64).view(1, 1, 1, 12).expand(1, 1, 3, 12)
    out = imresize(ramp, size=(3, 24))[0, 0, 0, 4:-4]
    u = np.arange(5, 21) / 2 + 0.5 * (1 - 1 / 2) - 1  # 0-based source coordinate of output pixel
    np.testing.assert_allclose(out.numpy(), u, atol=1e-12)


def test_down_then_up_shapes_and_dtype():
    x = torch.rand(2, 3, 224, 224)
    y = imresize(x, 0.25)
    assert y.shape == (2, 3, 56, 56) and y.dtype == torch.float32
    assert imresize(y, 4.0).shape == x.shape
