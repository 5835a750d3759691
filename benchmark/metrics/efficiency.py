"""Model cost: parameters, FLOPs at a stated input size, latency and peak memory per image."""
from __future__ import annotations

import statistics
import time

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(module: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


@torch.no_grad()
def count_flops(net: nn.Module, example: torch.Tensor) -> int:
    """FLOPs of one forward pass (torch's counter: a multiply-add = 2 FLOPs; conv/matmul/attention)."""
    with FlopCounterMode(display=False) as counter:
        net(example)
    return int(counter.get_total_flops())


@torch.no_grad()
def latency_ms(net: nn.Module, example: torch.Tensor, warmup: int = 1, repeats: int = 3,
               slow_s: float = 1.0) -> float:
    """Median wall time of one forward pass on ``example`` (one image), in milliseconds.  A network whose
    warm-up pass took over ``slow_s`` seconds is timed once (a CPU smoke CSNL pass takes 3.5 s)."""
    sync = torch.cuda.synchronize if example.is_cuda else (lambda: None)
    t0 = time.perf_counter()
    for _ in range(warmup):
        net(example)
    sync()
    if warmup and (time.perf_counter() - t0) / warmup > slow_s:
        repeats = 1
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        net(example)
        sync()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


@torch.no_grad()
def peak_memory_mb(net: nn.Module, example: torch.Tensor) -> float | None:
    """Peak CUDA memory of one forward pass; None on CPU (no allocator statistics there)."""
    if not example.is_cuda:
        return None
    torch.cuda.reset_peak_memory_stats(example.device)
    base = torch.cuda.memory_allocated(example.device)
    net(example)
    torch.cuda.synchronize(example.device)
    return (torch.cuda.max_memory_allocated(example.device) - base) / 2 ** 20


def measure(net: nn.Module, example: torch.Tensor, repeats: int = 3) -> dict:
    """All four numbers for the leaderboard; the input size is recorded with them."""
    was_training = net.training
    net.eval()
    try:
        out = {"params_m": count_params(net) / 1e6, "flops_g": count_flops(net, example) / 1e9,
               "latency_ms": latency_ms(net, example, repeats=repeats),
               "peak_mem_mb": peak_memory_mb(net, example), "input": "x".join(map(str, example.shape)),
               "device": str(example.device)}
    finally:
        net.train(was_training)
    return out
