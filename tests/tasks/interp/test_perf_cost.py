"""Table 2 cost script: parameter counts equal the paper's, FLOPs extrapolated exactly to 512x512 agree
with 81.24 / 10.42 G within 1 %, and the a*N^2 + b*N fit reproduces a third measured size."""
import pytest
import torch

from tasks.interp import perf_cost


def test_parameters_equal_table2():
    counts = {k: sum(p.numel() for p in m.parameters()) for k, m in perf_cost.layers().items()}
    assert (counts["SA"], counts["SSA"], counts["AAL"]) == (5201, 10402, 15603)
    for k in ("SA", "SSA", "AAL"):
        assert round(counts[k] / 1e6, 4) == perf_cost.PAPER[k]["params_m"]


@pytest.mark.parametrize("name,paper", [("SSA", 81.24), ("AAL", 10.42)])
def test_flops_extrapolate_to_the_paper(name, paper):
    torch.manual_seed(0)
    net = perf_cost.layers()[name].eval()
    counts = {s * s: perf_cost.paper_flops(net, torch.randn(1, 64, s, s)) for s in (32, 64)}
    g512 = perf_cost.fit_and_extrapolate(name, counts, 512 * 512) / 1e9
    assert abs(g512 - paper) / paper < 0.01
    closed = (72 * perf_cost.affinity_entries(name, 512 * 512) + 5200 * {"SSA": 2, "AAL": 3}[name] * 512 * 512) / 1e9
    assert g512 == pytest.approx(closed, rel=1e-9)
    # the fit is exact: a third size is predicted to the MAC
    assert perf_cost.fit_and_extrapolate(name, counts, 96 * 96) == perf_cost.paper_flops(net, torch.randn(1, 64, 96, 96))


def test_paper_flops_adds_conv_biases_to_macs():
    net = torch.nn.Conv2d(64, 8, 1)
    x = torch.randn(1, 64, 4, 4)
    assert perf_cost.paper_flops(net, x) == 16 * 64 * 8 + 16 * 8
