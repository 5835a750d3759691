"""Tiny real SR networks and methods for runner tests run in subprocesses (interrupt, DDP, resume)."""
from torch import nn

from benchmark.registry import load_task
from benchmark.specs import MethodSpec, TrainPlan
from tasks.common.losses import PerceptualLoss
from tasks.sr.module import SRGANModule, SRModule


class TinySR(nn.Module):
    def __init__(self, scale):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(8, 3 * scale * scale, 3, padding=1), nn.PixelShuffle(scale))

    def forward(self, x):
        return self.body(x)


class TinyD(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 4, 2, 1), nn.LeakyReLU(0.2), nn.Conv2d(8, 1, 4, 2, 1))

    def forward(self, x):
        return self.body(x).mean((1, 2, 3))


def register_tiny(module_cls=SRModule, steps: int = 8, dataset: str = "kather_x4", **spec):
    def build(ctx):
        return module_cls(TinySR(ctx.scale), ctx.scale, lr=1e-3), TrainPlan(max_steps=steps, batch_size=2, patch_size=32, ckpt_every_n_steps=2)
    load_task("sr").METHODS["tiny"] = MethodSpec("Tiny", "baseline", build, "none", (dataset,), **spec)


def register_tiny_gan(module_cls=SRGANModule, steps: int = 8, pretrain: int = 2, dataset: str = "kather_x4",
                      perceptual: bool = True):
    """A GAN with a (random, smoke) VGG perceptual loss: pixel pre-training then adversarial steps."""
    def build(ctx):
        per = PerceptualLoss(("relu2_2",), allow_random=True, weights_dir=ctx.weights_dir) if perceptual else None
        module = module_cls(TinySR(ctx.scale), TinyD(), ctx.scale, per, w_pix=1.0, w_per=0.1, w_adv=1e-2,
                            gan="ragan", pretrain_steps=pretrain, lr=1e-3)
        return module, TrainPlan(max_steps=steps, batch_size=2, patch_size=32, ckpt_every_n_steps=2)
    load_task("sr").METHODS["tiny_gan"] = MethodSpec("Tiny GAN", "baseline", build, "none", (dataset,))
