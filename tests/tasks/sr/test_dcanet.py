from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from benchmark.specs import BuildContext
from datamodules.sr_pairs import PairedSRDataset
from tasks.sr import dcanet
from tasks.sr.dcanet import ConnectedChannelAttention, DCARCAN


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _ctx(profile="smoke"):
    return BuildContext("sr", "pathimgsr_x4", profile, 4, 3, Path("/nonexistent-weights"))


def test_paper_size_parameter_counts():
    cfg = dcanet.PAPER
    kwargs = dict(nf=cfg["nf"], n_groups=cfg["n_groups"], n_blocks=cfg["n_blocks"], reduction=cfg["reduction"], scale=4)
    assert (cfg["nf"], cfg["n_groups"], cfg["n_blocks"], cfg["reduction"]) == (64, 10, 20, 16)
    plain = DCARCAN(connected=False, **kwargs)
    # RCAN x4: the official code reports 15,592,379 = these + its 24 frozen MeanShift conv weights
    assert _count(plain) == 15_592_355
    from tasks.sr.rcan import RCAN
    assert _count(RCAN()) == _count(plain)
    # each of the 199 attentions with a predecessor gets a 1x1 conv over (g_i, a_{i-1}) and a LayerNorm
    assert _count(DCARCAN(**kwargs)) == 15_592_355 + 199 * (3 + 2 * 64)


def test_attention_connection_is_the_official_dca_se():
    torch.manual_seed(0)
    att = ConnectedChannelAttention(16, reduction=4)
    x, previous = torch.randn(2, 16, 5, 6), torch.rand(2, 16)
    out, passed_on = att(x, previous)
    conv, norm = att.connect[0], att.connect[1]
    g = x.mean((2, 3))
    fused = torch.relu(norm(conv.weight[0, 0] * g + conv.weight[0, 1] * previous + conv.bias))
    gate = torch.sigmoid(att.fc2(torch.relu(att.fc1(fused[:, :, None, None])))).flatten(1)
    torch.testing.assert_close(out, x * gate[:, :, None, None])
    torch.testing.assert_close(passed_on, g * gate)             # extraction x attention goes to the next block
    first_out, _ = att(x, None)                                 # no predecessor: plain squeeze-excitation
    plain_gate = torch.sigmoid(att.fc2(torch.relu(att.fc1(g[:, :, None, None]))))
    torch.testing.assert_close(first_out, x * plain_gate)
    assert not torch.allclose(out, first_out)


def test_context_flows_through_every_block_across_groups():
    torch.manual_seed(1)
    net = DCARCAN(nf=8, n_groups=2, n_blocks=2, reduction=2)
    blocks = [b for g in net.groups for b in g.blocks]
    assert blocks[0].attention.connect is None and all(b.attention.connect is not None for b in blocks[1:])
    seen = []
    for b in blocks:
        b.attention.register_forward_hook(lambda m, args, out: seen.append((args[1] is not None, out[1])))
    y = net(torch.rand(1, 3, 6, 6))
    assert y.shape == (1, 3, 24, 24)
    assert [s[0] for s in seen] == [False, True, True, True]
    # the last block's input context depends on the first block: a gradient reaches the first attention
    seen[-1][1].sum().backward()
    assert blocks[0].attention.fc1.weight.grad.abs().sum() > 0


def test_smoke_training_on_real_images_reduces_l1(shared_data):
    torch.manual_seed(0)
    module, plan = dcanet.build_dcanet(_ctx())
    files = sorted((shared_data / "kather" / "CRC-VAL-HE-7K").glob("*/*.png"))[::8][:4]
    data = PairedSRDataset(files, scale=4, patch=plan.patch_size)
    batch = next(iter(DataLoader(data, batch_size=4)))

    def l1():
        with torch.no_grad():
            return F.l1_loss(module(batch["lr"]), batch["hr"]).item()

    before = l1()
    steps = 30  # a few steps of the smoke build on real images (the smoke bench runs the plan's 600)
    trainer = L.Trainer(max_steps=steps, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(module, train_dataloaders=DataLoader(data, batch_size=plan.batch_size))
    assert trainer.global_step == steps
    assert l1() < before


def test_paper_table_protocol_and_own_recipe_is_rcans():
    _, plan = dcanet.build_dcanet(_ctx("paper"))          # Table 1: MASRGAN's one protocol for every row
    assert (plan.max_steps, plan.batch_size, plan.patch_size) == (20_000, 16, 128)
    module, plan = dcanet.build_dcanet(_ctx("paper"), recipe="own")
    hp = module.hparams
    assert (plan.max_steps, plan.batch_size, plan.patch_size) == (1_000_000, 16, 192)
    assert (hp.lr, tuple(hp.betas), tuple(hp.milestones), hp.gamma, hp.loss) == (
        1e-4, (0.9, 0.999), (200_000, 400_000, 600_000, 800_000), 0.5, "l1")


def test_registered():
    from tasks.sr.registry import METHODS

    spec = METHODS["dcanet"]
    assert (spec.label, spec.kind, spec.paper, spec.table) == ("DCANet", "baseline", "masrgan", "Table 1")
    assert spec.needs == ("nrqm",)  # PI as the paper reports it
    assert (spec.fidelity, spec.protocol) == ("hosted", "table")
    assert spec.datasets == ("pathimgsr_x4",) and spec.build is dcanet.build_dcanet
