"""What every step-schedule constructor shares: argument checks, ramps, pinned end points, the trailing 0."""

from __future__ import annotations

import math

import torch

from ..errors import SigmaError
from .validation import validate


def check_n(n: int) -> int:
    """``n`` as an int, checked to be a positive integer (the number of noise levels)."""
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise SigmaError(f"n (number of noise levels) must be a positive integer, got {n!r}")
    return int(n)


def check_span(n: int, sigma_min: float, sigma_max: float) -> None:
    """Check ``n`` and a finite span ``0 < sigma_min < sigma_max``."""
    check_n(n)
    if not (math.isfinite(sigma_min) and math.isfinite(sigma_max)):
        raise SigmaError(f"sigma_min and sigma_max must be finite, got {sigma_min}, {sigma_max}")
    if not 0 < sigma_min < sigma_max:
        raise SigmaError(f"need 0 < sigma_min < sigma_max, got sigma_min={sigma_min}, sigma_max={sigma_max}")


def finish(levels: torch.Tensor, append_zero: bool) -> torch.Tensor:
    """The levels as a validated float64 schedule, with a trailing 0 when ``append_zero``."""
    levels = levels.to(torch.float64)
    if append_zero:
        levels = torch.cat([levels, levels.new_zeros(1)])
    return validate(levels)


def pin_ends(levels: torch.Tensor, first: float, last: float) -> torch.Tensor:
    """Set the end points exactly (closed forms lose an ulp or two to round-off)."""
    levels[0] = first
    if levels.numel() > 1:
        levels[-1] = last
    return levels


def ramp(n: int) -> torch.Tensor:
    """``i/(n−1)`` for ``i = 0 … n−1`` (``[0]`` when n = 1)."""
    if n == 1:
        return torch.zeros(1, dtype=torch.float64)
    return torch.arange(n, dtype=torch.float64) / (n - 1)


def np_linspace(start: float, stop: float, n: int) -> torch.Tensor:
    """``numpy.linspace(start, stop, n)`` with numpy's own arithmetic (``start + i·step``, last = stop).

    torch's linspace fills from both ends, which can move a value across a ``.5`` rounding boundary;
    reproducing diffusers' rounded timesteps needs numpy's exact values.
    """
    if n == 1:
        return torch.tensor([float(start)], dtype=torch.float64)
    step = (stop - start) / (n - 1)
    out = torch.arange(n, dtype=torch.float64) * step + start
    out[-1] = stop
    return out


def positive(value: float, what: str) -> float:
    """``value`` as a float, checked to be finite and > 0 (``what`` names it in the error)."""
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise SigmaError(f"{what} must be a finite number > 0, got {value}")
    return value
