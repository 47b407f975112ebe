"""Shared exact beds for the scaling tests: a 2-D four-component mixture and its tilts."""

from __future__ import annotations

import math

import torch

from diffsample.testbeds import GaussianMixture
from diffsample.testbeds.tilted import TiltedMixture, linear_reward, quadratic_reward, tilt

F64 = torch.float64


def prior() -> GaussianMixture:
    means = torch.tensor([[-2.0, 0.0], [2.0, 0.0], [0.0, 2.0], [0.0, -2.0]], dtype=F64)
    return GaussianMixture(means, torch.full((4,), 0.4, dtype=F64), torch.tensor([0.4, 0.3, 0.2, 0.1], dtype=F64))


def tilted(kind: str = "linear", alpha: float = 1.0) -> TiltedMixture:
    reward = linear_reward([1.0, 0.5]) if kind == "linear" else quadratic_reward([0.0, 2.0], 1.0)
    return tilt(prior(), reward, alpha)


def sigmas(n: int, top: float = 20.0, bottom: float = 1e-3) -> torch.Tensor:
    """``n`` log-spaced levels from ``top`` to ``bottom``, then 0."""
    return torch.cat([torch.logspace(math.log10(top), math.log10(bottom), n, dtype=F64), torch.zeros(1, dtype=F64)])
