"""NLSA (tasks/dualsr/nlsa.py) against dense non-local attention, and its seeded hash rotations."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from tasks.dualsr.nlsa import NonLocalSparseAttention


def test_one_chunk_equals_dense_non_local_attention():
    """With one chunk covering every position, LSH attention is full attention (the chunk and its two
    neighbours are the same chunk: three copies of each key leave the softmax unchanged)."""
    torch.manual_seed(0)
    att = NonLocalSparseAttention(8, n_hashes=3, reduction=2, chunk_size=1000).double()
    x = torch.randn(2, 8, 5, 6, dtype=torch.float64)
    q = att.match(x).flatten(2).transpose(1, 2)
    v = att.assembly(x).flatten(2).transpose(1, 2)
    w = torch.softmax(q @ F.normalize(q, dim=-1, eps=5e-5).transpose(1, 2), -1)
    ref = (w @ v).transpose(1, 2).reshape(x.shape) + x
    assert torch.allclose(att(x), ref, atol=1e-12)


def test_buckets_restrict_attention_and_rotations_follow_the_step():
    torch.manual_seed(0)
    att = NonLocalSparseAttention(16, n_hashes=2, chunk_size=16)
    x = torch.randn(1, 16, 16, 16)                                     # L = 256: 16 chunks, 16 buckets
    a0 = att(x)
    assert torch.equal(att(x), a0)                                     # same step: same hashes, same output
    att.set_hash_step(1)
    a1 = att(x)
    assert not torch.allclose(a1, a0)                                  # new rotations
    att.set_hash_step(0)
    assert torch.equal(att(x), a0)
    dense = NonLocalSparseAttention(16, n_hashes=2, chunk_size=10_000)
    dense.load_state_dict(att.state_dict())
    assert not torch.allclose(dense(x), a0, atol=1e-4)                 # sparse != dense at L > 3 chunks


def test_small_inputs_use_one_chunk():
    att = NonLocalSparseAttention(8, chunk_size=144)
    assert att(torch.randn(1, 8, 4, 4)).shape == (1, 8, 4, 4)         # L = 16 < 144: the official code fails
