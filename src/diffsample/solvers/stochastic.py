"""Stochastic samplers in σ-space: DDPM, DDIM(η), Euler ancestral, EDM's churn sampler, SDE-DPM-Solver++
(2M, 3M) and predictor–corrector Langevin sampling.

All of them walk ``x = x0 + σ ε`` with the denoiser ``D(x, σ)``, ``ε̂ = (x − D)/σ``, and draw noise only
from the noise source passed as ``noise=`` (:func:`diffsample.noise.seeded`, or
:func:`diffsample.noise_tree.brownian` for the interval-based samplers); without one they raise
instead of touching a global RNG. A step into σ = 0 returns ``D`` and draws nothing.

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
* **EDM** (Karras et al. 2022, Algorithm 2): raise the level to ``σ̂ = σ(1 + γ)`` with
  ``γ = min(S_churn/N, √2 − 1)`` for ``σ ∈ [S_tmin, S_tmax]`` by adding ``sqrt(σ̂² − σ²)·S_noise·z``, then
  one Heun step from σ̂ to σ' (an Euler step when σ' = 0). Defaults are the paper's ImageNet-64 setting
  (S_churn = 40, S_tmin = 0.05, S_tmax = 50, S_noise = 1.003).
* **SDE-DPM-Solver++** (Lu et al. 2022b, "DPM-Solver++", §4 and App. B, SDE-DPM-Solver++(2M)). In
  λ = −log σ the reverse SDE family ``dx = (1 + η)(D − x) dλ + σ sqrt(2η) dW_λ`` has the marginals of the
  data for every η ≥ 0 (η = 0: the PF-ODE; η = 1: the reverse diffusion). Freezing the noise and
  integrating the linear part exactly over ``h = λ' − λ`` gives, with ``κ = 1 + η``,

      x' = e^{−κh} x + ∫_0^h κ e^{−κ(h−u)} D(λ + u) du + σ' sqrt(1 − e^{−2ηh}) z,

  and ``e^{−κh} = (σ'/σ) e^{−ηh}``. Expanding ``D(λ + u) = D + u D' + u²/2 D''`` gives the weights
  ``w_0 = 1 − e^{−κh}``, ``w_1 = h(1 − φ(κh))``, ``w_2 = h²(1/2 − (1 − φ(κh))/(κh))`` with
  ``φ(z) = (1 − e^{−z})/z``. 2M estimates ``D' ≈ (D_i − D_{i−1})/h_{i−1}`` and uses ``w_1`` (``"heun"``)
  or its leading term ``w_0 h/2`` (``"midpoint"``, the paper's and k-diffusion's default); 3M takes
  ``D'`` and ``D''`` from the quadratic through the last three outputs (Newton divided differences, as
  :mod:`~diffsample.solvers.dpm` does for the ODE) with the full Taylor weights. At η = 0 they are
  DPM-Solver++(2M)/(3M) exactly. (k-diffusion's ``dpmpp_3m_sde`` weighs the second difference by half
  the Taylor weight, like its ODE 3M; see :mod:`~diffsample.solvers.dpm`.)
* **Predictor–corrector** (Song et al. 2021, "Score-Based Generative Modeling through SDEs",
  Algorithms 4 and 5): after each predictor step to σ' > 0, ``corrector_steps`` Langevin steps at σ'
  with the score ``s = (D − x)/σ'²``: ``x ← x + ε s + sqrt(2ε) z``, ``ε = 2α (r ‖z‖/‖s‖)²`` (``r`` the
  signal-to-noise ratio ``snr``; α = 1 in σ-space, which is the VE form). That per-sample rule
  (``step_rule="sample"``) needs ``‖s‖`` and ``‖z‖`` to concentrate, as they do for images: near a
  Gaussian component of ``p_σ`` the ratio ``‖z‖²/‖s‖²`` is ``v·F(d, d)``-distributed, whose mean is
  infinite for ``d ≤ 2`` and variance infinite for ``d ≤ 4``, so in a few dimensions some steps are
  arbitrarily large and throw samples far away. The default ``step_rule="auto"`` therefore takes the
  paper's rule for ``d ≥ 64`` per sample and otherwise ``ε = 2 r² σ²`` (``"sigma"``: the rule with ``‖s‖²``
  replaced by its upper bound ``d/σ²``, see :func:`langevin_correct`); ``"batch"`` averages the norms over
  the batch as the paper's code does (sample i then depends on its batch).

Noise sources
-------------
DDPM, DDIM, Euler ancestral and the SDE-DPM-Solvers call ``noise(x, σ, σ')`` once per step for the
step's own interval, so they accept a Brownian tree (:mod:`diffsample.noise_tree`) as well as seeded
streams. EDM's churn, restarts and Langevin corrections need fresh draws at levels that other draws
already covered; they refuse interval sources (those with ``interval_noise = True``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from ..errors import DiffsampleError
from .common import Callback, report, sigma_batch, sigma_list
from .dpm import planned_orders
from .registry import register, spec

__all__ = [
    "ancestral_split", "ddim", "ddpm", "dpmpp_2m_sde", "dpmpp_3m_sde", "edm", "euler_ancestral", "langevin_correct",
    "langevin_step_size", "pc", "pc_cost", "AUTO_SAMPLE_DIM", "STEP_RULES", "require_fresh_noise", "require_noise",
    "sde_weights",
]



# --------------------------------------------------------------------------------------------- helpers


def require_noise(noise: Any, solver: str, why: str) -> Any:
    """Return ``noise``, or raise asking for a noise source when it is ``None``."""
    if noise is None:
        raise DiffsampleError(
            f"solver {solver!r} draws random noise ({why}) and never uses a global RNG: pass a noise source, "
            "e.g. noise=diffsample.noise.seeded(seed), or brownian(seed) from diffsample.noise_tree"
        )
    return noise


def require_fresh_noise(noise: Any, solver: str, why: str) -> Any:
    """Like :func:`require_noise`, and refuse interval sources (Brownian trees) where fresh draws are needed."""
    require_noise(noise, solver, why)
    if getattr(noise, "interval_noise", False):
        raise DiffsampleError(
            f"solver {solver!r} needs fresh noise ({why}), but {type(noise).__name__} returns the same noise "
            "for the same interval; use noise=diffsample.noise.seeded(seed)"
        )
    return noise


def _draw(noise: Any, x: torch.Tensor, sigma: float, sigma_next: float) -> torch.Tensor:
    z = noise(x, sigma, sigma_next)
    if z.shape != x.shape:
        raise DiffsampleError(f"the noise source returned shape {tuple(z.shape)} for x of shape {tuple(x.shape)}")
    return z.to(dtype=x.dtype, device=x.device)


def _check_nonnegative(value: float, name: str) -> float:
    value = float(value)
    if not (math.isfinite(value) and value >= 0):
        raise DiffsampleError(f"{name} must be a finite number >= 0, got {value}")
    return value


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


def _posterior_walk(denoiser, x: torch.Tensor, s: list[float], noise: Any, callback: Callback,
                    step: Callable[[float, float], tuple[float, float]]) -> torch.Tensor:
    """``x' = D + keep·(x − D) + up·z`` on every step with ``(keep, up) = step(σ, σ')``; the step into 0 is ``D``."""
    for i in range(len(s) - 1):
        sigma, sigma_next = s[i], s[i + 1]
        denoised = denoiser(x, sigma_batch(x, sigma))
        report(callback, i, x, sigma, sigma_next, denoised)
        if sigma_next == 0:
            x = denoised
            continue
        keep, up = step(sigma, sigma_next)
        x = torch.lerp(denoised, x, keep)
        if up > 0:
            x = x + up * _draw(noise, x, sigma, sigma_next)
    return x


def _ancestral(denoiser, x: torch.Tensor, sigmas: torch.Tensor, noise: Any, callback: Callback, eta: float,
               s_noise: float, name: str) -> torch.Tensor:
    """``x' = D + (σ_down/σ)(x − D) + s_noise·σ_up·z`` on every step (module docstring)."""
    eta, s_noise = _check_nonnegative(eta, "eta"), _check_nonnegative(s_noise, "s_noise")
    s = sigma_list(sigmas)
    if eta > 0 and s_noise > 0 and any(b > 0 for b in s[1:]):
        require_noise(noise, name, f"eta={eta} > 0")

    def step(sigma: float, sigma_next: float) -> tuple[float, float]:
        down, up = ancestral_split(sigma, sigma_next, eta)
        return down / sigma, s_noise * up

    return _posterior_walk(denoiser, x, s, noise, callback, step)


