"""A 1-d unnormalised density tabulated on a fine grid: exact moments, masses, normaliser and W1 to samples.

The exact reference for targets known only up to a constant (``p^β``, ``p_1 p_2``, ``p_1^{1−γ} p_2^γ`` of
Gaussian mixtures): the trapezoid rule on ``n`` points of ``[lo, hi]`` (error ``O(h²)``; far below Monte-Carlo
error at the default 20 001 points when the density is negligible outside the interval).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ..errors import DiffsampleError

__all__ = ["GridDensity"]

_F64 = torch.float64


class GridDensity:
    """``q(x) ∝ exp(log_density(x))`` on ``[lo, hi]`` (``log_density`` maps a ``(n,)`` float64 grid to ``(n,)``)."""

    def __init__(
        self, log_density: Callable[[torch.Tensor], torch.Tensor], lo: float, hi: float, n: int = 20001
    ) -> None:
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi) or n < 3:
            raise DiffsampleError(f"need finite lo < hi and n >= 3 grid points, got lo={lo}, hi={hi}, n={n}")
        self.grid = torch.linspace(lo, hi, n, dtype=_F64)
        self.step = (hi - lo) / (n - 1)
        log_q = log_density(self.grid).to(_F64).reshape(-1)
        top = float(log_q.max())
        q = torch.exp(log_q - top)
        trap = torch.full_like(q, self.step)
        trap[0] = trap[-1] = self.step / 2
        mass = float((q * trap).sum())
        self.log_normalizer = top + math.log(mass)
        """``log ∫ exp(log_density)``."""
        self.density = q / mass
        self._weights = self.density * trap
        cdf = torch.cumsum(self._weights, 0)
        self.cdf = cdf / cdf[-1]

    @property
    def mean(self) -> float:
        return float((self._weights * self.grid).sum())

    @property
    def variance(self) -> float:
        return float((self._weights * (self.grid - self.mean).square()).sum())

    def mass_above(self, threshold: float) -> float:
        """``P(X > threshold)``."""
        return float(self._weights[self.grid > threshold].sum())

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``(n,)`` exact draws (inverse CDF, linear between grid points)."""
        u = torch.rand(n, generator=generator, dtype=_F64)
        idx = torch.searchsorted(self.cdf, u).clamp(1, len(self.grid) - 1)
        c0, c1 = self.cdf[idx - 1], self.cdf[idx]
        frac = ((u - c0) / (c1 - c0).clamp_min(1e-300)).clamp(0, 1)
        return self.grid[idx - 1] + frac * self.step

    def wasserstein1(self, samples: torch.Tensor) -> float:
        """``W1 = ∫ |F_n(x) − F(x)| dx`` between the empirical law of ``samples`` (``(n,)``) and this density."""
        s = torch.sort(samples.to(_F64).reshape(-1)).values
        emp = torch.searchsorted(s, self.grid, right=True).to(_F64) / s.numel()
        outside = float(torch.clamp(self.grid[0] - s, min=0).sum() + torch.clamp(s - self.grid[-1], min=0).sum())
        return float((emp - self.cdf).abs().sum() * self.step) + outside / s.numel()
