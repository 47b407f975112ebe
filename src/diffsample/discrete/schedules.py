"""Masking schedules ``α_t``: the probability that a token is still visible at time ``t ∈ [0, 1]``.

Forward process (absorbing state; Austin et al. 2021, D3PM; Sahoo et al. 2024, MDLM; Shi et al. 2024, MD4):
each token is independently replaced by the mask with probability ``1 - α_t``, with ``α_0 = 1`` and ``α_1 = 0``
(or nearly) and ``α`` decreasing. Reverse process from ``t`` to ``s < t``: a masked position becomes visible
with probability ``(α_s - α_t) / (1 - α_t)`` (:meth:`MaskingSchedule.reveal_probability`).

Schedules are values: :func:`linear` ``α = 1 - t``, :func:`cosine` ``α = 1 - cos(π/2 · (1 - t))`` (MD4),
:func:`log_linear` ``α = 1 - (1 - ε) t`` (MDLM/SEDD's log-linear noise ``σ(t) = -log(1 - (1 - ε) t)``), or
:func:`custom` for any callable, validated on a grid. With an exact (time-free) denoiser the schedule only
matters through the times a sampler visits.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..errors import DiffsampleError

__all__ = ["MaskingSchedule", "SCHEDULES", "cosine", "custom", "linear", "log_linear", "time_grid"]

AlphaFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class MaskingSchedule:
    """``α(t)`` (float64 in, float64 out) with a name; ``inverse`` maps ``α`` back to ``t`` (bisection when not
    given in closed form)."""

    name: str
    alpha_fn: AlphaFn
    inverse_fn: AlphaFn | None = None

    def alpha(self, t: torch.Tensor | float) -> torch.Tensor:
        """``α_t`` in float64."""
        return self.alpha_fn(torch.as_tensor(t, dtype=torch.float64))

    def inverse(self, alpha: torch.Tensor | float) -> torch.Tensor:
        """The time ``t`` with ``α_t = alpha`` (clamped to ``[0, 1]``)."""
        a = torch.as_tensor(alpha, dtype=torch.float64)
        if self.inverse_fn is not None:
            return self.inverse_fn(a).clamp(0.0, 1.0)
        lo, hi = torch.zeros_like(a), torch.ones_like(a)
        for _ in range(60):  # α decreasing: α(mid) > a means t lies above mid
            mid = (lo + hi) / 2
            above = self.alpha(mid) > a
            lo, hi = torch.where(above, mid, lo), torch.where(above, hi, mid)
        return (lo + hi) / 2

    def reveal_probability(self, t: torch.Tensor | float, s: torch.Tensor | float) -> torch.Tensor:
        """``(α_s - α_t) / (1 - α_t)``: the chance that a position masked at ``t`` is visible at ``s < t``."""
        a_t, a_s = self.alpha(t), self.alpha(s)
        return ((a_s - a_t) / (1.0 - a_t)).clamp(0.0, 1.0)

    def reveal_rate(self, t: torch.Tensor | float) -> torch.Tensor:
        """The reverse jump rate out of the mask, ``−α'_t / (1 − α_t)`` (``α'`` by autograd, so any schedule
        written in torch operations has it)."""
        t = torch.as_tensor(t, dtype=torch.float64).detach().clone().requires_grad_(True)
        a = self.alpha(t)
        (slope,) = torch.autograd.grad(a.sum(), t)
        return (-slope / (1.0 - a.detach())).detach()


def linear() -> MaskingSchedule:
    """``α_t = 1 - t``."""
    return MaskingSchedule("linear", lambda t: 1.0 - t, lambda a: 1.0 - a)


def cosine() -> MaskingSchedule:
    """``α_t = 1 - cos(π/2 · (1 - t)) = 1 - sin(π t / 2)`` (Shi et al. 2024, MD4; the sine form is exact at the
    ends)."""
    return MaskingSchedule(
        "cosine", lambda t: 1.0 - torch.sin(math.pi / 2 * t), lambda a: torch.asin(1.0 - a) * (2 / math.pi)
    )


def log_linear(eps: float = 1e-3) -> MaskingSchedule:
    """``α_t = 1 - (1 - ε) t``: MDLM/SEDD's log-linear noise ``σ(t) = -log(1 - (1 - ε) t)``, ``α = e^{-σ}``."""
    if not 0.0 <= eps < 1.0:
        raise DiffsampleError(f"log_linear: eps must lie in [0, 1), got {eps}")
    return MaskingSchedule(f"log_linear({eps:g})", lambda t: 1.0 - (1.0 - eps) * t, lambda a: (1.0 - a) / (1.0 - eps))


def custom(alpha: AlphaFn, name: str = "custom", grid: int = 1025) -> MaskingSchedule:
    """A schedule from any callable ``α(t)`` on float64 tensors, checked on ``grid`` points: ``α_0 = 1``,
    ``α`` non-increasing, values in ``[0, 1]``."""
    t = torch.linspace(0.0, 1.0, grid, dtype=torch.float64)
    a = torch.as_tensor(alpha(t), dtype=torch.float64)
    if a.shape != t.shape or not torch.isfinite(a).all():
        raise DiffsampleError(f"custom schedule {name!r}: α(t) must be finite and elementwise on t")
    if abs(float(a[0]) - 1.0) > 1e-9 or (a < 0).any() or (a > 1).any() or (a[1:] > a[:-1]).any():
        raise DiffsampleError(f"custom schedule {name!r}: need α(0) = 1, α in [0, 1], non-increasing")
    return MaskingSchedule(name, alpha)


SCHEDULES: dict[str, Callable[[], MaskingSchedule]] = {"linear": linear, "cosine": cosine, "log_linear": log_linear}
"""Named masking schedules."""


def time_grid(steps: int) -> torch.Tensor:
    """``steps + 1`` float64 times ``1 = t_0 > … > t_steps = 0``, uniform in ``t``."""
    if int(steps) != steps or steps < 1:
        raise DiffsampleError(f"steps must be a positive integer, got {steps!r}")
    return torch.linspace(1.0, 0.0, int(steps) + 1, dtype=torch.float64)
