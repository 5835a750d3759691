"""ManualGANSteps: the pixel phase moves G only, the adversarial step moves both and leaves D trainable;
Lightning's global_step counts optimizer_steps_per_batch per iteration."""
import lightning as L
import torch
from torch.utils.data import DataLoader

from tasks.sr.module import SRGANModule
from tests.benchmark._tiny import TinyD, TinySR


def _fit(module, steps):
    batch = {"lr": torch.rand(2, 3, 8, 8), "hr": torch.rand(2, 3, 32, 32), "index": torch.arange(2)}
    trainer = L.Trainer(accelerator="cpu", max_steps=steps * module.optimizer_steps_per_batch, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=0)
    trainer.fit(module, train_dataloaders=DataLoader([batch] * steps, batch_size=None))
    return trainer


def _copy(net):
    return [p.detach().clone() for p in net.parameters()]


def _moved(before, net):
    return any(not torch.equal(a, b) for a, b in zip(before, net.parameters()))


def test_pixel_phase_trains_only_the_generator():
    torch.manual_seed(0)
    m = SRGANModule(TinySR(4), TinyD(), 4, None, pretrain_steps=3, lr=1e-3)
    g, d = _copy(m.net), _copy(m.discriminator)
    trainer = _fit(m, 3)
    assert trainer.global_step == 6 and m.iteration == 3
    assert _moved(g, m.net) and not _moved(d, m.discriminator)


def test_adversarial_step_trains_both_and_leaves_d_trainable():
    torch.manual_seed(0)
    m = SRGANModule(TinySR(4), TinyD(), 4, None, pretrain_steps=0, lr=1e-3)
    g, d = _copy(m.net), _copy(m.discriminator)
    _fit(m, 2)
    assert _moved(g, m.net) and _moved(d, m.discriminator)
    assert all(p.requires_grad for p in m.discriminator.parameters())
