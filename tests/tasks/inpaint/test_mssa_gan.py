from dataclasses import replace
from pathlib import Path

import pytest
import torch

from benchmark.specs import BuildContext
from tasks.inpaint import mssa_gan
from tasks.inpaint.mssa_gan import MSSADiscriminator, MSSAGenerator, PARAMS_PAPER, RegionalSelfAttention
from tasks.inpaint.module import InpaintGANModule


def _n(m):
    return sum(p.numel() for p in m.parameters())


def _masks(b=2, size=16, hole=8):
    m = torch.zeros(b, 1, size, size)
    for j in range(b):
        t, l = (4 * j) % (size - hole + 1), (size - hole) - 4 * j % (size - hole + 1)
        m[j, :, t:t + hole, l:l + hole] = 1
    return m


def test_paper_size_parameter_counts():
    with torch.device("meta"):  # no allocation of the 6 M / 11 M parameters
        g, g_no_rsa, d = MSSAGenerator(64), MSSAGenerator(64, rsa=False), MSSADiscriminator()
    # this reconstruction, exactly; and the spec's measured counts (§2.1: G 6.31 M, RSA 0.30 M, no RSA 6.00 M, D 11.30 M)
    assert (_n(g), _n(g.rsa), _n(g_no_rsa), _n(d)) == (6_303_279, 302_630, 6_000_649, 11_298_689)
    assert abs(_n(g) - PARAMS_PAPER["generator"]) / PARAMS_PAPER["generator"] < 0.01
    assert abs(_n(g.rsa) - PARAMS_PAPER["rsa"]) / PARAMS_PAPER["rsa"] < 0.01
    assert abs(_n(g_no_rsa) - PARAMS_PAPER["generator_no_rsa"]) / PARAMS_PAPER["generator_no_rsa"] < 0.01


def _rsa(c=16):
    torch.manual_seed(0)
    rsa = RegionalSelfAttention(c, attention="math")
    with torch.no_grad():
        rsa.beta1.fill_(0.7)
        rsa.beta2.fill_(-0.4)
    return rsa


def _reference_rsa(rsa, x, mask):
    """Eqs. 1-13 written per image with explicit index lists."""
    out = []
    for xi, mi in zip(x, mask):
        c, h, w = xi.shape
        tok = xi.flatten(1).T
        hole = torch.nonzero(mi.flatten() > 0.5).flatten()
        bg = torch.nonzero(mi.flatten() <= 0.5).flatten()
        f, b = tok[hole], tok[bg]
        e1 = torch.softmax(rsa.q1(f) @ rsa.k1(b).T, -1)
        e2 = torch.softmax(rsa.q2(f) @ rsa.k2(f).T, -1)
        pad1, pad2 = torch.zeros_like(tok), torch.zeros_like(tok)
        pad1[hole], pad2[hole] = e1 @ rsa.v1(b), e2 @ rsa.v2(f)
        y = (rsa.beta1 * pad1 + tok) + (rsa.beta2 * pad2 + tok)
        out.append(rsa.fuse(y.T.reshape(1, c, h, w))[0])
    return torch.stack(out)


@pytest.mark.parametrize("mode", ["math", "sdpa"])
def test_rsa_matches_per_image_reference(mode):
    rsa, x, mask = _rsa(), torch.randn(2, 16, 16, 16), _masks()
    rsa.attention = mode
    with torch.no_grad():
        assert torch.allclose(rsa(x, mask), _reference_rsa(rsa, x, mask), atol=1e-5)


