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
σ_max = 80 (``tests/solvers/test_deis.py`` measures the slope 2; the order-``k`` tests use a grid whose first
steps shrink like ``1/n²``).

``lower_order_final=True`` (default) takes a final step into σ = 0 at first order, so the walk ends
exactly on ``D(x, σ_{n−1})``; the steps before it keep their order. Why, with the measurements, is rule 1
of :mod:`._kernel.orders`, the one ``lower_order_final`` rule of the library. Schedules that end at
σ_min > 0 are not affected.
"""

from __future__ import annotations

import torch

from ..contracts import Denoiser, NoiseSource
from ._kernel.adams_bashforth import (
    AB_UNIFORM,
    MAX_ORDER,
    Coefficients,
    adams_bashforth,
    history,
    multistep_walk,
    plan_weights,
    uniform_adams_bashforth,
)
from ._kernel.callbacks import Callback
from ._kernel.lagrange import lagrange_integrals, monic_from_roots
from ._kernel.orders import check_order, step_orders
from .registry import register

__all__ = [
    "monic_from_roots",
    "lagrange_integrals",
    "history",
    "adams_bashforth",
    "check_order",
    "step_orders",
    "plan_weights",
    "multistep_walk",
    "lms",
    "ipndm",
    "ipndm_v",
    "AB_UNIFORM",
    "Coefficients",
    "MAX_ORDER",
]


@register("lms", order=4)
def lms(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    noise: NoiseSource | None = None,
    callback: Callback = None,
    order: int = 4,
    lower_order_final: bool = True,
) -> torch.Tensor:
    """Linear multistep (k-diffusion's LMS): variable-step Adams–Bashforth on ε̂ in σ, order 1–4.

    Args:
        order: number of slopes used (1 = Euler); warm-up uses fewer on the first steps.
        lower_order_final: take a last step into σ = 0 at first order, ending on ``D`` (default on,
            see the module docstring).
    """
    order = check_order(order, MAX_ORDER, "lms")
    return multistep_walk(denoiser, x, sigmas, adams_bashforth, order, lower_order_final, callback)


@register("ipndm", order=2)
def ipndm(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    noise: NoiseSource | None = None,
    callback: Callback = None,
    order: int = 4,
    lower_order_final: bool = True,
) -> torch.Tensor:
    """iPNDM (Zhang & Chen 2023): fixed uniform-step AB weights on ε̂ in σ; order 4 on σ-uniform steps only.

    Registered with order 2: on the smoothly varying grids samplers use (Karras, log-SNR) the fixed
    weights leave an ``O(h²·Δh)`` local error (module docstring), and on grids whose step ratios do
    not vary smoothly it is only first order. :func:`ipndm_v` is the variable-step form.

    Args:
        order: 1–4 (default 4).
        lower_order_final: take a last step into σ = 0 at first order, ending on ``D`` (default on).
    """
    order = check_order(order, MAX_ORDER, "ipndm")
    return multistep_walk(denoiser, x, sigmas, uniform_adams_bashforth, order, lower_order_final, callback)


@register("ipndm_v", order=4)
def ipndm_v(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    noise: NoiseSource | None = None,
    callback: Callback = None,
    order: int = 4,
    lower_order_final: bool = True,
) -> torch.Tensor:
    """Variable-step iPNDM (Zhou et al. 2024): exact variable-step AB on ε̂ in σ, order 1–4 (default 4).

    The same method as :func:`lms` (the exact variable-step AB weights are unique); registered
    under its own name so plans and benchmarks written for it run. Options as :func:`lms`. (The
    paper's public code, ``ipndm_v_sampler`` in zju-pi/diff-sampler, groups its order-3 term as
    ``(1 − A·B)/2`` where the AB derivation gives ``(1 − A)/2·B``, ``B`` a ratio of step products; the
    two agree on uniform steps only, so its order-3/4 weights differ from these on other grids.)
    """
    order = check_order(order, MAX_ORDER, "ipndm_v")
    return multistep_walk(denoiser, x, sigmas, adams_bashforth, order, lower_order_final, callback)
