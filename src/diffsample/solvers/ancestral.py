"""Ancestral samplers in σ-space: DDPM, DDIM(η) and Euler ancestral, one posterior step.

They walk ``x = x0 + σ ε`` with the denoiser ``D(x, σ)``, ``ε̂ = (x − D)/σ``, and call ``noise(x, σ, σ')``
once per step for the step's own interval, so a Brownian tree (:mod:`diffsample.noise_tree`) serves as well
as seeded streams (:func:`diffsample.noise.seeded`); without a noise source they raise instead of touching
a global RNG (:mod:`._kernel.noise`). A step into σ = 0 returns ``D`` and draws nothing.

The forward process in σ-space
------------------------------
For any diffusion ``x_t = α_t x0 + σ_t ε`` the σ-space state ``x = x_t/α_t`` at level ``σ = σ_t/α_t``
has the Markov forward transition ``x_σ = x_σ' + sqrt(σ² − σ'²) z`` for σ' < σ (for VP,
``x_t = sqrt(α) x_s + sqrt(1 − α) z`` with ``ᾱ = 1/(1 + σ²)`` divided by ``sqrt(ᾱ_t)`` is exactly that).
Bayes' rule then gives the posterior of one step back (Ho et al. 2020, eqs. 6–7, in σ-space):

    q(x_σ' | x_σ, x0) = N( x0 + (σ'²/σ²)(x_σ − x0),  σ'²(σ² − σ'²)/σ² · I ).

This holds for VP, VE, EDM and flow-matching models alike (the α scaling is divided out), so the
samplers below need nothing but σ.

* **DDPM** (Ho et al. 2020, Algorithm 2, with the posterior variance β̃): replace x0 by ``D`` and sample
  this posterior: ``x' = D + (σ'/σ)²(x − D) + σ_up z``, ``σ_up = σ' sqrt(1 − σ'²/σ²)``. With
  ``variance="large"`` the noise variance is Ho et al.'s other choice β_t instead, which in σ-space is
  ``(σ² − σ'²)(1 + σ'²)/(1 + σ²)`` — this one depends on the VP scaling ``ᾱ = 1/(1 + σ²)`` and is meant
  for VP models. (k-diffusion's ``sample_ddpm`` in ComfyUI's fork is the β̃ form, written on ε̂.)
* **DDIM** (Song et al. 2021, eq. 12 with eq. 16): ``σ_η = η sqrt((1 − ᾱ_{t−1})/(1 − ᾱ_t)) sqrt(1 − ᾱ_t/ᾱ_{t−1})``
  becomes in σ-space ``σ_up = η σ' sqrt(1 − σ'²/σ²)``, and the update is
  ``x' = D + sqrt(σ'² − σ_up²) ε̂ + σ_up z``. η = 0 is deterministic DDIM (the Euler step of the PF-ODE,
  :func:`~diffsample.solvers.euler_heun.euler`); η = 1 is exactly the DDPM posterior step above.
* **Euler ancestral** (k-diffusion's ``sample_euler_ancestral``): the same split, written as an Euler
  step to ``σ_down = sqrt(σ'² − σ_up²)`` plus ``s_noise·σ_up·z``, with ``σ_up`` capped at σ'. So in
  σ-space DDPM = DDIM(η = 1) = Euler ancestral(η = 1): three names for one update, kept because each
  is what users of the respective papers and libraries ask for.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ..contracts import Denoiser, NoiseSource
from ..errors import DiffsampleError
from ._kernel.callbacks import Callback, report
from ._kernel.levels import sigma_batch, sigma_list
from ._kernel.noise import check_nonnegative, draw, require_noise
from .registry import register

__all__ = ["ancestral_split", "ddim", "ddpm", "euler_ancestral"]


def ancestral_split(sigma: float, sigma_next: float, eta: float = 1.0) -> tuple[float, float]:
    """``(σ_down, σ_up)`` with ``σ_down² + σ_up² = σ'²`` and ``σ_up = min(σ', η σ' sqrt(1 − σ'²/σ²))``.

    Written without cancellation: ``σ_up = η (σ'/σ) sqrt((σ − σ')(σ + σ'))`` (σ' ≈ σ) and
    ``σ_down = σ' sqrt(1 − η² + η² (σ'/σ)²)`` (σ' ≪ σ); when ``σ_up`` reaches σ' (only for η > 1), ``σ_down = 0``.
    """
    if sigma_next == 0 or eta == 0:
        return sigma_next, 0.0
    ratio = sigma_next / sigma
    up = eta * ratio * math.sqrt((sigma - sigma_next) * (sigma + sigma_next))
    if up >= sigma_next:
        return 0.0, sigma_next
    return sigma_next * math.sqrt(max(1.0 - eta * eta + (eta * ratio) ** 2, 0.0)), up


def ancestral_update(
    x: torch.Tensor,
    denoised: torch.Tensor,
    keep: float,
    up: float,
    noise: NoiseSource | None,
    sigma: float,
    sigma_next: float,
) -> torch.Tensor:
    """One ancestral step ``x' = D + keep·(x − D) + up·z`` with ``z`` drawn for ``σ → σ'`` (none when ``up = 0``)."""
    x = torch.lerp(denoised, x, keep)
    if up > 0:
        x = x + up * draw(noise, x, sigma, sigma_next)
    return x


def _posterior_walk(
    denoiser: Denoiser,
    x: torch.Tensor,
    s: list[float],
    noise: NoiseSource | None,
    callback: Callback,
    step: Callable[[float, float], tuple[float, float]],
) -> torch.Tensor:
    """``x' = D + keep·(x − D) + up·z`` on every step with ``(keep, up) = step(σ, σ')``; the step into 0 is ``D``."""
    for i in range(len(s) - 1):
        sigma, sigma_next = s[i], s[i + 1]
        denoised = denoiser(x, sigma_batch(x, sigma))
        report(callback, i, x, sigma, sigma_next, denoised)
        if sigma_next == 0:
            x = denoised
            continue
        keep, up = step(sigma, sigma_next)
        x = ancestral_update(x, denoised, keep, up, noise, sigma, sigma_next)
    return x


def _ancestral(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    noise: NoiseSource | None,
    callback: Callback,
    eta: float,
    s_noise: float,
    name: str,
) -> torch.Tensor:
    """``x' = D + (σ_down/σ)(x − D) + s_noise·σ_up·z`` on every step (module docstring)."""
    eta, s_noise = check_nonnegative(eta, "eta"), check_nonnegative(s_noise, "s_noise")
    s = sigma_list(sigmas)
    if eta > 0 and s_noise > 0 and any(b > 0 for b in s[1:]):
        require_noise(noise, name, f"eta={eta} > 0")

    def step(sigma: float, sigma_next: float) -> tuple[float, float]:
        down, up = ancestral_split(sigma, sigma_next, eta)
        return down / sigma, s_noise * up

    return _posterior_walk(denoiser, x, s, noise, callback, step)


