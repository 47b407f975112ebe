"""Linear multistep solvers on the σ-space PF-ODE: LMS, iPNDM and variable-step iPNDM.

The probability-flow ODE in σ-space (Karras et al. 2022, eq. 4 with s(t) = 1, σ(t) = t) is

    dx/dσ = d(x, σ) := (x − D(x, σ)) / σ   (= ε̂, the predicted noise),

so one step is ``x(σ') = x(σ) + ∫_σ^{σ'} d dτ``. An Adams–Bashforth (AB) method replaces the
integrand by the polynomial through the last ``k`` slopes ``d_i, d_{i−1}, …, d_{i−k+1}`` at
``σ_i, σ_{i−1}, …`` (one model call per step, the slopes are kept in locals), which gives

    x_{i+1} = x_i + Σ_{j<k} w_j d_{i−j},   w_j = ∫_{σ_i}^{σ_{i+1}} ℓ_j(τ) dτ,

with ``ℓ_j`` the Lagrange basis on those nodes: the variable-step Adams–Bashforth method (Hairer,
Nørsett & Wanner, *Solving ODEs I*, §III.5). This is k-diffusion's ``lms`` sampler, the variable-step
iPNDM of Zhou et al. (2024, "Fast ODE-based Sampling for Diffusion Models in Around 5 Steps") and
DEIS's ρAB (Zhang & Chen 2023, with ρ = σ): three names for one method, which here share
:func:`lagrange_integrals`. The weights are exact integrals of polynomials in float64 (k-diffusion
uses adaptive quadrature), computed for all steps before the first model call.

iPNDM (improved PNDM, introduced with DEIS by Zhang & Chen 2023; Zhou et al. 2024) uses the fixed
uniform-step AB weights ``h·[1]``, ``h·[3/2, −1/2]``, ``h·[23, −16, 5]/12``,
``h·[55, −59, 37, −9]/24`` with ``h = σ_{i+1} − σ_i``, whatever the earlier steps were. On steps uniform in σ these
equal the exact weights; on other grids they only match the first two Taylor terms, so for order ≥ 2
the local error is ``O(h²·Δh)`` and the method is second order on smoothly varying grids (Karras,
log-SNR), fourth order only on σ-uniform ones.

Order planning and the step into σ = 0
--------------------------------------
Every method starts with lower orders (warm-up: step ``i`` uses ``min(order, i + 1)`` slopes). A
warm-up Euler step has local error ``O(h_0²)``, so the global error of a warm-started AB-``k`` run is
``O(h^k) + O(h_0²)``: asymptotically second order on any grid whose first step shrinks like ``1/n``.
The first steps are at high σ, where the trajectory is nearly straight (curvature ``~ Var(x0)/σ³``)
and the PF-ODE contracts perturbations by ``~σ_end/σ_start`` on the way down, so the term is small:
on a smooth 2-D mixture it takes over tAB-4's error from n ≈ 50 when σ_max = 10 and from n ≈ 300 when
σ_max = 80 (``tests/test_deis.py`` measures the slope 2; the order-``k`` tests use a grid whose first
steps shrink like ``1/n²``).

``lower_order_final=True`` (default) takes a final step into σ = 0 at first order, so the walk ends
exactly on ``D(x, σ_{n−1})`` as the solver contract asks. A higher order there integrates fine — the
slopes used were all taken at σ > 0 and the weights integrate their polynomial up to τ = 0 — but the
step is ``σ_min`` long while the slopes are spaced ``h = σ_{n−2} − σ_min``, and extrapolating over
``σ_min/h`` spacings multiplies the network's rounding error in ε̂ by about ``(σ_min/h)^{k−1}``: on
log-SNR steps σ_min/h grows like ``n/log(σ_max/σ_min)`` (≈ 100 at n = 1000), and with a float16
network 1000 LMS steps into 0 on the ring2d and mixture64 beds end at an RMSE of 0.03–0.06 (Karras)
and 0.3–0.45 (log-SNR) from the exact solution instead of ≤ 2.5e-4 with a first-order last step. The
first-order step costs only ``O(σ_min² |dε̂/dσ|)``: with float64 networks and 3–40 steps the two
choices mostly differ by < 1 %, at most 1.6× either way (iPNDM at ≤ 10 steps on ring2d). Unlike
DPM-Solver in λ (where the step into σ = 0 is infinitely long), the steps before it keep their
order: capping them too (diffusers' rule) was more often worse than better at 5–15 steps.
``lower_order_final=False`` keeps the full order on that step (worth it only when σ_min is not
small, e.g. a hand-made ``[80, 10, 1, 0]``). Schedules that end at σ_min > 0 are not affected.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable

import numpy as np
import torch
from numpy.typing import ArrayLike

from ..errors import DiffsampleError
from .common import Callback, report, sigma_batch, sigma_list
from .registry import register

__all__ = ["monic_from_roots", "lagrange_integrals", "history", "adams_bashforth", "check_order", "step_orders",
           "plan_weights", "multistep_walk", "lms", "ipndm", "ipndm_v"]

#: ``Coefficients(sig, steps, k)``: for the steps ``steps`` (indices into the float64 sigma array ``sig``),
#: all taken at order ``k``, the weights of ``d_i, d_{i−1}, …, d_{i−k+1}``, shape ``(len(steps), k)``.
Coefficients = Callable[[np.ndarray, np.ndarray, int], np.ndarray]

MAX_ORDER = 4

#: Uniform-step Adams–Bashforth weights of orders 1–4 (newest slope first), per unit step.
AB_UNIFORM: tuple[tuple[float, ...], ...] = (
    (1.0,),
    (3 / 2, -1 / 2),
    (23 / 12, -16 / 12, 5 / 12),
    (55 / 24, -59 / 24, 37 / 24, -9 / 24),
)


def monic_from_roots(roots: ArrayLike) -> np.ndarray:
    """Monomial coefficients ``c_0, …, c_q`` (lowest first) of ``Π_m (u − r_m)`` over the last axis, float64."""
    roots = np.asarray(roots, dtype=np.float64)
    c = np.ones(roots.shape[:-1] + (1,))
    for m in range(roots.shape[-1]):
        r = roots[..., m:m + 1]
        zero = np.zeros_like(r)
        c = np.concatenate([zero, c], axis=-1) - r * np.concatenate([c, zero], axis=-1)
    return c


def lagrange_integrals(nodes: ArrayLike, a: ArrayLike, b: ArrayLike) -> np.ndarray:
    """Exact ``w_j = ∫_a^b ℓ_j(τ) dτ`` for the Lagrange basis ``ℓ_j`` on the distinct ``nodes`` (float64).

    ``nodes`` has shape ``(…, k)`` and ``a``, ``b`` shape ``(…)`` (any number of steps at once); the
    result has the shape of ``nodes``. In the scaled variable ``u = (τ − a)/(b − a)`` the nodes are
    ``r_m = (t_m − a)/(b − a)`` and, with ``c_n`` the monomial coefficients of ``Π_{m≠j} (u − r_m)``,

        w_j = (b − a) ∫_0^1 Π_{m≠j} (u − r_m) du / Π_{m≠j} (r_j − r_m)
            = (b − a) Σ_n c_n/(n + 1) / Π_{m≠j} (r_j − r_m):

    the polynomial is integrated exactly. For an Adams–Bashforth step (``a`` the newest node, the
    earlier ones on the far side of ``a`` from ``b``) every ``r_m ≤ 0``, so all ``c_n ≥ 0`` and the
    sum has no cancellation however unequal the steps (e.g. a last step σ_min → 0).
    """
    t = np.asarray(nodes, dtype=np.float64)
    a = np.asarray(a, dtype=np.float64)[..., None]
    h = np.asarray(b, dtype=np.float64)[..., None] - a
    r = (t - a) / h
    k = t.shape[-1]
    weights = np.empty_like(r)
    for j in range(k):
        others = np.delete(r, j, axis=-1)
        integral = (monic_from_roots(others) / np.arange(1, k + 1)).sum(axis=-1)
        weights[..., j] = h[..., 0] * integral / np.prod(r[..., j:j + 1] - others, axis=-1)
    return weights


def history(values: np.ndarray, steps: np.ndarray, k: int) -> np.ndarray:
    """``values[i], values[i−1], …, values[i−k+1]`` for each step ``i`` in ``steps``: shape ``(len(steps), k)``."""
    return values[steps[:, None] - np.arange(k)]


def check_order(order: int, max_order: int, solver: str) -> int:
    """Validate an ``order`` option (an integer in ``1 … max_order``) and return it as ``int``."""
    integral = isinstance(order, numbers.Integral) or (isinstance(order, float) and order.is_integer())
    if isinstance(order, bool) or not integral or not 1 <= order <= max_order:
        raise DiffsampleError(f"{solver}: order must be an integer from 1 to {max_order}, got {order!r}")
    return int(order)


def step_orders(n_steps: int, order: int, cap_by_steps_left: bool) -> list[int]:
    """Order of each step: ``min(order, i + 1)`` (warm-up), and with ``cap_by_steps_left`` also
    ``≤ n_steps − i`` (DPM-Solver's and diffusers' ``lower_order_final`` rule, used in λ by :mod:`.dpm`)."""
    return [min(order, i + 1, n_steps - i) if cap_by_steps_left else min(order, i + 1) for i in range(n_steps)]


def plan_weights(sig: np.ndarray, orders: list[int], coefficients: Coefficients) -> list[list[float]]:
    """The weights of every step, computed before the walk: one vectorised call per distinct order."""
    weights: list[list[float]] = [[] for _ in orders]
    kinds = np.asarray(orders)
    for k in sorted(set(orders)):
        steps = np.flatnonzero(kinds == k)
        for i, row in zip(steps.tolist(), coefficients(sig, steps, k).tolist(), strict=True):
            weights[i] = row
    return weights


def multistep_walk(denoiser, x: torch.Tensor, sigmas: torch.Tensor, coefficients: Coefficients, order: int,
                   lower_order_final: bool, callback: Callback) -> torch.Tensor:
    """Run a linear multistep method on the slopes ``d = (x − D)/σ``: one model call per step.

    ``coefficients`` gives the weights of ``d_i, …, d_{i−k+1}`` for each step ``σ_i → σ_{i+1}``, all
    computed before the first call; the update is ``x + Σ_j w_j d_{i−j}``. Orders warm up; with
    ``lower_order_final`` a last step into σ = 0 is first order and returns ``D``.
    """
    s = sigma_list(sigmas)
    orders = step_orders(len(s) - 1, order, False)
    if lower_order_final and s[-1] == 0:
        orders[-1] = 1
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


def adams_bashforth(sig: np.ndarray, steps: np.ndarray, k: int) -> np.ndarray:
    """Variable-step AB weights in σ: ``∫_{σ_i}^{σ_{i+1}} ℓ_j`` on the nodes ``σ_i, …, σ_{i−k+1}``."""
    return lagrange_integrals(history(sig, steps, k), sig[steps], sig[steps + 1])


def _ipndm_fixed(sig: np.ndarray, steps: np.ndarray, k: int) -> np.ndarray:
    """iPNDM: the uniform-step AB weights times the step ``h = σ_{i+1} − σ_i``."""
    return (sig[steps + 1] - sig[steps])[:, None] * np.asarray(AB_UNIFORM[k - 1])


@register("lms", order=4)
def lms(denoiser, x: torch.Tensor, sigmas: torch.Tensor, *, noise=None, callback: Callback = None, order: int = 4,
        lower_order_final: bool = True) -> torch.Tensor:
    """Linear multistep (k-diffusion's LMS): variable-step Adams–Bashforth on ε̂ in σ, order 1–4.

    Args:
        order: number of slopes used (1 = Euler); warm-up uses fewer on the first steps.
        lower_order_final: take a last step into σ = 0 at first order, ending on ``D`` (default on,
            see the module docstring).
    """
    order = check_order(order, MAX_ORDER, "lms")
    return multistep_walk(denoiser, x, sigmas, adams_bashforth, order, lower_order_final, callback)


@register("ipndm", order=2)
def ipndm(denoiser, x: torch.Tensor, sigmas: torch.Tensor, *, noise=None, callback: Callback = None,
          order: int = 4, lower_order_final: bool = True) -> torch.Tensor:
    """iPNDM (Zhang & Chen 2023): fixed uniform-step AB weights on ε̂ in σ; order 4 on σ-uniform steps only.

    Registered with order 2: on the smoothly varying grids samplers use (Karras, log-SNR) the fixed
    weights leave an ``O(h²·Δh)`` local error (module docstring), and on grids whose step ratios do
    not vary smoothly it is only first order. :func:`ipndm_v` is the variable-step form.

    Args:
        order: 1–4 (default 4).
        lower_order_final: take a last step into σ = 0 at first order, ending on ``D`` (default on).
    """
    order = check_order(order, MAX_ORDER, "ipndm")
    return multistep_walk(denoiser, x, sigmas, _ipndm_fixed, order, lower_order_final, callback)


@register("ipndm_v", order=4)
def ipndm_v(denoiser, x: torch.Tensor, sigmas: torch.Tensor, *, noise=None, callback: Callback = None,
            order: int = 4, lower_order_final: bool = True) -> torch.Tensor:
    """Variable-step iPNDM (Zhou et al. 2024): exact variable-step AB on ε̂ in σ, order 1–4 (default 4).

    The same method as :func:`lms` (the exact variable-step AB weights are unique); registered
    under its own name so plans and benchmarks written for it run. Options as :func:`lms`. (The
    paper's public code, ``ipndm_v_sampler`` in zju-pi/diff-sampler, groups its order-3 term as
    ``(1 − A·B)/2`` where the AB derivation gives ``(1 − A)/2·B``, ``B`` a ratio of step products; the
    two agree on uniform steps only, so its order-3/4 weights differ from these on other grids.)
    """
    order = check_order(order, MAX_ORDER, "ipndm_v")
    return multistep_walk(denoiser, x, sigmas, adams_bashforth, order, lower_order_final, callback)
