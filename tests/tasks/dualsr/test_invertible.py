"""Invertibility and shapes of the dual networks' pieces (spec Sec. 5.1): every op, then the whole
network, with non-trivial (perturbed) weights, in float64 (< 1e-10) and float32 (< 1e-4)."""
from __future__ import annotations

import pytest
import torch

from tasks.dualsr.invertible import InvBlockExp
from tasks.dualsr.irn import IRN, DenseBlock, HaarDownsampling
from tasks.dualsr.snadn import MSD, SNADN, LaplacianSplit, NLSACoupling

TOL = {torch.float64: 1e-10, torch.float32: 1e-4}


def _perturb(net: torch.nn.Module, std: float = 0.05) -> torch.nn.Module:
    """Zero-initialised outputs make every block the identity: give all weights random values."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn(p.shape, generator=g) * std)
    return net


def _roundtrip(op, x):
    y = op(x)
    return y, (op(y, rev=True) - x).abs().max().item()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_laplacian_split_is_exact_and_critically_sampled(dtype):
    x = torch.rand(2, 12, 16, 16, dtype=dtype)
    y, err = _roundtrip(LaplacianSplit(), x)
    assert y.shape == (2, 48, 8, 8) and err < TOL[dtype]
    assert torch.allclose(y[:, :12], torch.nn.functional.avg_pool2d(x, 2))  # low = 2x2 mean
    if dtype == torch.float64:
        assert err < 1e-12


def test_haar_matches_the_2x2_transform():
    x = torch.rand(1, 3, 4, 4, dtype=torch.float64)
    y, err = _roundtrip(HaarDownsampling(3).double(), x)
    a, b, c, d = x[..., 0::2, 0::2], x[..., 0::2, 1::2], x[..., 1::2, 0::2], x[..., 1::2, 1::2]
    assert torch.allclose(y[:, :3], (a + b + c + d) / 4)          # band-major: LL of R, G, B first
    assert torch.allclose(y[:, 3:6], (a - b + c - d) / 4)
    assert err < 1e-12


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("subnet", [lambda ci, co: MSD(ci, co, 4, 2), lambda ci, co: DenseBlock(ci, co, 4)])
def test_each_sub_block_inverts(dtype, subnet):
    block = _perturb(InvBlockExp(subnet, 12, 3, 1.0)).to(dtype)
    x = torch.randn(2, 12, 8, 8, dtype=dtype)
    y, err = _roundtrip(block, x)
    assert err < TOL[dtype] and (y - x).abs().max() > 1e-2           # not the identity


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_nlsa_coupling_inverts_with_shared_rotations(dtype):
    cpl = _perturb(NLSACoupling(12, width=8, chunk_size=16)).to(dtype)
    x = torch.randn(2, 12, 8, 8, dtype=dtype)                          # L = 64: 4 chunks, 4 buckets
    y, err = _roundtrip(cpl, x)
    assert err < TOL[dtype] and (y - x).abs().max() > 1e-2


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("scale", [2, 4])
@pytest.mark.parametrize("make", [lambda s: SNADN(s, (4, 4), 2, 2, 8, chunk_size=16),
                                  lambda s: IRN(s, blocks=2, gc=4)], ids=["snadn", "irn"])
def test_whole_network_inverts_and_has_the_lr_z_shapes(dtype, scale, make):
    net = _perturb(make(scale)).to(dtype)
    hr = torch.rand(2, 3, 32, 32, dtype=dtype)
    lr, z = net.down(hr)
    assert lr.shape == (2, 3, 32 // scale, 32 // scale)
    assert z.shape == (2, 3 * scale ** 2 - 3, 32 // scale, 32 // scale) == net.z_shape(lr)
    assert (net.up(lr, z) - hr).abs().max().item() < TOL[dtype]


def _saturate_scales(net: torch.nn.Module) -> torch.nn.Module:
    """Every coupling at its largest z attenuation: s = clamp (rho -> +inf), phi = eta = 0."""
    with torch.no_grad():
        for blk in (m for m in net.modules() if isinstance(m, InvBlockExp)):
            for sub in (blk.phi, blk.eta, blk.rho):
                for p in sub.parameters():
                    p.zero_()
            last = list(blk.rho.modules())[-1]
            last.bias.fill_(50.0)
    return net


@pytest.mark.parametrize("scale", [2, 4])
@pytest.mark.parametrize("method", ["irn", "snadn"])
def test_smoke_network_can_silence_a_gaussian_latent(scale, method):
    """The up pass can damp z ~ N(0, 1) by at most exp(-clamp) per coupling, so with too few couplings
    the sampled latent alone keeps the HR below bicubic quality whatever the training (the smoke nets
    had 4 per level: a noise floor near 30 dB at x2, where bicubic scores 29.9 on the sample).  At
    every scale saturated, the smoke net's up(LR, z) must stay within 45 dB of up(LR, 0)."""
    from tasks.dualsr import irn, snadn
    if method == "irn":
        cfg = irn.SMOKE
        net = IRN(scale, cfg["blocks"], cfg["gc"])
    else:
        cfg = snadn.SMOKE
        net = SNADN(scale, cfg["growth"], cfg["layers"], cfg["blocks"], cfg["nlsa_width"], nlsa=False)
    net = _saturate_scales(net).double()
    lr = torch.rand(2, 3, 8, 8, dtype=torch.float64)
    z = torch.randn(net.z_shape(lr), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    noise = net.up(lr, z) - net.up(lr, torch.zeros_like(z))
    psnr = -10 * torch.log10(noise.pow(2).mean())
    assert psnr > 45, f"{method} x{scale} smoke: z ~ N(0, 1) alone limits the HR to {psnr:.1f} dB"
