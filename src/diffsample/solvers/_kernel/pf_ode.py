"""Steps of the σ-space probability-flow ODE ``dx/dσ = (x − D(x, σ))/σ`` (Karras et al. 2022, eq. 4 with
s(t) = 1, σ(t) = t): the Euler (DDIM) step and Heun's trapezoid correction, shared by ``euler``, ``heun``
and EDM's churn sampler."""

from __future__ import annotations

import torch

from ...contracts import Denoiser
from .levels import sigma_batch


def euler_step(x: torch.Tensor, denoised: torch.Tensor, sigma: float, sigma_next: float) -> torch.Tensor:
    """Exact Euler step of the PF-ODE: ``D + (σ'/σ)(x − D)`` (DDIM, Song et al. 2021); ``D`` itself at σ' = 0."""
    if sigma_next == 0:
        return denoised
    return torch.lerp(denoised, x, sigma_next / sigma)


def heun_step(
    denoiser: Denoiser, x: torch.Tensor, denoised: torch.Tensor, sigma: float, sigma_next: float
) -> torch.Tensor:
    """Heun's step (Karras et al. 2022, Algorithm 1) from ``x`` at σ with ``denoised = D(x, σ)``: one more call.

    The trapezoid on the slope ``d = (x − D)/σ``: ``x' = x + h (d + d')/2`` with ``h = σ' − σ``. Since
    ``x + h d = x_pred`` (the Euler step) and ``d' = d + (D − D')/σ'``, this is ``x' = x_pred + h/(2σ') (D − D')``.
    Into σ' = 0 it is the Euler step, which returns ``D`` (no call, no division by zero).
    """
    x_pred = euler_step(x, denoised, sigma, sigma_next)
    if sigma_next == 0:
        return x_pred
    denoised_next = denoiser(x_pred, sigma_batch(x, sigma_next))
    return torch.add(x_pred, denoised - denoised_next, alpha=(sigma_next - sigma) / (2 * sigma_next))


def heun_from(denoiser: Denoiser, x: torch.Tensor, sigma: float, sigma_next: float) -> torch.Tensor:
    """Heun's step from ``x`` at σ with its own call ``D(x, σ)`` (the form :mod:`.stability` tests)."""
    return heun_step(denoiser, x, denoiser(x, sigma_batch(x, sigma)), sigma, sigma_next)
