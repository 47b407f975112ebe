"""Step schedules: the decreasing arrays of noise levels ``[σ_max, …, σ_min, 0]`` a solver walks.

Schedules are values (1-D float64 tensors), not flags. Every constructor returns ``n`` noise levels
from ``sigma_max`` down to ``sigma_min`` followed by a trailing ``0`` (``append_zero=False`` drops
it and ends at ``sigma_min``), and any array a user brings is accepted after :func:`validate`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from .errors import SigmaError

__all__ = ["karras", "logsnr", "validate"]


def validate(sigmas: torch.Tensor | Sequence[float], *, name: str = "sigmas") -> torch.Tensor:
    """Check a step schedule and return it as a 1-D float64 CPU tensor.

    Requirements: at least 2 entries, all finite, none negative, strictly decreasing
    (a zero may only be the last entry, which strict decrease already implies).
    """
    s = torch.as_tensor(sigmas, dtype=torch.float64).detach().cpu()
    if s.dim() != 1:
        raise SigmaError(f"{name} must be 1-D, got shape {tuple(s.shape)}")
    if s.numel() < 2:
        raise SigmaError(f"{name} needs at least 2 entries (a start and an end), got {s.numel()}")
    if not torch.isfinite(s).all():
        bad = int((~torch.isfinite(s)).nonzero()[0])
        raise SigmaError(f"{name}[{bad}] = {s[bad].item()} is not finite; all sigmas must be finite")
    if (s < 0).any():
        bad = int((s < 0).nonzero()[0])
        raise SigmaError(f"{name}[{bad}] = {s[bad].item()} is negative; sigmas must be >= 0")
    diff = s[1:] - s[:-1]
    if (diff >= 0).any():
        bad = int((diff >= 0).nonzero()[0])
        raise SigmaError(
            f"{name} must be strictly decreasing, but {name}[{bad}] = {s[bad].item():.6g} "
            f"<= {name}[{bad + 1}] = {s[bad + 1].item():.6g}"
        )
    return s


def _check_span(n: int, sigma_min: float, sigma_max: float) -> None:
    if int(n) != n or n < 1:
        raise SigmaError(f"n (number of noise levels) must be a positive integer, got {n!r}")
    if not (math.isfinite(sigma_min) and math.isfinite(sigma_max)):
        raise SigmaError(f"sigma_min and sigma_max must be finite, got {sigma_min}, {sigma_max}")
    if not 0 < sigma_min < sigma_max:
        raise SigmaError(f"need 0 < sigma_min < sigma_max, got sigma_min={sigma_min}, sigma_max={sigma_max}")


def _finish(levels: torch.Tensor, append_zero: bool) -> torch.Tensor:
    levels = levels.to(torch.float64)
    if append_zero:
        levels = torch.cat([levels, levels.new_zeros(1)])
    return validate(levels)


def karras(
    n: int, sigma_min: float, sigma_max: float, rho: float = 7.0, *, append_zero: bool = True
) -> torch.Tensor:
    """Karras et al. (2022, EDM, eq. 5): ``σ_i = (σ_max^{1/ρ} + i/(n-1) (σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ``.

    ``rho=7`` is EDM's choice; ``rho=1`` is uniform in σ and ``rho → ∞`` tends to :func:`logsnr`.
    """
    _check_span(n, sigma_min, sigma_max)
    if rho <= 0:
        raise SigmaError(f"rho must be > 0, got {rho}")
    if n == 1:
        return _finish(torch.tensor([sigma_max]), append_zero)
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    levels = (hi + ramp * (lo - hi)) ** rho
    levels[0], levels[-1] = sigma_max, sigma_min  # exact end points despite pow round-off
    return _finish(levels, append_zero)


def logsnr(n: int, sigma_min: float, sigma_max: float, *, append_zero: bool = True) -> torch.Tensor:
    """Uniform in log-SNR ``λ = −log σ`` (DPM-Solver's "logSNR" spacing; k-diffusion's exponential)."""
    _check_span(n, sigma_min, sigma_max)
    if n == 1:
        return _finish(torch.tensor([sigma_max]), append_zero)
    levels = torch.linspace(math.log(sigma_max), math.log(sigma_min), n, dtype=torch.float64).exp()
    levels[0], levels[-1] = sigma_max, sigma_min
    return _finish(levels, append_zero)
