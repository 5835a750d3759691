"""Dual SR tests run single-threaded: on a shared, oversubscribed CPU, torch's OpenMP threads spin-wait
and a 0.06 s training step of a tiny network takes seconds (measured: 60x CPU time at 2 threads)."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
