import pytest
import torch
from torch import nn

from tasks.common.layers import PixelShuffleUpsampler, SelfAttention2d


@pytest.mark.parametrize("scale, convs", [(2, 1), (3, 1), (4, 2), (8, 3)])
def test_pixel_shuffle_upsampler(scale, convs):
    up = PixelShuffleUpsampler(8, scale, act=nn.PReLU)
    assert sum(isinstance(m, nn.Conv2d) for m in up) == convs
    assert sum(isinstance(m, nn.PReLU) for m in up) == convs
    assert up(torch.rand(1, 8, 5, 6)).shape == (1, 8, 5 * scale, 6 * scale)


def test_pixel_shuffle_upsampler_rejects_other_scales():
    with pytest.raises(ValueError):
        PixelShuffleUpsampler(8, 5)


def test_self_attention_starts_as_identity():
    att = SelfAttention2d(16)
    x = torch.rand(2, 16, 6, 7)
    assert torch.equal(att(x), x)


def test_self_attention_matches_sagan_formula():
    """o_j = sum_i softmax_i(q_j . k_i) v_i (no temperature), y = x + gamma * o (SAGAN Eq. 1-3)."""
    att = SelfAttention2d(16)
    att.gamma.data.fill_(0.7)
    x = torch.rand(2, 16, 5, 4)
    q, k, v = (f(x).flatten(2) for f in (att.query, att.key, att.value))     # B, C', N
    beta = torch.softmax(q.transpose(1, 2) @ k, dim=-1)                       # B, N(query), N(key)
    o = (v @ beta.transpose(1, 2)).view_as(x)
    assert torch.allclose(att(x), x + 0.7 * o, atol=1e-5)