@register("ddpm", order=1, stochastic=True)
def ddpm(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    noise: NoiseSource | None = None,
    callback: Callback = None,
    variance: str = "small",
) -> torch.Tensor:
    """DDPM ancestral sampling (Ho et al. 2020) as the σ-space posterior step ``q(x_σ' | x_σ, x0 = D)``.

    Args:
        variance: ``"small"`` (default) the posterior variance β̃ (``σ_up² = σ'²(1 − σ'²/σ²)``; any model),
            ``"large"`` Ho et al.'s β_t, ``σ_up² = (σ² − σ'²)(1 + σ'²)/(1 + σ²)`` (VP models only).
    """
    if variance not in ("small", "large"):
        raise DiffsampleError(f"variance must be 'small' or 'large', got {variance!r}")
    s = sigma_list(sigmas)
    if any(b > 0 for b in s[1:]):
        require_noise(noise, "ddpm", "the posterior sample of every step")

    def step(sigma: float, sigma_next: float) -> tuple[float, float]:
        ratio = sigma_next / sigma
        if variance == "small":
            return ratio * ratio, ratio * math.sqrt((sigma - sigma_next) * (sigma + sigma_next))
        return ratio * ratio, math.sqrt(
            (sigma - sigma_next) * (sigma + sigma_next) * (1 + sigma_next**2) / (1 + sigma**2)
        )

    return _posterior_walk(denoiser, x, s, noise, callback, step)


@register("ddim", order=1, stochastic=True)
def ddim(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    noise: NoiseSource | None = None,
    callback: Callback = None,
    eta: float = 0.0,
) -> torch.Tensor:
    """DDIM (Song et al. 2021, eqs. 12 and 16) in σ-space: η = 0 deterministic (= Euler), η = 1 DDPM.

    Args:
        eta: the stochasticity η ≥ 0 of eq. 16 (``σ_up`` is capped at σ' for η > 1). A noise source is
            needed only when η > 0.
    """
    return _ancestral(denoiser, x, sigmas, noise, callback, eta, 1.0, "ddim")


@register("euler_ancestral", order=1, stochastic=True)
def euler_ancestral(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    noise: NoiseSource | None = None,
    callback: Callback = None,
    eta: float = 1.0,
    s_noise: float = 1.0,
) -> torch.Tensor:
    """Euler ancestral (k-diffusion's ``sample_euler_ancestral``): Euler to σ_down, then noise σ_up.

    Args:
        eta: the share of ancestral noise (1: DDPM's posterior step; 0: Euler).
        s_noise: a factor on the added noise (1 keeps the marginals).
    """
    return _ancestral(denoiser, x, sigmas, noise, callback, eta, s_noise, "euler_ancestral")
