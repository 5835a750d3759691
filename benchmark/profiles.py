"""Run profiles.  ``smoke``: tiny widths, few steps, real data samples, CPU, minutes.  ``paper``: the
papers' settings, for GPUs.  Both go through the same builders; only the numbers differ: each method
file holds its PAPER and SMOKE settings.  Smoke runs use lr 1e-3 (10x the papers' 1e-4) and 40-100
pixel-loss iterations, so that learned rows land well above noise in seconds; GAN phases stay a few
iterations long (they only have to run)."""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass


@dataclass(frozen=True)
class ProfileSettings:
    name: str
    test_limit: int | None      # evaluate on the first N test images of the split (None = all)
    num_workers: int
    allow_random_vgg: bool      # smoke may run perceptual losses on a random VGG (and says so)
    log_every_n_steps: int
    ckpt_every_n_steps: int     # checkpoint interval (iterations) unless the method's TrainPlan sets one; each
                                # save costs ~25 ms on CPU, a third of a smoke step of a small network


PROFILES = {
    "smoke": ProfileSettings("smoke", test_limit=20, num_workers=0, allow_random_vgg=True, log_every_n_steps=1,
                           ckpt_every_n_steps=50),
    "paper": ProfileSettings("paper", test_limit=None, num_workers=min(8, os.cpu_count() or 1), allow_random_vgg=False, log_every_n_steps=50,
                           ckpt_every_n_steps=2000),
}


def get_profile(name: str) -> ProfileSettings:
    try:
        prof = PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}: expected one of {sorted(PROFILES)}") from None
    limit = os.environ.get("MIRBENCH_TEST_LIMIT")  # `run --test-limit N`: evaluate on the first N test images
    return dataclasses.replace(prof, test_limit=int(limit)) if limit else prof
