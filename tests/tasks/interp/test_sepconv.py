"""SepConv-Ls: the official architecture's size, run.py's padding, and official RGB weights on gray."""
import torch
import torch.nn.functional as F

from tasks.interp.ops import local_separable_conv
from tasks.interp.sepconv import SMOKE_NET, SepConvNet, load_official


def _n(m):
    return sum(p.numel() for p in m.parameters())


def test_parameter_count_matches_official_run_py():
    # sniklaus/sepconv-slomo run.py (6-channel RGB input, K = 51): 21,675,452; gray (2 channels): 21,674,300
    assert _n(SepConvNet(3)) == 21_675_452
    assert _n(SepConvNet(1)) == 21_674_300


def test_forward_equals_run_py_double_padding():
    """run.py pads the frames once for the network and again (K//2, replicate) for the filtering; the
    cropped-kernel shortcut must give the same output window."""
    torch.manual_seed(0)
    net = SepConvNet(1, **SMOKE_NET).eval()
    prev, nxt = torch.rand(1, 1, 20, 24), torch.rand(1, 1, 20, 24)
    p, h, w = net.kernel_size // 2, 20, 24
    pad = (p, p + (-(w + 2 * p)) % 32, p, p + (-(h + 2 * p)) % 32)
    a, b = F.pad(prev, pad, mode="replicate"), F.pad(nxt, pad, mode="replicate")
    with torch.no_grad():
        feat = net._features(torch.cat([a, b], 1))
        ref = (local_separable_conv(F.pad(a, (p,) * 4, mode="replicate"), net.moduleVertical1(feat),
                                    net.moduleHorizontal1(feat))
               + local_separable_conv(F.pad(b, (p,) * 4, mode="replicate"), net.moduleVertical2(feat),
                                      net.moduleHorizontal2(feat)))[..., p:p + h, p:p + w]
        torch.testing.assert_close(net(prev, nxt), ref, atol=1e-5, rtol=1e-4)


def test_official_rgb_weights_load_into_gray_network(tmp_path):
    torch.manual_seed(0)
    rgb = SepConvNet(3, **SMOKE_NET).eval()
    # the newer sepconv-slomo releases name the modules net* instead of module*
    state = {"net" + k[len("module"):]: v for k, v in rgb.state_dict().items()}
    torch.save(state, tmp_path / "network-lf.pytorch")
    gray = SepConvNet(1, **SMOKE_NET).eval()
    load_official(gray, tmp_path / "network-lf.pytorch")
    prev, nxt = torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 16)
    with torch.no_grad():
        out_rgb = rgb(prev.expand(-1, 3, -1, -1), nxt.expand(-1, 3, -1, -1))
        torch.testing.assert_close(gray(prev, nxt), out_rgb[:, :1], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(out_rgb[:, 2:], out_rgb[:, :1])