# --------------------------------------------------------------------------------------------- ancestral


@register("ddpm", order=1, stochastic=True)
def ddpm(denoiser, x: torch.Tensor, sigmas: torch.Tensor, *, noise=None, callback: Callback = None,
         variance: str = "small") -> torch.Tensor:
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
        return ratio * ratio, math.sqrt((sigma - sigma_next) * (sigma + sigma_next) * (1 + sigma_next**2)
                                        / (1 + sigma**2))

    return _posterior_walk(denoiser, x, s, noise, callback, step)


@register("ddim", order=1, stochastic=True)
def ddim(denoiser, x: torch.Tensor, sigmas: torch.Tensor, *, noise=None, callback: Callback = None,
         eta: float = 0.0) -> torch.Tensor:
    """DDIM (Song et al. 2021, eqs. 12 and 16) in σ-space: η = 0 deterministic (= Euler), η = 1 DDPM.

    Args:
        eta: the stochasticity η ≥ 0 of eq. 16 (``σ_up`` is capped at σ' for η > 1). A noise source is
            needed only when η > 0.
    """
    return _ancestral(denoiser, x, sigmas, noise, callback, eta, 1.0, "ddim")


@register("euler_ancestral", order=1, stochastic=True)
def euler_ancestral(denoiser, x: torch.Tensor, sigmas: torch.Tensor, *, noise=None, callback: Callback = None,
                    eta: float = 1.0, s_noise: float = 1.0) -> torch.Tensor:
    """Euler ancestral (k-diffusion's ``sample_euler_ancestral``): Euler to σ_down, then noise σ_up.

    Args:
        eta: the share of ancestral noise (1: DDPM's posterior step; 0: Euler).
        s_noise: a factor on the added noise (1 keeps the marginals).
    """
    return _ancestral(denoiser, x, sigmas, noise, callback, eta, s_noise, "euler_ancestral")


