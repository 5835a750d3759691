"""EdgeConnect (Nazeri et al. 2019, released code): Canny edges, sizes, parameter counts, stages, training."""
from __future__ import annotations

import numpy as np
import torch
from skimage.color import rgb2gray
from skimage.feature import canny

from tasks.common.losses import VGGFeatures
from tasks.inpaint.edgeconnect import (PERCEPTUAL, REFERENCE_PARAMS, STYLE, EdgeConnect, EdgeConnectDiscriminator,
                                       EdgeConnectModule, build_edgeconnect, canny_edges, rgb_to_gray)
from tasks.inpaint.module import to_net
from tests.tasks.inpaint._baselines import (Snapshots, check_composite, fit, meta_params, real_batch, smoke_ctx,
                                            trained_terms)


def test_parameter_counts_match_the_reference():
    net = meta_params(EdgeConnect)
    with torch.device("meta"):
        ec = EdgeConnect()
    assert sum(p.numel() for p in ec.edge.parameters()) == REFERENCE_PARAMS["edge_generator"]
    assert sum(p.numel() for p in ec.inpaint.parameters()) == REFERENCE_PARAMS["inpaint_generator"]
    assert net == REFERENCE_PARAMS["edge_generator"] + REFERENCE_PARAMS["inpaint_generator"]
    assert meta_params(lambda: EdgeConnectDiscriminator(2)) == REFERENCE_PARAMS["edge_discriminator"]
    assert meta_params(lambda: EdgeConnectDiscriminator(3)) == REFERENCE_PARAMS["inpaint_discriminator"]


def test_canny_edges_of_the_real_images_are_skimage_canny_sigma_2(shared_data):
    batch = real_batch(shared_data, n=3, size=128, hole=64)
    gray = rgb_to_gray(batch["image"])
    expect = rgb2gray(batch["image"][1].permute(1, 2, 0).double().numpy())
    assert np.allclose(gray[1, 0].double().numpy(), expect, atol=1e-6)
    edges = canny_edges(gray)
    assert torch.equal(edges[1, 0], torch.from_numpy(canny(expect, sigma=2.0).astype(np.float32)))
    density = edges.mean((1, 2, 3))
    assert bool(((density > 0.01) & (density < 0.4)).all())            # tissue has edges, not noise everywhere
    # the input edge map of x_M: zero in the hole and no false edge along the dark hole's border
    net = EdgeConnect(4, 1)
    _, e_in = net.input_edges(to_net(batch["corrupted"]), batch["mask"])
    assert e_in[batch["mask"].bool()].sum() == 0
    plain = canny_edges(rgb_to_gray(batch["corrupted"])) * (1 - batch["mask"])
    ring = (torch.nn.functional.max_pool2d(batch["mask"], 5, 1, 2) - batch["mask"]).bool()
    assert e_in[ring].mean() < 0.5 * plain[ring].mean()


def test_shapes_at_128_px():
    net = EdgeConnect(8, 1)
    x, mask = torch.rand(2, 3, 128, 128) * 2 - 1, torch.zeros(2, 1, 128, 128)
    mask[:, :, 32:96, 32:96] = 1
    edges, out = net(x, mask)
    assert edges.shape == (2, 1, 128, 128) and out.shape == (2, 3, 128, 128)
    assert 0 <= edges.min() and edges.max() <= 1 and out.abs().max() <= 1
    logits, feats = EdgeConnectDiscriminator(3, 8)(out)
    assert logits.shape == (2, 1, 14, 14) and len(feats) == 5          # 70x70 PatchGAN at 128 px


def test_stages_g1_trains_first_then_only_g2(shared_data):
    batch = real_batch(shared_data, n=2, size=32, hole=16)
    torch.manual_seed(0)
    vgg = VGGFeatures(PERCEPTUAL + STYLE, allow_random=True)
    disc = torch.nn.ModuleDict({"edge": EdgeConnectDiscriminator(2, 4), "inpaint": EdgeConnectDiscriminator(3, 4)})
    module = EdgeConnectModule(EdgeConnect(4, 1), disc, vgg, edge_steps=2, composite=True, lr=1e-3, lr_d=1e-4,
                               betas=(0.0, 0.9), gan_weight=0.1)
    g1 = []
    snaps = Snapshots()

    class _G1(Snapshots):
        def on_train_batch_end(self, trainer, m, outputs, b, i):
            g1.append(torch.cat([p.detach().flatten().clone() for p in m.net.edge.parameters()]))
            d1 = torch.cat([p.detach().flatten().clone() for p in m.discriminator["edge"].parameters()])
            self.d.append(d1)

    g1_snaps = _G1()
    fit(module, batch, 4, callbacks=[snaps, g1_snaps])
    assert not torch.equal(g1[0], g1[1]) and torch.equal(g1[1], g1[2]) and torch.equal(g1[2], g1[3])
    assert torch.equal(g1_snaps.d[1], g1_snaps.d[2])                    # D1 frozen in the G2-on-G1 stage
    assert not torch.equal(snaps.g[2], snaps.g[3])                      # G2 still trains


def test_training_reduces_each_reconstruction_term_and_output_is_composited(shared_data, tmp_path):
    batch = real_batch(shared_data, n=2, size=32, hole=16)
    torch.manual_seed(0)
    vgg = VGGFeatures(PERCEPTUAL + STYLE, allow_random=True)
    disc = torch.nn.ModuleDict({"edge": EdgeConnectDiscriminator(2, 8), "inpaint": EdgeConnectDiscriminator(3, 8)})
    module = EdgeConnectModule(EdgeConnect(8, 1), disc, vgg, edge_steps=100, composite=True, lr=1e-3, lr_d=1e-4,
                               betas=(0.0, 0.9), gan_weight=0.1)
    module._batch = batch
    before, after = trained_terms(module, batch, 8)
    assert after["l1"] < 0.8 * before["l1"] and after["perc"] < before["perc"]
    check_composite(module, batch)
    built, plan = build_edgeconnect(smoke_ctx(tmp_path))
    assert "Canny: scikit-image" in plan.notes and built.hparams.lr_d == 0.1 * built.hparams.lr
