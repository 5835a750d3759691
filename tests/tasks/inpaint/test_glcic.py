"""GLCIC (Iizuka et al. 2017): sizes, parameter counts, the three training phases, compositing."""
from __future__ import annotations

import pytest
import torch

from tasks.common.discriminators import GlobalLocalDiscriminator, crop_boxes
from tasks.inpaint.glcic import REFERENCE_PARAMS, CompletionNetwork, GLCICModule, build_glcic
from tests.tasks.inpaint._baselines import (Snapshots, check_composite, fit, meta_params, real_batch, smoke_ctx,
                                            trained_terms)


def test_parameter_counts_at_paper_width():
    assert meta_params(CompletionNetwork) == REFERENCE_PARAMS["generator"]
    assert meta_params(lambda: GlobalLocalDiscriminator(128, 64, 64, 1024)) == REFERENCE_PARAMS["discriminator"]


def test_shapes_at_128_px_and_the_local_crop_is_the_hole():
    net, disc = CompletionNetwork(8), GlobalLocalDiscriminator(128, 64, 8, 128)
    x, mask = torch.rand(2, 3, 128, 128) * 2 - 1, torch.zeros(2, 1, 128, 128)
    out = net(x, mask)
    assert out.shape == (2, 3, 128, 128) and out.abs().max() <= 1
    box = torch.tensor([[0, 64, 64], [32, 8, 64]])
    local = crop_boxes(out, box)
    assert torch.equal(local[1], out[1, :, 32:96, 8:72])
    assert disc(out, local).shape == (2, 1)


def test_three_phases_train_c_then_d_then_both(shared_data):
    """Algorithm 1: T_C iterations move only C, T_D only D, then both."""
    batch = real_batch(shared_data, n=2, size=64, hole=32)
    torch.manual_seed(0)
    module = GLCICModule(CompletionNetwork(4), GlobalLocalDiscriminator(64, 32, 4, 16), composite=True,
                         pretrain_steps=2, d_only_steps=2)
    snaps = Snapshots()
    fit(module, batch, 6, callbacks=[snaps])
    moved = lambda seq, i: not torch.equal(seq[i], seq[i - 1])
    assert [moved(snaps.g, i) for i in range(1, 6)] == [True, False, False, True, True]
    assert [moved(snaps.d, i) for i in range(1, 6)] == [False, True, True, True, True]


def test_build_schedule_and_protocol(tmp_path):
    module, plan = build_glcic(smoke_ctx(tmp_path))
    assert module.hparams.composite and module.hparams.gan_weight == pytest.approx(4e-4)
    _, paper = build_glcic(smoke_ctx(tmp_path, "paper"))
    assert paper.batch_size == 96 and paper.max_steps == 60 * 241
    paper_module, _ = build_glcic(smoke_ctx(tmp_path, "paper"))
    assert paper_module.hparams.pretrain_steps == round(0.18 * paper.max_steps)
    assert isinstance(paper_module.configure_optimizers()[0], torch.optim.Adadelta)


def test_training_reduces_the_hole_mse_and_output_is_composited(shared_data):
    batch = real_batch(shared_data, n=2, size=64, hole=32)
    torch.manual_seed(0)
    module = GLCICModule(CompletionNetwork(8), GlobalLocalDiscriminator(64, 32, 8, 16), composite=True,
                         lr=10.0, pretrain_steps=6, d_only_steps=1)
    before, after = trained_terms(module, batch, 8)
    assert after["mse"] < 0.8 * before["mse"]
    check_composite(module, batch)