# --------------------------------------------------------------------------------------------- EDM


@register("edm", order=2, evals_per_step=2, saves_last_eval=True, stochastic=True)
def edm(denoiser, x: torch.Tensor, sigmas: torch.Tensor, *, noise=None, callback: Callback = None,
        s_churn: float = 40.0, s_tmin: float = 0.05, s_tmax: float = 50.0, s_noise: float = 1.003) -> torch.Tensor:
    """EDM's stochastic sampler (Karras et al. 2022, Algorithm 2): churn to σ̂ = (1 + γ)σ, then a Heun step.

    Args:
        s_churn: total churn; ``γ = min(s_churn/N, √2 − 1)`` on the N steps with ``σ ∈ [s_tmin, s_tmax]``.
        s_tmin, s_tmax: the noise levels where churn is applied.
        s_noise: the factor on the added noise (slightly above 1 counteracts over-denoising).

    ``callback`` gets ``sigma_hat`` = σ̂. ``s_churn = 0`` is deterministic Heun (no noise source needed).
    """
    s_churn, s_noise = _check_nonnegative(s_churn, "s_churn"), _check_nonnegative(s_noise, "s_noise")
    s = sigma_list(sigmas)
    n = len(s) - 1
    gamma_max = min(s_churn / n, math.sqrt(2.0) - 1.0)
    gammas = [gamma_max if s_tmin <= s[i] <= s_tmax and s[i] > 0 else 0.0 for i in range(n)]
    if any(g > 0 for g in gammas) and s_noise > 0:
        require_fresh_noise(noise, "edm", "the churn raises the noise level of every step")
    for i in range(n):
        sigma, sigma_next = s[i], s[i + 1]
        sigma_hat = sigma * (1.0 + gammas[i])
        if gammas[i] > 0 and s_noise > 0:
            x = x + (s_noise * math.sqrt(sigma_hat**2 - sigma**2)) * _draw(noise, x, sigma, sigma_hat)
        denoised = denoiser(x, sigma_batch(x, sigma_hat))
        if callback is not None:
            callback({"i": i, "x": x, "sigma": sigma, "sigma_hat": sigma_hat, "sigma_next": sigma_next,
                      "denoised": denoised})
        x_next = torch.lerp(denoised, x, sigma_next / sigma_hat)  # Euler from σ̂ (= D at σ' = 0)
        if sigma_next == 0:
            x = x_next
            continue
        denoised_next = denoiser(x_next, sigma_batch(x, sigma_next))
        # trapezoid on d = (x − D)/σ between σ̂ and σ' (as in euler_heun.heun, from σ̂)
        x = torch.add(x_next, denoised - denoised_next, alpha=(sigma_next - sigma_hat) / (2 * sigma_next))
    return x


