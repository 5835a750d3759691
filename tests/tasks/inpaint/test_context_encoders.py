"""Context Encoders (Pathak et al. 2016, train_random.lua): sizes, parameter counts, training, compositing."""
from __future__ import annotations

import pytest
import torch

from tasks.inpaint.context_encoders import (REFERENCE_PARAMS, ContextDiscriminator, ContextEncoder,
                                            ContextEncoderModule, REFERENCE_HOLE_FILL,
                                            build_context_encoders, build_context_encoders_own)
from tests.tasks.inpaint._baselines import check_composite, meta_params, real_batch, smoke_ctx, trained_terms


def _conv_biases(factory) -> int:
    with torch.device("meta"):
        net = factory()
    return sum(m.out_channels for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)))


@pytest.mark.parametrize("key, factory", [("generator", ContextEncoder),
                                          ("generator_centre", lambda: ContextEncoder(full_output=False)),
                                          ("discriminator", ContextDiscriminator)])
def test_parameter_counts_match_the_reference_without_its_inert_biases(key, factory):
    # the reference's conv biases are zeroed before every step: ours has none, the rest is identical
    assert meta_params(factory) + _conv_biases(factory) == REFERENCE_PARAMS[key]


def test_shapes_at_128_px():
    g, d = ContextEncoder(8, 8, 32), ContextDiscriminator(8)
    out = g(torch.rand(2, 3, 128, 128) * 2 - 1)
    assert out.shape == (2, 3, 128, 128) and out.abs().max() <= 1
    assert d(out).shape == (2, 1)
    assert ContextEncoder(8, 8, 32, full_output=False)(torch.rand(2, 3, 128, 128)).shape == (2, 3, 64, 64)
    with pytest.raises(ValueError, match="128 px"):
        g(torch.rand(1, 3, 64, 64))


def test_build_uses_the_reference_recipe(tmp_path):
    module, plan = build_context_encoders(smoke_ctx(tmp_path))
    hp = module.hparams
    assert hp.composite and hp.hole_fill is None and hp.gan_weight == pytest.approx(0.001)
    assert hp.lr == pytest.approx(10 * hp.lr_d)  # G at 10x the D learning rate (0 < wtl2 < 1)
    assert plan.patch_size == 128 and "composited" in plan.notes
    paper, paper_plan = build_context_encoders(smoke_ctx(tmp_path, "paper"))
    assert paper_plan.batch_size == 64 and paper_plan.max_steps == 60 * 361   # 60 epochs of 23,080


def test_own_recipe_refills_the_hole_and_trains_500_epochs(tmp_path, shared_data):
    own, plan = build_context_encoders_own(smoke_ctx(tmp_path))
    assert own.hparams.hole_fill == pytest.approx(REFERENCE_HOLE_FILL) and "hole refilled with" in plan.notes
    batch = real_batch(shared_data, n=2, size=128, hole=64)
    x_m, mask = own.net_input(batch)
    hole = mask.expand_as(x_m) > 0
    fill = (torch.tensor(REFERENCE_HOLE_FILL).view(1, 3, 1, 1) * 2 - 1).expand_as(x_m)
    assert torch.allclose(x_m[hole], fill[hole]) and torch.allclose(x_m[~hole], batch["corrupted"].mul(2).sub(1)[~hole])
    _, paper_plan = build_context_encoders_own(smoke_ctx(tmp_path, "paper"))
    assert paper_plan.max_steps == 500 * 361 and "500 epochs" in paper_plan.notes


def test_training_reduces_the_reconstruction_loss_and_output_is_composited(shared_data):
    batch = real_batch(shared_data, n=4, size=128, hole=64)
    torch.manual_seed(0)
    module = ContextEncoderModule(ContextEncoder(8, 8, 32), ContextDiscriminator(8), composite=True,
                                  lr=1e-3, lr_d=1e-4)
    before, after = trained_terms(module, batch, 15)
    assert after["l2"] < 0.8 * before["l2"]
    check_composite(module, batch)
