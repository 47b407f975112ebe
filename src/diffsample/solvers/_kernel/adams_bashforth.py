"""Linear multistep methods on the σ-space PF-ODE ``dx/dσ = ε̂ = (x − D)/σ``: weights and the walk.

An Adams–Bashforth (AB) step replaces ε̂ by the polynomial through the last ``k`` slopes
``d_i, d_{i−1}, …`` at ``σ_i, σ_{i−1}, …`` and integrates it over the step:
``x_{i+1} = x_i + Σ_{j<k} w_j d_{i−j}`` with ``w_j = ∫_{σ_i}^{σ_{i+1}} ℓ_j`` (variable-step AB, Hairer, Nørsett &
Wanner, *Solving ODEs I*, §III.5). A family differs only in its weights (:data:`Coefficients`): exact
variable-step AB (``lms``, ``ipndm_v``, DEIS ρAB), fixed uniform-step AB (``ipndm``, PLMS), DEIS's tAB.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ...contracts import Denoiser
from .callbacks import Callback, report
from .lagrange import lagrange_integrals
from .levels import sigma_batch, sigma_list
from .orders import planned_orders

#: ``Coefficients(sig, steps, k)``: for the steps ``steps`` (indices into the float64 sigma array ``sig``),
#: all taken at order ``k``, the weights of ``d_i, d_{i−1}, …, d_{i−k+1}``, shape ``(len(steps), k)``.
Coefficients = Callable[[np.ndarray, np.ndarray, int], np.ndarray]

#: The highest order of the σ-space multistep methods (slopes in the polynomial).
MAX_ORDER = 4

#: Uniform-step Adams–Bashforth weights of orders 1–4 (newest slope first), per unit step.
AB_UNIFORM: tuple[tuple[float, ...], ...] = (
    (1.0,),
    (3 / 2, -1 / 2),
    (23 / 12, -16 / 12, 5 / 12),
    (55 / 24, -59 / 24, 37 / 24, -9 / 24),
)


def history(values: np.ndarray, steps: np.ndarray, k: int) -> np.ndarray:
    """``values[i], values[i−1], …, values[i−k+1]`` for each step ``i`` in ``steps``: shape ``(len(steps), k)``."""
    return values[steps[:, None] - np.arange(k)]


def adams_bashforth(sig: np.ndarray, steps: np.ndarray, k: int) -> np.ndarray:
    """Variable-step AB weights in σ: ``∫_{σ_i}^{σ_{i+1}} ℓ_j`` on the nodes ``σ_i, …, σ_{i−k+1}``."""
    return lagrange_integrals(history(sig, steps, k), sig[steps], sig[steps + 1])


def uniform_adams_bashforth(sig: np.ndarray, steps: np.ndarray, k: int) -> np.ndarray:
    """The uniform-step AB weights times the step ``h = σ_{i+1} − σ_i``, whatever the earlier steps were (iPNDM)."""
    return (sig[steps + 1] - sig[steps])[:, None] * np.asarray(AB_UNIFORM[k - 1])


def plan_weights(sig: np.ndarray, orders: list[int], coefficients: Coefficients) -> list[list[float]]:
    """The weights of every step, computed before the walk: one vectorised call per distinct order."""
    weights: list[list[float]] = [[] for _ in orders]
    kinds = np.asarray(orders)
    for k in sorted(set(orders)):
        steps = np.flatnonzero(kinds == k)
        for i, row in zip(steps.tolist(), coefficients(sig, steps, k).tolist(), strict=True):
            weights[i] = row
    return weights


def multistep_walk(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    coefficients: Coefficients,
    order: int,
    lower_order_final: bool,
    callback: Callback,
) -> torch.Tensor:
    """Run a linear multistep method on the slopes ``d = (x − D)/σ``: one model call per step.

    ``coefficients`` gives the weights of ``d_i, …, d_{i−k+1}`` for each step ``σ_i → σ_{i+1}``, all
    computed before the first call; the update is ``x + Σ_j w_j d_{i−j}``. Orders warm up; with
    ``lower_order_final`` a last step into σ = 0 is first order and returns ``D`` (:mod:`.orders`).
    """
    s = sigma_list(sigmas)
    orders = planned_orders(s, order, lower_order_final, in_lambda=False)
    weights = plan_weights(np.asarray(s, dtype=np.float64), orders, coefficients)
    slopes: list[torch.Tensor] = []  # newest first, at most `order` of them
    for i, (k, w) in enumerate(zip(orders, weights, strict=True)):
        sigma, sigma_next = s[i], s[i + 1]
        denoised = denoiser(x, sigma_batch(x, sigma))
        report(callback, i, x, sigma, sigma_next, denoised)
        if k == 1 and sigma_next == 0:  # Euler into σ = 0 lands exactly on D (the last step)
            x = denoised
            continue
        slopes.insert(0, (x - denoised).div_(sigma))
        del slopes[order:]
        x = torch.add(x, slopes[0], alpha=w[0])
        for wj, d in zip(w[1:], slopes[1:k], strict=True):
            x.add_(d, alpha=wj)
    return x
