"""A noise schedule's own time: σ-space levels at sampling times, the inverse map, spans on DDPM tables."""

from __future__ import annotations

import math

import torch

from ..errors import DiffsampleError, SigmaError
from ..schedules import DiscreteVP, NoiseSchedule, RectifiedFlow, resolution_shift

ZERO_SNR_SIGMA = math.sqrt(2.0**24 - 1)
"""σ used for a zero-terminal-SNR timestep (σ = ∞): diffusers' convention ``ᾱ = 2^-24``, σ ≈ 4096."""


def inverse_sampling_time(noise_schedule: NoiseSchedule, t: torch.Tensor) -> torch.Tensor:
    """Sampling time ``u`` with ``noise_schedule.sampling_time(u) = t`` (closed form, or bisection)."""
    if isinstance(noise_schedule, RectifiedFlow):
        return resolution_shift(t, 1 / noise_schedule.shift)
    if type(noise_schedule).sampling_time is NoiseSchedule.sampling_time:
        return t.to(torch.float64)
    lo_t, hi_t = float(noise_schedule.t_min), float(noise_schedule.t_max)
    if not (math.isfinite(lo_t) and math.isfinite(hi_t)):
        raise DiffsampleError(f"cannot invert {type(noise_schedule).__name__}.sampling_time on an infinite time domain")
    lo = torch.full_like(t, lo_t, dtype=torch.float64)
    hi = torch.full_like(t, hi_t, dtype=torch.float64)
    for _ in range(200):  # sampling_time is increasing; 200 halvings exhaust float64
        mid = 0.5 * (lo + hi)
        below = noise_schedule.sampling_time(mid) < t
        lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
    return 0.5 * (lo + hi)


def sampling_time_of_sigma(noise_schedule: NoiseSchedule, sigma: float) -> float:
    """The sampling time ``u`` at which ``noise_schedule`` reaches σ-space level ``sigma``."""
    t = noise_schedule.t_of_sigma_space(torch.tensor(float(sigma), dtype=torch.float64))
    return float(inverse_sampling_time(noise_schedule, t))


def table_span(noise_schedule: DiscreteVP, t_min: float | None, t_max: float | None) -> tuple[float, float]:
    """Timesteps ``[t_min, t_max]`` on a DDPM table (default: the whole table ``[0, N−1]``), checked."""
    last = float(noise_schedule.num_train_timesteps - 1)
    lo = 0.0 if t_min is None else float(t_min)
    hi = last if t_max is None else float(t_max)
    if not 0 <= lo < hi <= last:
        raise SigmaError(f"need 0 <= t_min < t_max <= {last:g} on this table, got t_min={lo}, t_max={hi}")
    return lo, hi


def continuous_span(noise_schedule: NoiseSchedule, t_min: float | None, t_max: float | None) -> tuple[float, float]:
    """Sampling times ``[t_min, t_max]`` (default: the times of ``sigma_min`` and ``sigma_max``), checked."""
    lo = sampling_time_of_sigma(noise_schedule, noise_schedule.sigma_min) if t_min is None else float(t_min)
    hi = sampling_time_of_sigma(noise_schedule, noise_schedule.sigma_max) if t_max is None else float(t_max)
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise SigmaError(f"need finite t_min < t_max, got t_min={lo}, t_max={hi}")
    return lo, hi


def no_infinite_levels(levels: torch.Tensor) -> torch.Tensor:
    """Replace the σ = ∞ of a zero-terminal-SNR timestep by :data:`ZERO_SNR_SIGMA` (diffusers' choice)."""
    inf = torch.isinf(levels)
    if bool(inf.any()):
        levels = torch.where(inf, torch.full_like(levels, ZERO_SNR_SIGMA), levels)
    return levels


def table_levels(noise_schedule: DiscreteVP, timesteps: torch.Tensor) -> torch.Tensor:
    """The table's σ-space levels at integer ``timesteps`` (σ = ∞ replaced as in :func:`no_infinite_levels`)."""
    return no_infinite_levels(noise_schedule.sigmas[timesteps.long()].clone())


def time_levels(noise_schedule: NoiseSchedule, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Native times and σ-space levels at sampling times ``u``."""
    t = noise_schedule.sampling_time(u)
    return t, no_infinite_levels(noise_schedule.sigma_space(t))