# --------------------------------------------------------------------------------------------- SDE-DPM-Solver++


def sde_weights(h: float, eta: float) -> tuple[float, float, float, float]:
    """``(e^{−κh}, w_0, w_1, w_2)`` of the SDE-DPM-Solver++ update for ``κ = 1 + η`` (module docstring).

    ``w_1 = h(1 − φ(z))`` and ``w_2 = h²(1/2 − (1 − φ(z))/z)`` with ``z = κh``, ``φ(z) = (1 − e^{−z})/z``,
    from their Taylor series below ``z = 1e-3`` (the closed forms cancel there).
    """
    z = (1.0 + eta) * h
    decay = math.exp(-z)
    w0 = -math.expm1(-z)
    if z < 1e-3:
        a1 = z / 2 - z * z / 6 + z**3 / 24 - z**4 / 120
        a2 = z / 6 - z * z / 24 + z**3 / 120
    else:
        a1 = 1.0 - w0 / z
        a2 = 0.5 - a1 / z
    return decay, w0, h * a1, h * h * a2


def _sde_multistep(denoiser, x: torch.Tensor, sigmas: torch.Tensor, noise: Any, callback: Callback, order: int,
                   eta: float, s_noise: float, solver_type: str, lower_order_final: bool, name: str) -> torch.Tensor:
    eta, s_noise = _check_nonnegative(eta, "eta"), _check_nonnegative(s_noise, "s_noise")
    if solver_type not in ("midpoint", "heun"):
        raise DiffsampleError(f"solver_type must be 'midpoint' or 'heun', got {solver_type!r}")
    s = sigma_list(sigmas)
    if eta > 0 and s_noise > 0 and any(b > 0 for b in s[1:]):
        require_noise(noise, name, f"eta={eta} > 0")
    orders = planned_orders(s, order, lower_order_final)  # as the ODE solvers (η = 0 is dpmpp_2m/3m)
    outputs: list[torch.Tensor] = []  # newest first
    past: list[float] = []  # λ-lengths of the previous steps, newest first
    for i, k in enumerate(orders):
        sigma, sigma_next = s[i], s[i + 1]
        denoised = denoiser(x, sigma_batch(x, sigma))
        report(callback, i, x, sigma, sigma_next, denoised)
        if sigma_next == 0:  # first-order limit of every update: x' = D
            x = denoised
            continue
        outputs.insert(0, denoised)
        del outputs[order:]
        h = math.log(sigma / sigma_next)
        decay, w0, w1, w2 = sde_weights(h, eta)
        x_new = torch.lerp(denoised, x, decay)
        k = min(k, len(outputs))
        if k >= 2:
            d1 = (outputs[0] - outputs[1]) / past[0]
            if k == 2:
                x_new = x_new + (0.5 * w0 * h if solver_type == "midpoint" else w1) * d1
            else:
                e1 = (outputs[1] - outputs[2]) / past[1]
                d2 = (d1 - e1) / (past[0] + past[1])
                x_new = x_new + w1 * (d1 + past[0] * d2) + (2.0 * w2) * d2
        if eta > 0 and s_noise > 0:
            scale = s_noise * sigma_next * math.sqrt(-math.expm1(-2.0 * eta * h))
            x_new = x_new + scale * _draw(noise, x, sigma, sigma_next)
        x = x_new
        past.insert(0, h)
        del past[order - 1:]
    return x


