"""Composing step schedules: cut to a span, shift, insert σ_min before the final 0, map onto a DDPM table."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ..errors import DiffsampleError, SigmaError
from ..schedules import DiscreteVP
from ._assignment import assign_unique, nearest
from ._common import positive
from ._deprecated import accepts_old_schedule_keyword
from .validation import validate

__all__ = ["insert_sigma_min", "shift", "to_timesteps", "truncate"]


def truncate(
    sigmas: torch.Tensor | Sequence[float], sigma_max: float | None = None, sigma_min: float | None = None
) -> torch.Tensor:
    """The part of a schedule within ``[sigma_min, sigma_max]``, with the boundary levels inserted.

    ``sigma_max`` below the first level cuts the start and begins exactly at ``sigma_max`` (img2img
    strength, a second pass); ``sigma_min`` above the last level cuts the tail and ends exactly at
    ``sigma_min`` (no trailing 0: compose with :func:`from_array` ``(…, append_zero=True)``).
    A bound outside the schedule's range changes nothing.
    """
    s = validate(sigmas)
    if sigma_max is not None:
        sigma_max = positive(sigma_max, "sigma_max")
        if sigma_max < float(s[0]):
            s = torch.cat([s.new_tensor([sigma_max]), s[s < sigma_max]])
    if sigma_min is not None:
        sigma_min = float(sigma_min)
        if not (math.isfinite(sigma_min) and sigma_min >= 0):
            raise SigmaError(f"sigma_min must be a finite number >= 0, got {sigma_min}")
        if sigma_min >= float(s[0]):
            raise SigmaError(f"sigma_min = {sigma_min} is not below the schedule's first level {float(s[0]):.6g}")
        if sigma_min > float(s[-1]):
            s = torch.cat([s[s > sigma_min], s.new_tensor([sigma_min])])
    return validate(s, name="truncated sigmas")


def shift(sigmas: torch.Tensor | Sequence[float], factor: float) -> torch.Tensor:
    """Multiply every level by ``factor`` (0 stays 0): SD3's resolution shift (Esser et al. 2024, eq. 23)
    in σ-space, where ``t' = factor·t/(1 + (factor − 1)t)`` is exactly ``σ' = factor·σ``."""
    return validate(validate(sigmas) * positive(factor, "shift factor"))


def insert_sigma_min(sigmas: torch.Tensor | Sequence[float], sigma_min: float) -> torch.Tensor:
    """Insert ``sigma_min`` before the final 0 (a schedule that ends ``…, σ_min, 0``: diffusers'
    ``final_sigmas_type="sigma_min"`` followed by a last step to 0). Unchanged if already there."""
    s = validate(sigmas)
    sigma_min = positive(sigma_min, "sigma_min")
    if float(s[-1]) != 0.0:
        raise SigmaError("insert_sigma_min needs a schedule that ends in 0")
    if float(s[-2]) == sigma_min:
        return s
    if float(s[-2]) < sigma_min:
        raise SigmaError(f"the last level before 0 is {float(s[-2]):.6g}, already below sigma_min = {sigma_min}")
    return validate(torch.cat([s[:-1], s.new_tensor([sigma_min, 0.0])]))


@accepts_old_schedule_keyword
def to_timesteps(
    sigmas: torch.Tensor | Sequence[float], noise_schedule: DiscreteVP, *, unique: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Map a σ schedule onto a DDPM table's integer timesteps: ``(timesteps, sigmas_on_table)``.

    Each positive level goes to the timestep nearest in ``log σ``. Naive nearest-timestep rounding
    repeats timesteps where levels are denser than the table (diffusers' ``use_karras_sigmas`` with
    100 steps on SD's table rounds 5 of them onto a neighbour's timestep). With ``unique=True`` the
    timesteps are instead the strictly decreasing assignment that minimises
    ``Σ_i (log σ_table[k_i] − log σ_i)²`` (dynamic programming over the table), which equals the nearest
    assignment wherever that is already free of repeats, so no step is lost. ``unique=False`` keeps
    the nearest timesteps and drops repeats (fewer steps, diffusers' old ``np.unique`` behaviour).

    ``timesteps`` is int64, decreasing, one per positive level; ``sigmas_on_table`` is the table's
    levels there, followed by 0 if ``sigmas`` ends in 0. A zero-terminal-SNR table's last timestep
    (σ = ∞) is not used.
    """
    if not isinstance(noise_schedule, DiscreteVP):
        raise DiffsampleError(f"to_timesteps needs a DDPM table (DiscreteVP), got {type(noise_schedule).__name__}")
    s = validate(sigmas)
    ends_in_zero = float(s[-1]) == 0.0
    positive_levels = s[:-1] if ends_in_zero else s
    finite = noise_schedule.num_train_timesteps - (1 if noise_schedule.zero_terminal else 0)
    grid = noise_schedule.log_sigmas[:finite]
    targets = positive_levels.log().flip(0)
    idx = assign_unique(targets, grid) if unique else torch.unique_consecutive(nearest(targets, grid))
    timesteps = idx.flip(0)
    levels = noise_schedule.sigmas[timesteps].clone()
    if ends_in_zero:
        levels = torch.cat([levels, levels.new_zeros(1)])
    return timesteps, validate(levels)
