"""Euler (deterministic DDIM in σ-space) and Heun (EDM's 2nd-order method).

The probability-flow ODE in σ-space (Karras et al. 2022, eq. 4 with s(t)=1, σ(t)=t) is

    dx/dσ = (x − D(x, σ)) / σ.

Euler takes ``x' = x + (σ' − σ)·(x − D)/σ``; with the exact denoiser this is DDIM (Song et al. 2021)
written in σ-space, ``x' = D + σ'/σ·(x − D)``. Heun (Karras et al. 2022, Algorithm 1) averages the
slope at both ends of the step; its final step into σ = 0 is an Euler step, which returns ``D``
(no division by the zero noise level, no extra model call).
"""

from __future__ import annotations

import torch

from ..contracts import Denoiser, NoiseSource
from ._kernel.callbacks import Callback, report
from ._kernel.levels import sigma_batch, sigma_list
from ._kernel.pf_ode import euler_step, heun_from, heun_step
from ._kernel.stability import warn_unstable
from .registry import register


@register("euler", order=1)
def euler(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    noise: NoiseSource | None = None,
    callback: Callback = None,
) -> torch.Tensor:
    """Euler / deterministic DDIM: first order, one model call per step."""
    s = sigma_list(sigmas)
    for i in range(len(s) - 1):
        denoised = denoiser(x, sigma_batch(x, s[i]))
        report(callback, i, x, s[i], s[i + 1], denoised)
        x = euler_step(x, denoised, s[i], s[i + 1])
    return x


@register("heun", order=2, evals_per_step=2, saves_last_eval=True)
def heun(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    noise: NoiseSource | None = None,
    callback: Callback = None,
) -> torch.Tensor:
    """Heun (EDM Algorithm 1, deterministic): second order, two calls per step, one on the step to 0.

    Warns (:class:`~diffsample.errors.StabilityWarning`) when a step is outside Heun's stability region
    (:mod:`._kernel.stability`: 2–4 Karras steps on the default span).
    """
    s = sigma_list(sigmas)
    warn_unstable("heun", ((i, s[i], s[i + 1], heun_from) for i in range(len(s) - 1)))
    for i in range(len(s) - 1):
        sigma, sigma_next = s[i], s[i + 1]
        denoised = denoiser(x, sigma_batch(x, sigma))
        report(callback, i, x, sigma, sigma_next, denoised)
        x = heun_step(denoiser, x, denoised, sigma, sigma_next)
    return x
