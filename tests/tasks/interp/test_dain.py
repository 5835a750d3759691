"""DAIN-Ls in pure PyTorch: official sizes and state-dict layout, weight loading, padding, gradients,
and the smoke identity init (zero flow reproduces the blended neighbours)."""
import pytest
import torch

from benchmark.specs import BuildContext
from benchmark.weights import MissingWeightsError
from tasks.interp import dain
from tasks.interp.dain import DAIN, PAPER_NET, SMOKE_NET, _pad_size, mononet5
from tasks.interp.megadepth import hourglass
from tasks.interp.pwcnet import PWCDCNet
from tests.tasks.interp._real_sample import real_triplets


def _n(m):
    return sum(p.numel() for p in m.parameters())


def test_parameter_counts_match_the_reference_modules():
    """Counted from baowenbo/DAIN's modules: PWC-DC 9,374,340; DIW hourglass 5,357,153; MonoNet5 + two
    heads 5,514,112; S2DF_3dense 156,864; MultipleBasicBlock_4(437, 128) 3,629,187 -> 24.03 M (DAIN: 24.0 M)."""
    assert _n(PWCDCNet()) == 9_374_340
    assert _n(hourglass()) == 5_357_153
    assert sum(_n(m) for m in mononet5(6, 16)) == 5_514_112
    net = DAIN(**PAPER_NET)
    assert _n(net.ctxNet) == 156_864 and _n(net.rectifyNet) == 3_629_187
    assert _n(net) == 24_031_656


def test_hourglass_keeps_the_torch7_conversion_keys():
    state = hourglass().state_dict()
    assert state["0.weight"].shape == (128, 3, 7, 7) and state["1.weight"].shape == (128,)
    assert state["3.0.0.1.0.0.weight"].shape == (32, 128, 1, 1)               # first inception, 1x1 branch
    assert state["3.0.0.3.0.0.3.0.1.5.1.3.weight"].shape == (64, 64, 3, 3)    # innermost-but-one level
    assert state["4.weight"].shape == (1, 64, 3, 3)
    assert "3.0.0.1.0.1.weight" not in state                                  # BN without affine parameters
    assert len(state) == 779


def test_padding_rules():
    assert (_pad_size(512, False), _pad_size(64, False), _pad_size(128, False)) == (576, 128, 192)
    assert (_pad_size(64, True), _pad_size(100, True)) == (64, 128)


def test_forward_shape_and_gradients_reach_every_subnet():
    torch.manual_seed(0)
    net = DAIN(filter_width=2, ctx_width=4, rectify_width=4)
    prev, nxt = torch.rand(1, 1, 20, 30), torch.rand(1, 1, 20, 30)     # padded to 64 x 64 in training
    out = net(prev, nxt)
    assert out.shape == (1, 1, 20, 30)
    out.square().mean().backward()
    for name in ("initScaleNets_filter", "initScaleNets_filter1", "ctxNet", "rectifyNet", "flownets", "depthNet"):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in getattr(net, name).parameters()), name


def test_param_groups_keep_dain_learning_rate_ratios():
    net = DAIN(filter_width=2, ctx_width=4, rectify_width=4)
    groups = net.param_groups(1e-3)
    assert [g["lr"] for g in groups] == [1e-3, 5e-4, 1e-5]
    assert sum(len(g["params"]) for g in groups) == len(list(net.parameters()))
    frozen = DAIN(**SMOKE_NET)
    assert [g["lr"] for g in frozen.param_groups(1e-3)] == [1e-3, 5e-4]
    assert not any(p.requires_grad for p in frozen.flownets.parameters()) and "frozen" in frozen.random_init_note


def test_paper_profile_requires_pretrained_flow_and_depth(tmp_path):
    ctx = BuildContext("interp", "cremi_triplet_c", "paper", None, 1, tmp_path, 0)
    with pytest.raises(MissingWeightsError, match="pwc_net.pth.tar"):
        dain.build_dain(ctx)


def test_pretrained_files_load(tmp_path):
    src = DAIN(**SMOKE_NET)
    (tmp_path / "dain").mkdir()
    torch.save({"state_dict": src.flownets.state_dict()}, tmp_path / "dain" / "pwc_net.pth.tar")
    torch.save({"module." + k: v for k, v in src.depthNet.state_dict().items()},
               tmp_path / "dain" / "best_generalization_net_G.pth")
    dst = DAIN(**SMOKE_NET)
    dst.load_pretrained(tmp_path)
    assert dst.random_init_note == ""
    torch.testing.assert_close(dst.flownets.conv1a[0].weight, src.flownets.conv1a[0].weight)
    torch.testing.assert_close(dst.depthNet[0].weight, src.depthNet[0].weight)


def test_smoke_dain_starts_at_the_blended_neighbours(shared_data, tmp_path):
    """The first smoke leaderboard's DAIN-Ls scored 6.39 dB: random flow and random 4x4 kernels warp to
    near-zero frames.  The smoke builder's identity init (zero flow, bilinear centre taps, zero
    rectification) must make the network exactly 0.5 (prev + next) in training and evaluation mode."""
    ctx = BuildContext("interp", "cremi_triplet_c", "smoke", None, 1, tmp_path / "no-weights", 0)
    module, plan = dain.build_dain(ctx)
    net = module.net
    assert "identity init" in plan.notes and plan.val_every_n_steps == plan.max_steps  # one validation (costly)
    b = real_triplets(shared_data, 2, 64, seed=3)
    want = 0.5 * (b["prev"] + b["next"])
    for mode in (True, False):
        net.train(mode)
        assert not net.flownets.training and not net.depthNet.training   # frozen: BN statistics fixed
        with torch.no_grad():
            out = net(b["prev"], b["next"])
        torch.testing.assert_close(out, want, atol=1e-5, rtol=0)
    # a random (reference) init is far from any frame: this is what the smoke row scored before
    torch.manual_seed(0)
    with torch.no_grad():
        raw = DAIN(**SMOKE_NET).eval()(b["prev"], b["next"])
    assert float((raw - want).abs().mean()) > 0.2