@register("dpmpp_2m_sde", order=2, stochastic=True)
def dpmpp_2m_sde(denoiser, x: torch.Tensor, sigmas: torch.Tensor, *, noise=None, callback: Callback = None,
                 eta: float = 1.0, s_noise: float = 1.0, solver_type: str = "midpoint",
                 lower_order_final: bool = True) -> torch.Tensor:
    """SDE-DPM-Solver++(2M) (Lu et al. 2022b; k-diffusion's ``dpmpp_2m_sde``): one call per step.

    Args:
        eta: the SDE family's noise η (1: reverse diffusion; 0: DPM-Solver++(2M) ODE).
        s_noise: a factor on the added noise.
        solver_type: ``"midpoint"`` (the paper's, default) or ``"heun"`` (exact weight ``w_1``).
        lower_order_final: for runs under 15 steps, cap the order by the steps left (as DPM-Solver does).

    The registered order is that of the η = 0 method, as for every stochastic solver here; measured in
    distribution (W1 on an exact 1-D mixture, 8–32 NFE) the η = 1 error falls like NFE^-1.9.
    """
    return _sde_multistep(denoiser, x, sigmas, noise, callback, 2, eta, s_noise, solver_type, lower_order_final,
                          "dpmpp_2m_sde")


@register("dpmpp_3m_sde", order=3, stochastic=True)
def dpmpp_3m_sde(denoiser, x: torch.Tensor, sigmas: torch.Tensor, *, noise=None, callback: Callback = None,
                 eta: float = 1.0, s_noise: float = 1.0, lower_order_final: bool = True) -> torch.Tensor:
    """SDE-DPM-Solver++(3M) (k-diffusion's name): quadratic extrapolation of D in λ, one call per step.

    The second-order warm-up step uses the midpoint weight, as :func:`~diffsample.solvers.dpm.dpmpp_3m` does.

    Args:
        eta: the SDE family's noise η (1: reverse diffusion; 0: DPM-Solver++(3M) ODE).
        s_noise: a factor on the added noise.
        lower_order_final: for runs under 15 steps, cap the order by the steps left.
    """
    return _sde_multistep(denoiser, x, sigmas, noise, callback, 3, eta, s_noise, "midpoint", lower_order_final,
                          "dpmpp_3m_sde")


# --------------------------------------------------------------------------------------------- predictor–corrector


STEP_RULES = ("auto", "sample", "batch", "sigma")
AUTO_SAMPLE_DIM = 64
"""``step_rule="auto"`` uses the per-sample rule from this many dimensions per sample on (module docstring)."""


