"""EDM's stochastic sampler (Karras et al. 2022, Algorithm 2): churn, then a Heun step, in σ-space.

Raise the level to ``σ̂ = σ(1 + γ)`` with ``γ = min(S_churn/N, √2 − 1)`` for ``σ ∈ [S_tmin, S_tmax]`` by adding
``sqrt(σ̂² − σ²)·S_noise·z`` (the exact forward transition of σ-space, :mod:`.ancestral`), then take one
Heun step from σ̂ to σ' (an Euler step when σ' = 0, which returns ``D``). Defaults are the paper's
ImageNet-64 setting (S_churn = 40, S_tmin = 0.05, S_tmax = 50, S_noise = 1.003).

The churn needs fresh draws at levels that other draws already covered, so interval sources (Brownian
trees) are refused; without a noise source the sampler raises instead of touching a global RNG
(:mod:`._kernel.noise`).
"""

from __future__ import annotations

import math

import torch

from ..contracts import Denoiser, NoiseSource
from ._kernel.callbacks import Callback
from ._kernel.levels import sigma_batch, sigma_list
from ._kernel.noise import check_nonnegative, draw, require_fresh_noise
from ._kernel.pf_ode import heun_from, heun_step
from ._kernel.stability import warn_unstable
from .registry import register

__all__ = ["edm"]


@register("edm", order=2, evals_per_step=2, saves_last_eval=True, stochastic=True)
def edm(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    noise: NoiseSource | None = None,
    callback: Callback = None,
    s_churn: float = 40.0,
    s_tmin: float = 0.05,
    s_tmax: float = 50.0,
    s_noise: float = 1.003,
) -> torch.Tensor:
    """EDM's stochastic sampler (Karras et al. 2022, Algorithm 2): churn to σ̂ = (1 + γ)σ, then a Heun step.

    Args:
        s_churn: total churn; ``γ = min(s_churn/N, √2 − 1)`` on the N steps with ``σ ∈ [s_tmin, s_tmax]``.
        s_tmin, s_tmax: the noise levels where churn is applied.
        s_noise: the factor on the added noise (slightly above 1 counteracts over-denoising).

    ``callback`` gets ``sigma_hat`` = σ̂. ``s_churn = 0`` is deterministic Heun (no noise source needed).
    A Heun step σ̂ → σ' outside Heun's stability region warns (:mod:`._kernel.stability`).
    """
    s_churn, s_noise = check_nonnegative(s_churn, "s_churn"), check_nonnegative(s_noise, "s_noise")
    s = sigma_list(sigmas)
    n = len(s) - 1
    gamma_max = min(s_churn / n, math.sqrt(2.0) - 1.0)
    gammas = [gamma_max if s_tmin <= s[i] <= s_tmax and s[i] > 0 else 0.0 for i in range(n)]
    if any(g > 0 for g in gammas) and s_noise > 0:
        require_fresh_noise(noise, "edm", "the churn raises the noise level of every step")
    warn_unstable("edm", ((i, s[i] * (1.0 + gammas[i]), s[i + 1], heun_from) for i in range(n)))  # Heun from σ̂
    for i in range(n):
        sigma, sigma_next = s[i], s[i + 1]
        sigma_hat = sigma * (1.0 + gammas[i])
        if gammas[i] > 0 and s_noise > 0:
            x = x + (s_noise * math.sqrt(sigma_hat**2 - sigma**2)) * draw(noise, x, sigma, sigma_hat)
        denoised = denoiser(x, sigma_batch(x, sigma_hat))
        if callback is not None:
            callback(
                {"i": i, "x": x, "sigma": sigma, "sigma_hat": sigma_hat, "sigma_next": sigma_next, "denoised": denoised}
            )
        x = heun_step(denoiser, x, denoised, sigma_hat, sigma_next)  # from σ̂ (Euler, = D, at σ' = 0)
    return x
