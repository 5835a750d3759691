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
        assert "VGG16 random" in plan.notes
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
    for _ in range(5):
        opt.zero_grad()
        value = loss()
        value.backward()
        opt.step()
    with torch.no_grad():
        assert float(loss()) < 0.7 * first
