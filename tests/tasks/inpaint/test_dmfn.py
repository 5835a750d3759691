"""DMFN (Hui et al. 2020, released code): sizes, parameter counts, losses on the composite, training."""
from __future__ import annotations

import pytest
import torch

from tasks.common.discriminators import GlobalLocalDiscriminator
from tasks.common.losses import VGGFeatures
from tasks.inpaint.dmfn import (DMFB, REFERENCE_PARAMS, VGG_LAYERS, DMFNGenerator, DMFNModule, build_dmfn,
                                feature_centers)
from tests.tasks.inpaint._baselines import check_composite, meta_params, real_batch, smoke_ctx, trained_terms


def test_parameter_counts_at_paper_width():
    assert meta_params(DMFNGenerator) == REFERENCE_PARAMS["generator"]
    assert meta_params(lambda: GlobalLocalDiscriminator(128, 64, 64, 512, act="lrelu")) == \
        REFERENCE_PARAMS["discriminator"]


def test_shapes_at_128_px_and_dmfb_is_residual():
    net = DMFNGenerator(8, 2)
    out = net(torch.rand(2, 3, 128, 128) * 2 - 1, torch.zeros(2, 1, 128, 128))
    assert out.shape == (2, 3, 128, 128) and out.abs().max() <= 1
    block = DMFB(32)
    for p in block.parameters():
        torch.nn.init.zeros_(p)
    x = torch.rand(1, 32, 16, 16)
    assert torch.equal(block(x), x)   # zero convs: the block is the identity (residual, IN of zeros = 0)


def test_feature_centers_against_a_hand_computation():
    f = torch.zeros(1, 1, 4, 4)
    f[0, 0, 1, 3] = 1.0   # all the mass at row 1, column 3 -> x = 3/4*2-1 = 0.5, y = 1/4*2-1 = -0.5
    c = feature_centers(f, eps=0.0)
    assert torch.allclose(c, torch.tensor([[[[0.5, -0.5]]]]))


def test_build_and_protocol(tmp_path):
    module, plan = build_dmfn(smoke_ctx(tmp_path))
    assert module.hparams.composite and module.hparams.gan == "ragan"
    assert "VGG19 randomly initialised" in plan.notes
    with pytest.raises(FileNotFoundError, match="vgg19"):
        build_dmfn(smoke_ctx(tmp_path, "paper"))


def test_training_reduces_l1_and_feature_losses_and_output_is_composited(shared_data):
    batch = real_batch(shared_data, n=2, size=32, hole=16)
    torch.manual_seed(0)
    vgg = VGGFeatures(VGG_LAYERS, allow_random=True)
    module = DMFNModule(DMFNGenerator(8, 1), GlobalLocalDiscriminator(32, 16, 8, 64, act="lrelu"), vgg,
                        composite=True, lr=1e-3, gan_weight=0.003)
    before, after = trained_terms(module, batch, 8)
    assert after["l1"] < 0.9 * before["l1"]
    assert after["feat"] < before["feat"]
    check_composite(module, batch)