def langevin_step_size(score: torch.Tensor, z: torch.Tensor, sigma: float, snr: float, step_rule: str = "auto"
                       ) -> torch.Tensor:
    """The Langevin step ``ε`` per sample (shape ``(B,)``) for the score ``s``, the noise ``z`` at level σ.

    * ``"sample"``: Song et al. (2021, Algorithm 5) ``ε = 2 (r ‖z‖/‖s‖)²`` per sample (ε = 0 where ``s = 0``);
    * ``"batch"``: the same with ``‖z‖`` and ``‖s‖`` averaged over the batch (the paper's code);
    * ``"sigma"``: ``ε = 2 r² σ²``: ``‖z‖²`` replaced by its mean ``d`` and ``‖s‖²`` by ``d/σ²``, an upper
      bound of the Fisher information ``E‖s‖²`` of ``p_σ`` (``J(X + σZ) ≤ J(σZ) = d/σ²``, Stam 1959; the
      bound is reached when σ dominates the data's scale). So ``ε`` is at most the per-sample step of a
      sample with a typical score, and on a Gaussian component of variance ``v ≥ σ²`` the discretised
      chain's stationary variance ``v/(1 − ε/(2v))`` is inflated by at most ``1/(1 − r²)``;
    * ``"auto"``: ``"sample"`` when a sample has at least :data:`AUTO_SAMPLE_DIM` entries, else ``"sigma"``
      (the ratio ``‖z‖²/‖s‖²`` of the per-sample rule is ``v·F(d, d)``-distributed near a Gaussian
      component: infinite mean for ``d ≤ 2``, relative spread ``≈ 2/sqrt(d)`` for large d).
    """
    if step_rule not in STEP_RULES:
        raise DiffsampleError(f"step_rule must be one of {', '.join(STEP_RULES)}; got {step_rule!r}")
    batch = score.shape[0]
    if step_rule == "auto":
        step_rule = "sample" if score[0].numel() >= AUTO_SAMPLE_DIM else "sigma"
    if step_rule == "sigma":
        return torch.full((batch,), 2.0 * snr * snr * sigma * sigma, dtype=score.dtype, device=score.device)
    s_norm = score.reshape(batch, -1).norm(dim=1)
    z_norm = z.reshape(batch, -1).norm(dim=1)
    if step_rule == "batch":
        s_norm, z_norm = s_norm.mean().expand_as(s_norm), z_norm.mean().expand_as(z_norm)
    positive = s_norm > 0
    ratio = torch.where(positive, snr * z_norm / torch.where(positive, s_norm, torch.ones_like(s_norm)),
                        torch.zeros_like(s_norm))
    return 2.0 * ratio.square()


def langevin_correct(denoiser, x: torch.Tensor, sigma: float, noise: Any, *, snr: float = 0.16, steps: int = 1,
                     step_rule: str = "auto", callback: Callback = None, i: int = 0) -> torch.Tensor:
    """``steps`` Langevin corrector steps at level σ > 0 (Song et al. 2021, Algorithm 4, α = 1).

    Each step: ``s = (D(x, σ) − x)/σ²`` (the score), ``z`` from ``noise(x, σ, σ)``, and
    ``x ← x + ε s + sqrt(2ε) z`` with the step size ``ε`` of :func:`langevin_step_size` (``step_rule``).
    """
    snr = _check_nonnegative(snr, "snr")
    if step_rule not in STEP_RULES:
        raise DiffsampleError(f"step_rule must be one of {', '.join(STEP_RULES)}; got {step_rule!r}")
    if sigma <= 0:
        raise DiffsampleError(f"Langevin correction needs sigma > 0, got {sigma}")
    shape = (-1,) + (1,) * (x.dim() - 1)
    for _ in range(int(steps)):
        denoised = denoiser(x, sigma_batch(x, sigma))
        report(callback, i, x, sigma, sigma, denoised)
        score = (denoised - x) / (sigma * sigma)
        z = _draw(noise, x, sigma, sigma)
        eps = langevin_step_size(score, z, sigma, snr, step_rule).reshape(shape)
        x = x + eps * score + (2.0 * eps).sqrt() * z
    return x


