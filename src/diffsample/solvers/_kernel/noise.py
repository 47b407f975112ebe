"""Noise handling shared by the stochastic solvers: a noise source is required, never a global RNG.

Interval sources (Brownian trees, :mod:`diffsample.noise_tree`) return the same draw for the same
interval; solvers that need fresh draws at levels other draws already covered (EDM's churn, restarts,
Langevin corrections) refuse them with :func:`require_fresh_noise`.
"""

from __future__ import annotations

import math

import torch

from ...contracts import NoiseSource
from ...errors import DiffsampleError


def require_noise(noise: NoiseSource | None, solver: str, why: str) -> NoiseSource:
    """Return ``noise``, or raise asking for a noise source when it is ``None``."""
    if noise is None:
        raise DiffsampleError(
            f"solver {solver!r} draws random noise ({why}) and never uses a global RNG: pass a noise source, "
            "e.g. noise=diffsample.noise.seeded(seed), or brownian(seed) from diffsample.noise_tree"
        )
    return noise


def require_fresh_noise(noise: NoiseSource | None, solver: str, why: str) -> NoiseSource:
    """Like :func:`require_noise`, and refuse interval sources (Brownian trees) where fresh draws are needed."""
    require_noise(noise, solver, why)
    if getattr(noise, "interval_noise", False):
        raise DiffsampleError(
            f"solver {solver!r} needs fresh noise ({why}), but {type(noise).__name__} returns the same noise "
            "for the same interval; use noise=diffsample.noise.seeded(seed)"
        )
    return noise


def draw(noise: NoiseSource, x: torch.Tensor, sigma: float, sigma_next: float) -> torch.Tensor:
    """``noise(x, σ, σ')`` checked to have x's shape, in x's dtype and device."""
    z = noise(x, sigma, sigma_next)
    if z.shape != x.shape:
        raise DiffsampleError(f"the noise source returned shape {tuple(z.shape)} for x of shape {tuple(x.shape)}")
    return z.to(dtype=x.dtype, device=x.device)


def check_nonnegative(value: float, name: str) -> float:
    """``value`` as a float, or raise unless it is finite and ``>= 0`` (``eta``, ``s_noise``, ``snr`` …)."""
    value = float(value)
    if not (math.isfinite(value) and value >= 0):
        raise DiffsampleError(f"{name} must be a finite number >= 0, got {value}")
    return value
