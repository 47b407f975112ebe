"""Validation: any decreasing array of noise levels, checked and returned as a float64 step schedule."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..errors import SigmaError

__all__ = ["from_array", "validate"]


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


def from_array(values: torch.Tensor | Sequence[float], *, append_zero: bool = False) -> torch.Tensor:
    """Any decreasing array of noise levels as a validated float64 schedule; ``append_zero`` adds a final
    0 unless the array already ends in one."""
    v = torch.as_tensor(values, dtype=torch.float64).detach().cpu()
    if append_zero and v.dim() == 1 and (v.numel() == 0 or float(v[-1]) != 0.0):
        v = torch.cat([v, v.new_zeros(1)])
    return validate(v)
