"""Noise levels as the solver loops use them: a ``(B,)`` batch for the denoiser, floats for the coefficients."""

from __future__ import annotations

import torch


def sigma_batch(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """A ``(B,)`` tensor filled with ``sigma`` in x's dtype and device, as the denoiser contract asks."""
    return torch.full((x.shape[0],), sigma, dtype=x.dtype, device=x.device)


def sigma_list(sigmas: torch.Tensor) -> list[float]:
    """Sigmas as Python floats: step coefficients are computed in float64 host arithmetic."""
    return [float(s) for s in sigmas.tolist()]