def test_rsa_branches_see_only_what_they_may():
    rsa, x, mask = _rsa(), torch.randn(1, 16, 16, 16), _masks(1)
    hole = mask[0, 0] > 0
    bg_pixels = torch.nonzero(~hole)
    hole_pixels = torch.nonzero(hole)
    with torch.no_grad():
        base = rsa(x, mask)
        # a background pixel feeds branch 1 (every hole output) and its own output only
        x2 = x.clone()
        y0, x0 = bg_pixels[0].tolist()
        x2[0, :, y0, x0] += 5.0
        diff = (rsa(x2, mask) - base).abs().amax(1)[0] > 1e-6
        assert diff[hole].all() and diff[y0, x0]
        assert diff[~hole].sum() == 1
        # branch 2 alone (beta1 = 0) never sees the background: hole outputs unchanged
        rsa.beta1.zero_()
        base2 = rsa(x, mask)
        assert torch.allclose(rsa(x2, mask)[..., hole], base2[..., hole], atol=1e-6)
        # branch 1 alone (beta2 = 0) never sees the other hole pixels
        rsa.beta1.fill_(0.7)
        rsa.beta2.zero_()
        base1 = rsa(x, mask)
        x3 = x.clone()
        (ya, xa), (yb, xb) = hole_pixels[0].tolist(), hole_pixels[-1].tolist()
        x3[0, :, ya, xa] += 5.0
        changed = (rsa(x3, mask) - base1).abs().amax(1)[0] > 1e-6
        assert changed[ya, xa] and not changed[yb, xb] and changed.sum() == 1


def test_rsa_rejects_unequal_holes():
    rsa, m = _rsa(), _masks()
    m[1, :, 0, 0] = 1
    with pytest.raises(ValueError, match="same, non-empty hole"):
        rsa(torch.randn(2, 16, 16, 16), m)


def test_generator_multiscale_outputs_and_variants():
    x, m = torch.randn(2, 3, 64, 64), _masks(2, 64, 32)
    outs = MSSAGenerator(8)(x, m)
    assert [o.shape[-1] for o in outs] == [16, 32, 64] and all(o.abs().max() <= 1 for o in outs)
    assert len(MSSAGenerator(8, rsa=False, multiscale_heads=False)(x, m)) == 1
    assert MSSADiscriminator((16, 16, 32, 64, 128), 64)(outs[-1]).shape == (2, 1)
    with pytest.raises(ValueError, match="input 96"):
        MSSADiscriminator(input_size=96)


def _ctx():
    return BuildContext("inpaint", "kather_inpaint", "smoke", None, 3, Path("/nonexistent"), 0)


def _batch(b=4, size=64, hole=32):
    torch.manual_seed(1)
    x = torch.rand(b, 3, size, size)
    m = _masks(b, size, hole)
    return {"image": x, "corrupted": ((x * (1 - m) + 0.1 * x * m) * 255).round() / 255, "mask": m,
            "index": torch.arange(b)}


EXPECTED_TERMS = {
    "build_mssa_gan": {"ms_l1", "perc", "style", "tv", "adv"},
    "build_no_mssa": {"perc", "style", "tv", "adv"},
    "build_no_rsa": {"ms_l1", "perc", "style", "tv", "adv"},
    "build_no_ms_loss_3": {"perc", "style", "tv", "adv"},
    "build_no_perceptual": {"ms_l1", "style", "tv", "adv"},
    "build_no_style": {"ms_l1", "perc", "tv", "adv"},
    "build_no_adv": {"ms_l1", "perc", "style", "tv"},
    "build_no_tv": {"ms_l1", "perc", "style", "adv"},
}


@pytest.fixture
def after_pretraining(monkeypatch):
    monkeypatch.setattr(InpaintGANModule, "iteration", property(lambda self: 10 ** 6))


@pytest.mark.parametrize("builder", sorted(EXPECTED_TERMS))
def test_every_loss_term_and_ablation(builder, after_pretraining):
    module, plan = getattr(mssa_gan, builder)(_ctx())
    batch = _batch()
    parts = module.generator_losses(batch, module.generate(*module.net_input(batch)))
    assert set(parts) == EXPECTED_TERMS[builder]
    assert all(torch.isfinite(v) and v > 0 for v in parts.values())
    assert module.phase() == ("pretrain" if builder == "build_no_adv" else "adversarial")  # no L_adv: D never trains
    assert "VGG16 randomly initialised" in plan.notes and "raw (not composited)" in plan.notes


