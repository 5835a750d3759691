"""CNRN (Uddin & Jung 2020, released master code): sizes, parameter counts, attention, training."""
from __future__ import annotations

import torch

from tasks.inpaint.cnrn import (REFERENCE_PARAMS, CNRNDiscriminator, CNRNGenerator, CNRNModule, GlobalAttention,
                                GlobalLocalAttention, build_cnrn)
from tests.tasks.inpaint._baselines import check_composite, meta_params, real_batch, smoke_ctx, trained_terms


def test_parameter_counts_match_the_reference():
    assert meta_params(CNRNGenerator) == REFERENCE_PARAMS["generator"]
    assert meta_params(CNRNDiscriminator) == REFERENCE_PARAMS["discriminator"]


def test_shapes_at_128_px():
    net = CNRNGenerator(4).eval()
    x, mask = torch.rand(2, 3, 128, 128) * 2 - 1, torch.zeros(2, 1, 128, 128)
    mask[0, :, 32:96, 32:96], mask[1, :, 0:64, 64:128] = 1, 1
    with torch.no_grad():
        coarse, fine = net(x, mask)
    assert coarse.shape == fine.shape == (2, 3, 128, 128) and fine.abs().max() <= 1
    assert CNRNDiscriminator(8)(fine).shape == (2, 32, 4, 4)


def _loop_local_attention(att: GlobalLocalAttention, f, mask):
    """The reference's per-sample loop (unfold, patch attention, conv, ones-kernel propagation, softmax,
    transposed conv), written out for one sample at a time."""
    outs = []
    for i in range(f.shape[0]):
        fi, mi = f[i:i + 1], torch.nn.functional.interpolate(mask[i:i + 1], size=f.shape[-2:], mode="nearest")
        bg = fi * (1 - mi)
        fg = att.feature_attention(fi, bg, mask[i:i + 1])
        c, (h, w) = f.shape[1], f.shape[-2:]
        k = torch.nn.functional.pad(bg, [1] * 4).unfold(2, 3, 1).unfold(3, 3, 1).reshape(1, c, -1, 3, 3)[0]
        k = k.transpose(0, 1) + 1e-7                                          # L, C, 3, 3
        mk = torch.nn.functional.pad(mi.repeat(1, c, 1, 1), [1] * 4).unfold(2, 3, 1).unfold(3, 3, 1)
        mk = mk.reshape(1, c, -1, 3, 3)[0].transpose(0, 1)
        k = att.patch_attention(k.reshape(k.shape[0], c, 9), mk.reshape(k.shape[0], c, 9)).view_as(k)
        k = k / k.pow(2).sum((1, 2, 3), keepdim=True).sqrt()
        s = torch.nn.functional.conv2d(fg, k, padding=1)
        s = torch.nn.functional.conv2d(s, torch.ones(s.shape[1], 1, 3, 3), padding=1, groups=s.shape[1])
        mm = (mk.mean((1, 2, 3)) == 0).float().view(1, -1, 1, 1)
        a = (s * mm).softmax(1) * mm
        outs.append(torch.nn.functional.conv_transpose2d(a, k, padding=1))
    return torch.cat(outs)


def test_batched_local_attention_equals_the_per_sample_loop():
    torch.manual_seed(0)
    att = GlobalLocalAttention(8)
    f = torch.rand(2, 8, 8, 8)
    mask = torch.zeros(2, 1, 32, 32)
    mask[0, :, 8:24, 8:24], mask[1, :, 16:32, 0:16] = 1, 1    # different boxes per sample
    with torch.no_grad():
        assert torch.allclose(att(f, mask), _loop_local_attention(att, f, mask), atol=1e-5)


def test_global_attention_keeps_hole_features_and_prunes_by_the_query_mask():
    torch.manual_seed(0)
    att = GlobalAttention(4)
    a = torch.rand(1, 4, 4, 4)
    mask = torch.zeros(1, 1, 16, 16)
    mask[..., :8, :8] = 1                                    # top-left 2x2 feature positions are hole
    with torch.no_grad():
        out = att(a, a, mask)
    assert torch.equal(out[..., :2, :2], a[..., :2, :2])     # a * m in the hole (reference)
    # valid queries have all scores zeroed by the pruning: uniform attention = the mean value vector
    v = att.value(a).flatten(2).mean(-1)
    assert torch.allclose(out[0, :, 3, 3], v[0], atol=1e-6)


def test_training_reduces_the_reconstruction_loss_and_output_is_composited(shared_data, tmp_path):
    batch = real_batch(shared_data, n=2, size=64, hole=32)
    torch.manual_seed(0)
    module = CNRNModule(CNRNGenerator(8), CNRNDiscriminator(8), composite=True, lr=1e-3, betas=(0.5, 0.9))
    before, after = trained_terms(module, batch, 8)
    assert after["l1"] < 0.8 * before["l1"] and after["ssim"] < before["ssim"]
    check_composite(module, batch)
    built, plan = build_cnrn(smoke_ctx(tmp_path))
    assert built.hparams.l1_region == "valid" and plan.batch_size == 4
