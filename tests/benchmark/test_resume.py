"""Resume safety without training: config hash, frozen networks left out of checkpoints, seeds."""
import pytest
import torch

from benchmark.callbacks import ConfigChangedError, ExactResume, config_hash, mix_seed
from tasks.common.losses import PerceptualLoss
from tasks.sr.module import SRGANModule
from tests.benchmark._tiny import TinyD, TinySR


def test_config_hash_is_stable_and_sensitive():
    cfg = {"plan": {"max_steps": 8, "batch_size": 2}, "seed": 0, "hparams": {"lr": 1e-3, "betas": (0.9, 0.99)}}
    assert config_hash(cfg) == config_hash({**cfg})
    assert config_hash(cfg) != config_hash({**cfg, "seed": 1})
    assert config_hash({"f": TinyD()}) == config_hash({"f": TinyD()})  # objects by type, never by address
    assert mix_seed(0, "step", 4, 0) != mix_seed(0, "step", 5, 0) and mix_seed(1, 2) == mix_seed(1, 2)


def test_resuming_under_another_config_is_one_clear_error(tmp_path):
    old = ExactResume(0, {"plan": {"max_steps": 8}, "hparams": {"lr": 1e-3}})
    ckpt = {"global_step": 8}
    old.on_save_checkpoint(None, None, ckpt)
    torch.save(ckpt, tmp_path / "last.ckpt")
    assert old.check(tmp_path / "last.ckpt") == {"iteration": 8}
    new = ExactResume(0, {"plan": {"max_steps": 8}, "hparams": {"lr": 2e-3}})
    with pytest.raises(ConfigChangedError, match=r"differs in: hparams.*--force"):
        new.check(tmp_path / "last.ckpt")


def test_checkpoints_leave_out_the_frozen_vgg_and_reload_it(tmp_path):
    def make():
        per = PerceptualLoss(("relu2_2",), allow_random=True, weights_dir=tmp_path)
        return SRGANModule(TinySR(4), TinyD(), 4, per)
    module = make()
    ckpt = {"state_dict": module.state_dict()}
    assert any(k.startswith("perceptual.vgg.") for k in ckpt["state_dict"])
    module.on_save_checkpoint(ckpt)
    assert not any(k.startswith("perceptual.") for k in ckpt["state_dict"])
    assert any(k.startswith("net.") for k in ckpt["state_dict"]) and any(k.startswith("discriminator.") for k in ckpt["state_dict"])
    other = make()
    other.on_load_checkpoint(ckpt)
    other.load_state_dict(ckpt["state_dict"])  # strict: the VGG keys were filled back in
    for (k, a), b in zip(module.state_dict().items(), other.state_dict().values()):
        assert torch.equal(a, b), k
