import torch
from torch import nn

from tasks.sr.wa_srgan import (PAPER, WassersteinCritic, WideAttentionGenerator, WideResidualBlock, build_wa_srgan,
                               gradient_penalty)


def _count(m):
    return sum(p.numel() for p in m.parameters())


def test_paper_generator_structure():
    """16 wide (x2) weight-normalised residual blocks, self-attention before the upsampler."""
    g = WideAttentionGenerator(nf=64, n_blocks=PAPER["n_blocks"], widen=PAPER["widen"], scale=4)
    blocks = [m for m in g.body if isinstance(m, WideResidualBlock)]
    assert len(blocks) == 16
    wide = blocks[0].body[0]
    assert (wide.in_channels, wide.out_channels) == (64, 128)
    assert hasattr(wide.parametrizations, "weight")  # weight normalisation, no BN anywhere
    assert not any(isinstance(m, nn.BatchNorm2d) for m in g.modules())
    assert [type(m).__name__ for m in g.children()] == ["Sequential", "Sequential", "SelfAttention2d", "Sequential"]
    assert _count(g) == 2_734_247


def test_generator_output_shape():
    g = WideAttentionGenerator(nf=8, n_blocks=1, scale=4)
    assert g(torch.rand(2, 3, 6, 5)).shape == (2, 3, 24, 20)


def test_critic_is_size_agnostic_without_batch_norm():
    critic = WassersteinCritic(3, 8)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in critic.modules())
    assert critic(torch.rand(3, 3, 32, 32)).shape == critic(torch.rand(3, 3, 48, 40)).shape == (3, 1)


def test_gradient_penalty_of_a_linear_critic():
    """D(x) = <w, x> has grad w at every point, so the penalty is exactly (||w|| - 1)^2."""
    w = torch.randn(1, 3, 4, 4)

    class Linear(nn.Module):
        def forward(self, x):
            return (x * w).flatten(1).sum(1, keepdim=True)

    gp = gradient_penalty(Linear(), torch.rand(5, 3, 4, 4), torch.rand(5, 3, 4, 4))
    assert torch.allclose(gp, (w.norm() - 1) ** 2)


def test_smoke_schedule_pretrain_then_five_critic_steps_per_generator_step(real_batch, fit, smoke_ctx, param_moves):
    module, plan = build_wa_srgan(smoke_ctx())
    assert "no pretrained VGG19, perceptual term off" in plan.notes
    module.hparams.pretrain_steps = 4                   # the phases, shortened
    pre, n_critic = module.hparams.pretrain_steps, module.hparams.n_critic
    steps = pre + 10
    moves = param_moves(lambda m: (m.net.parameters(), m.discriminator.parameters()))
    trainer = fit(module, real_batch(4, plan.patch_size), steps, [moves])
    assert trainer.global_step == 2 * steps
    g, d = [r[0] for r in moves.rows], [r[1] for r in moves.rows]
    assert g[:pre] == [True] * pre and d[:pre] == [False] * pre                  # MSE pre-training
    gan = range(steps - pre)
    assert d[pre:] == [True for _ in gan]                                        # a critic step every batch
    assert g[pre:] == [i % n_critic == n_critic - 1 for i in gan]                # G after every 5th
    assert module.optimizers()[0].optimizer.param_groups[0]["betas"] == (0.0, 0.9)


def test_pretraining_lowers_the_mse(real_batch, fit, smoke_ctx, pixel_error):
    module, plan = build_wa_srgan(smoke_ctx())
    module.hparams.pretrain_steps, module.hparams.lr = 20, 2e-3
    batch = real_batch(4, plan.patch_size)
    before = pixel_error(module, batch, nn.functional.mse_loss)
    fit(module, batch, 20)
    assert pixel_error(module, batch, nn.functional.mse_loss) < 0.5 * before
