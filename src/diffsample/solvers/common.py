"""Small helpers shared by the solver loops (no solver logic lives here)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

Callback = Callable[[dict[str, Any]], None] | None


def sigma_batch(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """A ``(B,)`` tensor filled with ``sigma`` in x's dtype and device, as the denoiser contract asks."""
    return torch.full((x.shape[0],), sigma, dtype=x.dtype, device=x.device)


def sigma_list(sigmas: torch.Tensor) -> list[float]:
    """Sigmas as Python floats: step coefficients are computed in float64 host arithmetic."""
    return [float(s) for s in sigmas.tolist()]


def report(callback: Callback, i: int, x: torch.Tensor, sigma: float, sigma_next: float,
           denoised: torch.Tensor) -> None:
    """Call ``callback`` (if any) with k-diffusion's keys: i, x, sigma, sigma_hat, sigma_next, denoised."""
    if callback is not None:
        callback({"i": i, "x": x, "sigma": sigma, "sigma_hat": sigma, "sigma_next": sigma_next,
                  "denoised": denoised})