def pc_cost(n_steps: int, ends_at_zero: bool = True, sigmas: Any = None, *, predictor: str = "euler",
            snr: float = 0.16, corrector_steps: int = 1, step_rule: str = "auto",
            predictor_options: dict[str, Any] | None = None) -> int:
    """The registry's cost hook for :func:`pc` (exact for any levels): each step is one call of the predictor on
    ``[σ_i, σ_{i+1}]`` plus ``corrector_steps`` calls when ``σ_{i+1} > 0``."""
    pspec, options = spec(predictor), dict(predictor_options or {})
    if n_steps < 1:
        return 0
    inner = pspec.nfe(1, ends_at_zero=False, **options) + int(corrector_steps)
    last = pspec.nfe(1, ends_at_zero, **options) + (0 if ends_at_zero else int(corrector_steps))
    return (n_steps - 1) * inner + last


@register("pc", order=1, evals_per_step=2, saves_last_eval=True, stochastic=True, cost=pc_cost)
def pc(denoiser, x: torch.Tensor, sigmas: torch.Tensor, *, noise=None, callback: Callback = None,
       predictor: str = "euler", snr: float = 0.16, corrector_steps: int = 1, step_rule: str = "auto",
       predictor_options: dict[str, Any] | None = None) -> torch.Tensor:
    """Predictor–corrector sampling (Song et al. 2021, Algorithms 2–5): a predictor step, then Langevin.

    Args:
        predictor: a registered, non-adaptive solver run on each step ``[σ_i, σ_{i+1}]`` alone (a
            multistep solver therefore acts as its first-order start); ``"euler"`` by default,
            ``"ddpm"`` / ``"euler_ancestral"`` give the paper's reverse-diffusion predictor.
        snr: the corrector's signal-to-noise ratio ``r`` (0.16: the paper's CIFAR-10 VE setting).
        corrector_steps: Langevin steps after each predictor step that ends above σ = 0.
        step_rule: ``"auto"`` (default: the paper's per-sample rule from 64 dimensions per sample on, else
            ``"sigma"``), ``"sample"`` (the paper's per-sample snr rule), ``"batch"`` (its code's
            batch-averaged norms) or ``"sigma"`` (``ε = 2 snr² σ²``); see :func:`langevin_step_size`.
        predictor_options: options passed to the predictor.

    NFE per step: the predictor's, plus ``corrector_steps`` (none on the step into σ = 0); the registry's
    cost hook :func:`pc_cost` counts any configuration.
    """
    corrector_steps = int(corrector_steps)
    if corrector_steps < 0:
        raise DiffsampleError(f"corrector_steps must be >= 0, got {corrector_steps}")
    pspec = spec(predictor)
    if pspec.adaptive or predictor in ("pc", "restart"):
        raise DiffsampleError(f"predictor {predictor!r} cannot run one step at a time; use a fixed-step solver")
    s = sigma_list(sigmas)
    if corrector_steps > 0 and snr > 0 and any(b > 0 for b in s[1:]):
        require_fresh_noise(noise, "pc", "Langevin corrector steps draw fresh noise at one level")
    options = dict(predictor_options or {})
    for i in range(len(s) - 1):
        step_callback = None if callback is None else _offset_callback(callback, i)
        x = pspec.fn(denoiser, x, sigmas[i:i + 2], noise=noise, callback=step_callback, **options)
        if s[i + 1] > 0 and corrector_steps > 0:
            x = langevin_correct(denoiser, x, s[i + 1], noise, snr=snr, steps=corrector_steps, step_rule=step_rule,
                                 callback=callback, i=i)
    return x


def _offset_callback(callback: Any, offset: int) -> Any:
    def shifted(info: dict[str, Any]) -> None:
        callback({**info, "i": info["i"] + offset})

    return shifted
