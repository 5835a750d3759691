"""SSAN and its Table 1 / Table 3 variants: shapes, sizes, AAL identity at init, the builders' profiles
and a few training steps on the real CREMI sample."""
import pytest
import torch
from torch import nn

from benchmark.specs import BuildContext
from benchmark.weights import MissingWeightsError
from tasks.interp import ssan
from tasks.interp.ssan import EXTRACTORS, PAPER_NET, SMOKE_NET, SSAN, SYNTHESES
from tests.tasks.interp._real_sample import real_triplets


def _ctx(profile, tmp_path):
    return BuildContext("interp", "cremi_triplet_c", profile, None, 1, tmp_path / "no-weights", 0)


def _n(m):
    return sum(p.numel() for p in m.parameters())


def test_srdn_size_at_paper_width():
    """Spec 2.1: G0 64, G 32, D 4, C 4 -> 0.66 M SRDN parameters; the AAL adds Table 2's 15,603."""
    net = SSAN("srdn", "aal", **PAPER_NET)
    assert _n(net.extractor) == 657_536
    assert _n(net.attention) == 15_603
    kel = SSAN("srdn", "kel", **PAPER_NET)
    assert _n(kel.kel) == 506_972 and not hasattr(kel, "attention")   # ablations build no unused modules


@pytest.mark.parametrize("extractor,synthesis", [("srdn", "aal"), ("unet", "aal"), ("sunet", "ssa"),
                                                 ("rdn", "kel")])
def test_variant_shapes(extractor, synthesis):
    net = SSAN(extractor, synthesis, **SMOKE_NET)
    x = torch.rand(2, 1, 32, 32)
    assert net(x, x.flip(-1)).shape == (2, 1, 32, 32)


def test_unknown_variant_raises():
    with pytest.raises(ValueError, match="unknown SSAN variant"):
        SSAN("vgg", "aal")


def test_aal_starts_as_identity_inside_ssan():
    net = SSAN("srdn", "aal", **SMOKE_NET).eval()
    prev, nxt = torch.rand(1, 1, 32, 32), torch.rand(1, 1, 32, 32)
    out = net(prev, nxt)
    net.attention = nn.Identity()
    torch.testing.assert_close(net(prev, nxt), out)


def test_paper_profile_needs_vgg16(tmp_path):
    with pytest.raises(MissingWeightsError, match="vgg16"):
        ssan.build_ssan(_ctx("paper", tmp_path))


def test_smoke_builders_say_what_they_are(tmp_path):
    for build in (ssan.build_ssan, ssan.build_ssan_ext_unet, ssan.build_ssan_kel):
        module, plan = build(_ctx("smoke", tmp_path))
        assert plan.max_steps > 0 and plan.patch_size % 32 == 0
        assert "L_bs and L_f dropped" in plan.notes and set(module.loss.weights) == {"pix"}
        sched = module.configure_optimizers()["lr_scheduler"]   # x0.1 after 60 % (the paper's 30 of 50 epochs)
        assert sched["interval"] == "step" and sched["scheduler"].milestones == {round(0.6 * plan.max_steps): 1}
    assert module.net.synthesis_kind == "kel" and module.net.kel.k == 13


def test_training_steps_on_real_sample_reduce_the_loss(shared_data, tmp_path):
    module, plan = ssan.build_ssan(_ctx("smoke", tmp_path))
    opt = module.configure_optimizers()["optimizer"]
    batch = real_triplets(shared_data, 1, 32, seed=0)

    def loss():
        terms = module.loss(module(batch["prev"], batch["next"]), batch["prev"], batch["target"], batch["next"])
        return sum(terms.values())

    with torch.no_grad():
        first = float(loss())
    for _ in range(20):
        opt.zero_grad()
        value = loss()
        value.backward()
        opt.step()
    with torch.no_grad():
        assert float(loss()) < 0.8 * first  # overfits one batch


@pytest.mark.parametrize("extractor,synthesis", [("srdn", "aal"), ("unet", "aal"), ("srdn", "ssa")])
def test_warps_are_corrections_of_the_input_frames(shared_data, extractor, synthesis):
    """With the warp heads' corrections zeroed, the output is the fusion mask's blend of the two input
    frames, so every pixel lies between the neighbours (the smoke rows start near the trivial baselines)."""
    torch.manual_seed(0)
    net = SSAN(extractor, synthesis, **SMOKE_NET).eval()
    for head in [net.warp] + ([net.warp_next] if hasattr(net, "warp_next") else []):
        nn.init.zeros_(head[-1].weight)
        nn.init.zeros_(head[-1].bias)
    b = real_triplets(shared_data, 2, 64, seed=1)
    with torch.no_grad():
        out = net(b["prev"], b["next"])
    lo, hi = torch.minimum(b["prev"], b["next"]), torch.maximum(b["prev"], b["next"])
    assert bool(((out >= lo - 1e-6) & (out <= hi + 1e-6)).all())
    assert float((out - 0.5 * (b["prev"] + b["next"])).abs().max()) < 0.5 * float((hi - lo).max())
