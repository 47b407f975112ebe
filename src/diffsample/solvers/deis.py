"""DEIS: the diffusion exponential integrator sampler (Zhang & Chen 2023), tAB and ρAB variants.

For a VP model, DEIS integrates the linear part of the PF-ODE exactly and the ε-prediction by a
polynomial through its last ``k`` values (Zhang & Chen 2023, "Fast Sampling of Diffusion Models with
Exponential Integrator"):

    x̂_{t'} = Ψ(t', t) x_t + Σ_j C_j ε̂_{t_{i−j}},
    C_j = ∫_t^{t'} ½ Ψ(t', τ) g(τ)² / σ_τ · ℓ_j(τ) dτ,

``ℓ_j`` the Lagrange basis on the last ``k`` evaluation times. After the change to σ-space
(``x̃ = x/α``, ``ρ = σ = σ_t/α_t``) the linear part disappears — ``Ψ = 1`` and the weight is ``dρ`` —
so the exponential integrator of ``dx/dσ = ε̂`` is just

    x_{i+1} = x_i + Σ_{j<k} w_j ε̂_{i−j},   w_j = ∫_{σ_i}^{σ_{i+1}} ℓ_j(t(τ)) dτ,

and the two variants differ only in the variable the polynomial lives in:

* ``variant="rhoab"`` (ρAB): ``ℓ_j`` in ρ = σ itself. This is Adams–Bashforth in σ, the same
  method as :func:`~diffsample.solvers.multistep.lms` (weights from
  :func:`~diffsample.solvers.multistep.lagrange_integrals`).
* ``variant="tab"`` (tAB): ``ℓ_j`` in the time ``t`` of the model's own schedule,
  ``t = t_of_sigma(σ)``. A sampler that sees only a σ-space denoiser does not know that schedule,
  so ``t_of_sigma`` is an option. Its default is ``t = log σ`` (equivalently the log-SNR
  ``λ = −log σ``, the time of every exponential integrator here): the ε̂-polynomial is in ``log ρ``.
  That is exactly what diffusers' ``DEISMultistepScheduler`` computes (its only ``algorithm_type``,
  "log-rho" DEIS: Lagrange polynomials in ``log ρ`` integrated against ``dρ``), and it is
  schedule-free: the same sampler for VP, VE, EDM and flow models. ε̂ varies far more evenly in
  ``log σ`` than in σ; on the exact mixture beds at 5–20 steps (Karras and log-SNR, σ 80 → 0) it is
  1.3–5× more accurate than ρAB. For the paper's tAB in a model's own time pass that time, e.g.
  ``t_of_sigma=ContinuousVPLinear().t_of_sigma_space`` (:mod:`diffsample.schedules`).

Coefficients (float64, computed for all steps before the walk)
---------------------------------------------------------------
With ``u = log σ`` the weight is ``w_j = ∫_{u_i}^{u_{i+1}} ℓ_j(t(e^u)) e^u du``, taken by 16-point
Gauss–Legendre quadrature in ``u``; for the default ``t = u`` the integrand ``p(u) e^u`` is entire
and the rule agrees with adaptive quadrature to rounding even for a σ-ratio of e^16 in one step. On
the step into σ = 0 ``u`` runs to −∞: for the default the weight has the closed form
(``v = log(τ/σ_i)``, ``p = ℓ_j`` with monomial coefficients ``p_m``)

    w_j = σ_i ∫_0^{−∞} p(v) e^v dv = −σ_i Σ_m (−1)^m p^{(m)}(0) = −σ_i Σ_m (−1)^m m! p_m,

all terms of one sign, because the roots ``v_m = log(σ_{i−m}/σ_i)`` of ``p`` are ≥ 0. For a given
``t_of_sigma`` the quadrature there is in σ over ``[0, σ_i]`` (``t(σ)`` must then be smooth at 0,
which VP, EDM and flow times are). Order 1 is Euler (``w_0 = σ_{i+1} − σ_i``) for every variant.

Order and final steps as in :mod:`~diffsample.solvers.multistep`: ``order`` counts the ε̂ values
(DEIS's ``r = order − 1``), the first steps warm up with lower orders, and ``lower_order_final``
(default ``True``) takes a last step into σ = 0 at first order, ending on ``D``. That matters more
here than for ρAB: a polynomial in ``log σ`` extrapolated into σ = 0 runs over an infinite
``log σ``-interval (the weights stay finite, since ``∫_0 (log τ)^m dτ`` converges, but the
extrapolation has no accuracy to offer there).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from numpy.polynomial import legendre as nleg

from ..contracts import Denoiser, NoiseSource
from ..errors import DiffsampleError
from ._kernel.adams_bashforth import MAX_ORDER, Coefficients, adams_bashforth, history, multistep_walk
from ._kernel.callbacks import Callback
from ._kernel.lagrange import lagrange_values, monic_from_roots
from ._kernel.levels import sigma_list
from ._kernel.orders import check_order
from .registry import register

__all__ = ["deis", "tab_coefficients"]

TimeMap = Callable[[torch.Tensor], object]

_GL_NODES, _GL_WEIGHTS = nleg.leggauss(16)


def _log_weights_to_zero(log_nodes: np.ndarray, sigma: float) -> np.ndarray:
    """Closed-form ``∫_σ^0 ℓ_j(log τ) dτ`` (module docstring) for one step, ``log_nodes`` newest first."""
    v = log_nodes - log_nodes[0]
    k = len(v)
    signed_factorials = np.array([(-1) ** m * math.factorial(m) for m in range(k)], dtype=np.float64)
    weights = np.empty(k)
    for j in range(k):
        others = np.delete(v, j)
        moments = float(monic_from_roots(others) @ signed_factorials)
        weights[j] = -sigma * moments / np.prod(v[j] - others)
    return weights


def _time_values(t_of_sigma: TimeMap, sigma: np.ndarray) -> np.ndarray:
    """``t_of_sigma`` at the float64 σ array ``sigma``, checked to be finite and of the same shape."""
    t = np.asarray(torch.as_tensor(t_of_sigma(torch.from_numpy(sigma)), dtype=torch.float64), dtype=np.float64)
    if t.shape != sigma.shape:
        raise DiffsampleError(
            f"deis: t_of_sigma must return times of the same shape as its σ tensor {sigma.shape}, got shape {t.shape}"
        )
    if not np.isfinite(t).all():
        raise DiffsampleError("deis: t_of_sigma must return finite times for all σ > 0 of the walk")
    return t


def tab_coefficients(sigmas: torch.Tensor, t_of_sigma: TimeMap | None = None) -> Coefficients:
    """tAB-DEIS weights ``w_j = ∫_{σ_i}^{σ_{i+1}} ℓ_j(t(τ)) dτ`` for the walk over ``sigmas``.

    ``t_of_sigma=None`` means ``t = log σ``. The times the weights need (nodes and quadrature points of
    every step) come from one vectorised call of ``t_of_sigma``; the returned
    :data:`~diffsample.solvers._kernel.adams_bashforth.Coefficients` only evaluates Lagrange polynomials.
    """
    sig = np.asarray(sigma_list(sigmas), dtype=np.float64)
    lo, hi = sig[:-1], sig[1:]
    into_zero = hi == 0
    # Gauss–Legendre in u = log σ from log σ_i to log σ_{i+1} (dσ = σ du); on a step into 0, in σ over [0, σ_i].
    log_hi = np.log(np.where(into_zero, 1.0, hi))
    half = np.where(into_zero, -0.5 * lo, 0.5 * (log_hi - np.log(lo)))
    mid = np.where(into_zero, 0.5 * lo, 0.5 * (log_hi + np.log(lo)))
    abscissae = mid[:, None] + half[:, None] * _GL_NODES
    points = np.where(into_zero[:, None], abscissae, np.exp(abscissae))
    jacobians = half[:, None] * _GL_WEIGHTS * np.where(into_zero[:, None], 1.0, points)
    if t_of_sigma is None:
        t_nodes, t_points = np.log(lo), np.where(into_zero[:, None], np.nan, abscissae)
    else:
        flat = _time_values(t_of_sigma, np.concatenate([lo, points.ravel()]))
        t_nodes, t_points = flat[: len(lo)], flat[len(lo) :].reshape(points.shape)
        if len(t_nodes) > 1 and not (np.all(np.diff(t_nodes) > 0) or np.all(np.diff(t_nodes) < 0)):
            raise DiffsampleError("deis: t_of_sigma must be strictly monotone on the sigmas (distinct times)")

    def coefficients(sig: np.ndarray, steps: np.ndarray, k: int) -> np.ndarray:
        if k == 1:  # Euler, exactly
            return (sig[steps + 1] - sig[steps])[:, None]
        nodes = history(t_nodes, steps, k)
        weights = np.einsum("mkq,mq->mk", lagrange_values(nodes, t_points[steps]), jacobians[steps])
        if t_of_sigma is None:
            for row, i in enumerate(steps.tolist()):
                if into_zero[i]:
                    weights[row] = _log_weights_to_zero(nodes[row], sig[i])
        return weights

    return coefficients


@register("deis", order=3)
def deis(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    noise: NoiseSource | None = None,
    callback: Callback = None,
    order: int = 3,
    variant: str = "tab",
    t_of_sigma: TimeMap | None = None,
    lower_order_final: bool = True,
) -> torch.Tensor:
    """DEIS (Zhang & Chen 2023): multistep exponential integrator on ε̂, tAB in t (default log σ) or ρAB.

    Args:
        order: number of ε̂ values in the polynomial, 1–4 (default 3; 1 is DDIM/Euler).
        variant: ``"tab"`` (polynomial in ``t``) or ``"rhoab"`` (polynomial in σ = Adams–Bashforth).
        t_of_sigma: for ``"tab"``, the model's time as a function of σ (called once with a 1-D
            float64 tensor of σ > 0, returning the times); ``None`` means ``t = log σ`` (diffusers' DEIS).
        lower_order_final: take a last step into σ = 0 at first order, ending on ``D`` (default on).
    """
    order = check_order(order, MAX_ORDER, "deis")
    if variant == "rhoab":
        if t_of_sigma is not None:
            raise DiffsampleError("deis: t_of_sigma only applies to variant='tab' (rhoab is polynomial in σ)")
        coefficients = adams_bashforth
    elif variant == "tab":
        coefficients = tab_coefficients(sigmas, t_of_sigma)
    else:
        raise DiffsampleError(f"deis: variant must be 'tab' or 'rhoab', got {variant!r}")
    return multistep_walk(denoiser, x, sigmas, coefficients, order, lower_order_final, callback)
