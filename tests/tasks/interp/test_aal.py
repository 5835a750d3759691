"""SSAN's synthesis layers: Table 2 parameter counts, identity at initialisation, and the sparse
groupings against an explicit index-set reference."""
import pytest
import torch

from tasks.interp.aal import AttentionAwareLayer, KernelEstimationLayer, SelfAttention, SparseSelfAttention


def _n(m):
    return sum(p.numel() for p in m.parameters())


def test_table2_parameter_counts_on_64_channels():
    # SSAN Table 2 (1 x 64 x 512 x 512): SA 0.0052 M, SSA 0.0104 M, AAL 0.0156 M; KEL "-" (spec: ~0.507 M)
    assert (_n(SelfAttention(64)), _n(SparseSelfAttention(64)), _n(AttentionAwareLayer(64))) == (5201, 10402, 15603)
    assert [round(_n(m) / 1e6, 4) for m in (SelfAttention(64), SparseSelfAttention(64), AttentionAwareLayer(64))] \
        == [0.0052, 0.0104, 0.0156]
    assert _n(KernelEstimationLayer(64, 51)) == 4 * (36928 + 36928 + 29427 + 23460) == 506972


@pytest.mark.parametrize("layer", [SelfAttention(16), SparseSelfAttention(16), AttentionAwareLayer(16)])
def test_gamma_zero_is_identity(layer):
    x = torch.randn(2, 16, 32, 32)
    assert torch.equal(layer(x), x)


def _set_gammas(layer, value=0.7):
    for m in layer.modules():
        if isinstance(m, SelfAttention):
            m.gamma.data.fill_(value)


def _sa_on_set(sa, x, idx):
    """SA block applied to the positions ``idx`` (flat indices) of x (C, N), in place."""
    xs = x[:, idx]
    q = sa.query.weight[:, :, 0, 0] @ xs + sa.query.bias[:, None]
    k = sa.key.weight[:, :, 0, 0] @ xs + sa.key.bias[:, None]
    v = sa.value.weight[:, :, 0, 0] @ xs + sa.value.bias[:, None]
    attn = torch.softmax(q.T @ k, dim=-1)
    x[:, idx] = sa.gamma * (v @ attn.T) + xs


def test_aal_equals_explicit_index_sets():
    """AAL = L2-long SA over positions with equal (i mod 8, j mod 8) and equal (i//8 mod 4, j//8 mod 4),
    then L2-short SA over equal (i mod 8, j mod 8, i//32, j//32), then L1-short SA over 8x8 blocks."""
    torch.manual_seed(0)
    aal = AttentionAwareLayer(8, outer=8, inner=4)
    _set_gammas(aal)
    h = w = 64
    x = torch.randn(1, 8, h, w)
    ii, jj = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    ii, jj = ii.flatten(), jj.flatten()
    ref = x[0].flatten(1).clone()
    with torch.no_grad():
        def groups(key):
            keys = torch.stack(key, 1)
            return [torch.nonzero((keys == k).all(1)).flatten() for k in torch.unique(keys, dim=0)]

        for idx in groups([ii % 8, jj % 8, (ii // 8) % 4, (jj // 8) % 4]):
            _sa_on_set(aal.long.long, ref, idx)
        for idx in groups([ii % 8, jj % 8, ii // 32, jj // 32]):
            _sa_on_set(aal.long.short, ref, idx)
        for idx in groups([ii // 8, jj // 8]):
            _sa_on_set(aal.short, ref, idx)
        out = aal(x)
    torch.testing.assert_close(out[0].flatten(1), ref, atol=1e-5, rtol=1e-4)


def test_ssa_every_position_reaches_every_other():
    """Two hops (long then short) connect all positions: the Jacobian of one output pixel is dense."""
    ssa = SparseSelfAttention(4, partitions=4)
    _set_gammas(ssa, 1.0)
    x = torch.randn(1, 4, 16, 16, requires_grad=True)
    ssa(x)[0, :, 5, 9].sum().backward()
    assert (x.grad.abs().sum(1) > 0).all()


def test_size_constraints_raise():
    with pytest.raises(ValueError, match="divisible by 32"):
        AttentionAwareLayer(8)(torch.zeros(1, 8, 48, 64))
    with pytest.raises(ValueError, match="divisible by 8"):
        SparseSelfAttention(8)(torch.zeros(1, 8, 20, 16))


def test_kel_synthesizes_with_its_kernels():
    kel = KernelEstimationLayer(4, kernel_size=3, hidden=4)
    img = torch.rand(1, 1, 8, 8)
    kv = torch.zeros(1, 3, 8, 8)
    kh = torch.zeros(1, 3, 8, 8)
    kv[:, 1], kh[:, 1] = 1, 1                                          # centre tap: the identity filter
    torch.testing.assert_close(kel.synthesize(img, kv, kh), img)
    (kv0, kh0), (kv1, kh1) = kel(torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8))
    assert kv0.shape == kh1.shape == (1, 3, 8, 8)
