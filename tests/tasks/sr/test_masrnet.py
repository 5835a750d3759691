import re
import copy
from pathlib import Path

import lightning as L
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from benchmark.specs import BuildContext
from datamodules.sr_pairs import PairedSRDataset
from tasks.sr import masrnet
from tasks.sr.masrnet import ATTENTIONS, MASRNet, MixAttention


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _ctx(profile="smoke", scale=4):
    return BuildContext("sr", "pathimgsr_x4", profile, scale, 3, Path("/nonexistent-weights"))


def _unshuffle(y: torch.Tensor, groups: int) -> torch.Tensor:
    """Inverse of ShuffleNet's channel shuffle with ``groups`` groups."""
    return nn.ChannelShuffle(y.shape[1] // groups)(y)


def test_channel_shuffle_is_shufflenet_permutation():
    att = MixAttention(8, groups=4, hidden=2, spatial_kernel=3, attention="channel")
    assert att.shuffle(torch.arange(8.0).view(1, 8, 1, 1)).flatten().tolist() == [0, 2, 4, 6, 1, 3, 5, 7]


@pytest.mark.parametrize("attention", ["channel", "spatial", "mix"])
def test_attention_is_computed_per_group(attention):
    att = MixAttention(16, groups=4, hidden=2, spatial_kernel=3, attention=attention)
    x = torch.rand(2, 16, 9, 9)
    x2 = x.clone()
    x2[:, 4:8] += torch.randn(2, 4, 9, 9)  # perturb group 1 only
    y, y2 = _unshuffle(att(x), 4), _unshuffle(att(x2), 4)
    untouched = [0, 1, 2, 3, 8, 9, 10, 11, 12, 13, 14, 15]
    torch.testing.assert_close(y[:, untouched], y2[:, untouched])
    assert not torch.allclose(y[:, 4:8], y2[:, 4:8])


def test_channel_and_spatial_weights_have_their_shapes():
    x = torch.rand(2, 16, 7, 7) + 0.1
    ch = _unshuffle(MixAttention(16, 4, 2, 3, "channel")(x), 4) / x   # one weight per channel
    torch.testing.assert_close(ch, ch[..., :1, :1].expand_as(ch))
    sp = _unshuffle(MixAttention(16, 4, 2, 3, "spatial")(x), 4) / x   # one map per group
    sp = sp.view(2, 4, 4, 7, 7)
    torch.testing.assert_close(sp, sp[:, :, :1].expand_as(sp))
    assert ((ch > 0) & (ch < 1)).all() and ((sp > 0) & (sp < 1)).all()


def test_mix_is_the_sum_of_the_parallel_branches():
    mix = MixAttention(16, 4, 2, 3, "mix")
    ch, sp = MixAttention(16, 4, 2, 3, "channel"), MixAttention(16, 4, 2, 3, "spatial")
    ch.channel.load_state_dict(mix.channel.state_dict())
    sp.spatial.load_state_dict(mix.spatial.state_dict())
    x = torch.rand(2, 16, 8, 8)
    torch.testing.assert_close(mix(x), ch(x) + sp(x))


@pytest.mark.parametrize("attention", ATTENTIONS)
@pytest.mark.parametrize("scale", [2, 4])
def test_output_shapes(attention, scale):
    net = MASRNet(nf=8, n_rob=2, n_rmab=2, groups=2, hidden=2, spatial_kernel=3, attention=attention, scale=scale)
    assert net(torch.rand(2, 3, 10, 12)).shape == (2, 3, 10 * scale, 12 * scale)


def test_rejects_bad_settings():
    with pytest.raises(ValueError):
        MASRNet(scale=3)
    with pytest.raises(ValueError):
        MASRNet(attention="cbam")
    with pytest.raises(ValueError):
        MixAttention(10, groups=4)


def test_parameter_counts_at_paper_settings():
    counts = {a: _count(MASRNet(attention=a)) for a in ATTENTIONS}
    # No count in the paper.  MASRNet keeps RCAN's 10 x 20 residual-in-residual trunk (64 channels):
    # RCAN x4 has 15,592,379 parameters (official code); without its mean shifts (24), its 200
    # channel-attention layers (580 each) and its pixel-shuffle upsampler (295,424), plus a stride-4
    # deconvolution (64*64*8*8 + 64), it is MASRNet without attention.
    assert counts["none"] == 15_592_379 - 24 - 200 * 580 - 295_424 + (64 * 64 * 64 + 64)
    per_block_channel = (64 * 4 + 4 * 4) + (4 * 64 + 64)   # grouped FC 16->4 (x4 groups), FC 4->16
    per_block_spatial = 64 * 7 * 7 + 4                     # a 7x7 conv per group, one map each
    assert counts["channel"] == counts["none"] + 200 * per_block_channel
    assert counts["spatial"] == counts["none"] + 200 * per_block_spatial
    assert counts["mix"] == counts["none"] + 200 * (per_block_channel + per_block_spatial) == 16_189_539


def _relabelled_copy(net: MASRNet, perm: torch.Tensor) -> MASRNet:
    """The same network without channel shuffles, its feature channels relabelled by the inverse
    shuffle ``perm`` (shuffle(z)[c] = z[perm[c]]): dense convs absorb the relabelling."""
    inv = torch.argsort(perm)
    plain = copy.deepcopy(net)
    for rob in plain.body:
        for rmab in rob.body[:-1]:
            rmab.attention.shuffle = nn.Identity()
    sd = {k: v.clone() for k, v in net.state_dict().items()}
    last = len(net.body[0].body) - 1                                        # a ROB's closing conv
    for k in list(sd):
        w = sd[k]
        if k.startswith("head."):                                           # out channels relabelled
            sd[k] = w[inv]
        elif k.startswith("upsample.") and k.endswith("weight"):            # in channels (ConvTranspose: dim 0)
            sd[k] = w[inv]
        elif k.startswith("body_conv.") or re.fullmatch(rf"body\.\d+\.body\.{last}\.(weight|bias)", k):
            sd[k] = w[inv][:, inv] if w.ndim == 4 else w[inv]               # dense conv between relabelled maps
        elif k.endswith("body.0.weight") and ".attention." not in k:        # an RMAB's first conv: its input
            sd[k] = w[:, inv]
    plain.load_state_dict(sd)
    return plain


def test_channel_shuffle_is_a_noop_the_network_without_it_computes_the_same():
    """The docstring's claim, checked: relabel the channels and the shuffle-free network gives the same SR."""
    torch.manual_seed(0)
    net = MASRNet(nf=8, n_rob=2, n_rmab=2, groups=2, hidden=2, spatial_kernel=3).eval()
    perm = net.body[0].body[0].attention.shuffle(torch.arange(8.0).view(1, 8, 1, 1)).flatten().long()
    x = torch.rand(1, 3, 12, 12)
    plain = _relabelled_copy(net, perm).eval()
    with torch.no_grad():
        assert torch.allclose(plain(x), net(x), atol=1e-5)
        # the relabelling is what makes them equal: the shuffle-free net with the original weights differs
        unrelabelled = copy.deepcopy(plain)
        unrelabelled.load_state_dict(net.state_dict())
        assert not torch.allclose(unrelabelled(x), net(x), atol=1e-3)


def test_paper_build_follows_section_4_2():
    module, plan = masrnet.build_masrnet(_ctx("paper"))
    assert (plan.max_steps, plan.batch_size, plan.patch_size) == (20_000, 16, 128)
    hp = module.hparams
    assert hp.lr == 1e-4 and hp.gamma == 0.5 and hp.loss == "l1"
    assert list(hp.milestones) == list(range(2_000, 20_000, 2_000))
    assert len(module.net.body) == 10 and len(module.net.body[0].body) == 20 + 1
    assert _count(module.net) == 16_189_539


@pytest.mark.parametrize("build,attention", [(masrnet.build_masrnet_att_none, "none"),
                                             (masrnet.build_masrnet_att_channel, "channel"),
                                             (masrnet.build_masrnet_att_spatial, "spatial"),
                                             (masrnet.build_masrnet_att_mix, "mix")])
def test_ablation_builders_pick_their_attention(build, attention):
    module, _ = build(_ctx())
    att = module.net.body[0].body[0].attention
    if attention == "none":
        assert isinstance(att, nn.Identity)
    else:
        assert (att.channel is not None, att.spatial is not None) == (attention in ("channel", "mix"),
                                                                      attention in ("spatial", "mix"))


def _kather_pngs(shared_data: Path, n: int) -> list[Path]:
    return sorted((shared_data / "kather" / "CRC-VAL-HE-7K").glob("*/*.png"))[:: 32 // n][:n]


def test_smoke_training_lowers_l1_on_real_images(shared_data):
    torch.manual_seed(0)
    module, plan = masrnet.build_masrnet(_ctx())
    data = PairedSRDataset(_kather_pngs(shared_data, 4), scale=4)  # whole 224px HR, bicubic 56px LR
    batch = next(iter(DataLoader(data, batch_size=4)))

    def l1():
        with torch.no_grad():
            return torch.nn.functional.l1_loss(module(batch["lr"]), batch["hr"]).item()

    before = l1()
    steps = 30  # a few steps of the smoke build on real images (the smoke bench runs the plan's 600)
    trainer = L.Trainer(max_steps=steps * module.optimizer_steps_per_batch, accelerator="cpu",
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(module, train_dataloaders=DataLoader(data, batch_size=plan.batch_size))
    assert trainer.global_step == steps
    assert l1() < before