def test_smoke_schedule_vgg_terms_join_late_unless_there_is_no_pixel_loss(monkeypatch):
    it = {"n": 0}
    monkeypatch.setattr(InpaintGANModule, "iteration", property(lambda self: it["n"]))
    batch = _batch()
    full, plan = mssa_gan.build_mssa_gan(_ctx())
    no_pixel, plan_np = mssa_gan.build_no_ms_loss_3(_ctx())
    terms = lambda m: set(m.generator_losses(batch, m.generate(*m.net_input(batch))))
    assert terms(full) == {"ms_l1", "tv"}                  # pixel-only phase: cheap steps that learn
    assert terms(no_pixel) == {"perc", "style", "tv"}      # else it would train on L_TV alone
    it["n"] = mssa_gan.SMOKE.vgg_from
    assert terms(full) == {"ms_l1", "perc", "style", "tv", "adv"}
    assert "only from iteration 90 of 120" in plan.notes and "x0.1 at iteration 90" in plan.notes
    assert "only from iteration 40 of 60" in plan_np.notes  # L_adv only; the VGG terms from the start
    # the lr drops at the milestone, for G and D alike (BatchNorm statistics settle before the test)
    for opt, sched in (full._adam(full.generator_parameters(), full.hparams.lr),
                       full._adam(full.discriminator.parameters(), full.hparams.lr)):
        for _ in range(mssa_gan.SMOKE.milestones[0]):
            opt.step()
            sched.step()
        assert opt.param_groups[0]["lr"] == pytest.approx(mssa_gan.SMOKE.lr * mssa_gan.SMOKE.gamma)


def test_paper_profile_schedule_is_eq21_from_the_start():
    assert (mssa_gan.PAPER.pretrain_steps, mssa_gan.PAPER.vgg_from, mssa_gan.PAPER.milestones,
            mssa_gan.PAPER.crop, mssa_gan.PAPER.lr) == (0, 0, (), 0, 2e-4)


def test_composited_row_pastes_the_known_pixels_on_the_trained_network(tmp_path):
    torch.manual_seed(0)
    trained, _ = mssa_gan.build_mssa_gan(_ctx())
    with torch.no_grad():
        for p in trained.net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    ckpt, checkpoint = tmp_path / "final.ckpt", {"state_dict": trained.state_dict()}
    trained.on_save_checkpoint(checkpoint)  # as the runner's checkpoints: without the frozen VGG
    assert not any(k.startswith("features.") for k in checkpoint["state_dict"])
    torch.save(checkpoint, ckpt)
    comp, plan = mssa_gan.build_mssa_gan_composited(replace(_ctx(), init_checkpoint=ckpt))
    assert plan.max_steps == 0 and "output composited" in plan.notes and "evaluated composited" in plan.notes
    batch, m = _batch(), _batch()["mask"]
    trained.eval(), comp.eval()
    with torch.no_grad():
        raw, pred = trained.restore(batch)[0], comp.restore(batch)[0]
    assert torch.equal(pred * (1 - m), batch["corrupted"] * (1 - m))       # known pixels: x_M itself
    assert torch.allclose(pred * m, raw * m)                                # hole: the same network's output
    assert not torch.allclose(raw * (1 - m), batch["corrupted"] * (1 - m), atol=1e-2)  # the raw row differs


def test_multiscale_loss_weights_by_hand():
    module, _ = mssa_gan.build_no_ms_loss_1(_ctx())
    batch = _batch()
    outs = module.generate(*module.net_input(batch))
    t = module.target(batch)
    by_hand = 0.8 * (outs[1] - torch.nn.functional.avg_pool2d(t, 2)).abs().mean() + 1.0 * (outs[2] - t).abs().mean()
    assert torch.allclose(module.multiscale_l1(outs, t), by_hand)


@pytest.mark.parametrize("builder", ["build_mssa_gan", "build_no_mssa"])
def test_generator_steps_reduce_its_loss(builder):
    torch.manual_seed(0)
    module, _ = getattr(mssa_gan, builder)(_ctx())
    opt = torch.optim.Adam(module.generator_parameters(), lr=1e-3, betas=(0.5, 0.999))
    batch, losses = _batch(2, 32, 16), []
    for _ in range(8):
        loss = sum(module.reconstruction_losses(batch, module.generate(*module.net_input(batch))).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.9 * losses[0], losses


def test_paper_profile_needs_vgg16():
    ctx = BuildContext("inpaint", "kather_inpaint", "paper", None, 3, Path("/nonexistent"), 0)
    with pytest.raises(FileNotFoundError, match="vgg16"):
        mssa_gan.build_mssa_gan(ctx)
