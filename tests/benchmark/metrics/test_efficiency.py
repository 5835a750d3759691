import pytest
import torch
from torch import nn

from benchmark.metrics.efficiency import count_flops, count_params, measure


def test_params_and_flops_of_a_conv():
    net = nn.Conv2d(3, 8, 3, padding=1)
    assert count_params(net) == 3 * 8 * 9 + 8
    # torch counts a multiply-add as 2 FLOPs: 2 * Cin * Cout * k * k * H * W
    assert count_flops(net, torch.rand(1, 3, 16, 16)) == 2 * 3 * 8 * 9 * 16 * 16


def test_measure_reports_input_size_and_cpu_memory_as_unavailable():
    out = measure(nn.Conv2d(3, 3, 3, padding=1), torch.rand(1, 3, 20, 24), repeats=2)
    assert out["input"] == "1x3x20x24"
    assert out["latency_ms"] > 0
    assert out["peak_mem_mb"] is None
    assert out["params_m"] == pytest.approx(84 / 1e6)


class _Counted(nn.Module):
    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return x


def test_a_slow_network_is_timed_once_after_its_warm_up():
    from benchmark.metrics.efficiency import latency_ms
    fast, slow = _Counted(), _Counted()
    latency_ms(fast, torch.rand(1), repeats=3)
    latency_ms(slow, torch.rand(1), repeats=3, slow_s=0.0)
    assert (fast.calls, slow.calls) == (4, 2)
