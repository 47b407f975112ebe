"""UniPC: the unified predictor–corrector of Zhao et al. (2023), in λ = −log σ.

Exponential integrator
----------------------
In σ-space (``x = x0 + σ ε``) the probability-flow ODE written in ``λ = −log σ`` is
``dx/dλ = D(x, λ) − x``. Over one step ``λ_s → λ_t = λ_s + h`` variation of constants gives exactly
(Lu et al. 2022b, "DPM-Solver++", §3 with α = 1)

    x_t = e^{−h} x_s + ∫_0^h e^{−(h−τ)} D(λ_s + τ) dτ
        = e^{−h} x_s + Σ_{k≥0} h^{k+1} φ_{k+1}(−h) D^{(k)}(λ_s),     φ_{k+1}(z) = ∫_0^1 e^{(1−θ)z} θ^k/k! dθ

(*data prediction*, the "++" form), or, with the predicted noise ``ε̂ = (x − D)/σ`` and
``dx/dλ = −σ ε̂`` (*noise prediction*, DPM-Solver's form, Lu et al. 2022a, §3.1),

    x_t = x_s − σ_s Σ_{k≥0} h^{k+1} e^{−h} φ_{k+1}(h) ε̂^{(k)}(λ_s).

Both read ``x_t = A x_s + S Σ_k h^{k+1} I_k(h) F^{(k)}`` with ``F = D``: ``(A, S, I_k) = (e^{−h}, 1,
φ_{k+1}(−h))``, or ``F = ε̂``: ``(1, −σ_s, e^{−h} φ_{k+1}(h))``; the ``k = 0`` term is
``S (1 − e^{−h}) F_s`` (DDIM).

Predictor and corrector (Zhao et al. 2023, §3.1–3.2)
---------------------------------------------------
Earlier model values at ``λ_s + r_m h`` (``r_m < 0``) stand in for the derivatives through
``F_m − F_s ≈ Σ_k (r_m h)^k / k! F^{(k)}``:

    x_t = A x_s + S [ (1 − e^{−h}) F_s + Σ_m w_m (F_m − F_s) ],     Σ_m w_m r_m^k = k! h I_k(h),  k = 1..q.

The paper writes ``w_m = B(h) a_m / r_m``, i.e. ``R_q a = g(h) / B(h)`` with the Vandermonde matrix
``R_q = (r_m^{k−1})``. **UniP-p** uses the ``q = p − 1`` previous points and has order ``p``.
**UniC-p** evaluates ``F_t`` at the predictor's point (the call the next step needs anyway, so no
extra NFE) and redoes the update with that point added as the node ``r = 1`` (``q = p``): its order is
``p + 1`` whatever predictor of order ``p`` came first (Zhao et al. 2023, §3.2). The next step
still starts from ``F_t`` evaluated at the *predicted* point.

``B(h)``: a square system solved exactly makes ``B`` cancel (``B·a = R_q^{-1} g``). It matters where
the one-unknown system is replaced by the ``h → 0`` limit ``1/2`` of its right-hand side, as the
paper's reference implementation does (the order-2 predictor and the order-1 corrector): the weight
is then ``w_1 r_1 = B̃(h)/2``. In the paper's noise-prediction notation ``B(h) = h`` (``bh1``) or
``e^h − 1`` (``bh2``); carried into the form above, ``B̃ = h`` or ``1 − e^{−h}`` for data prediction and
``h e^{−h}`` or ``1 − e^{−h}`` for noise prediction. UniP-2 with ``bh2`` in data prediction is exactly
DPM-Solver++(2M) (Lu et al. 2022b, Alg. 2): ``w_1 r_1 = (1 − e^{−h})/2``. So ``variant`` changes the
warm-up and final lower-order steps of UniPC-3, every predictor step of UniPC-2 and every corrector
step of UniPC-1. The paper recommends ``bh1`` for unconditional sampling with very few steps and
``bh2`` otherwise (guided sampling). In data prediction ``bh1``'s ``h/2`` overshoots the exact
``h φ_2(−h) = 1 − (1 − e^{−h})/h`` badly at the large final steps of a schedule ending near σ = 0.002
(``h ≈ 2–4``): on the Gaussian-mixture beds ``bh1`` only helps order 1 and is 3–10× worse at orders 2–3.

Correcting other predictors
---------------------------
UniC only needs the state the step started from, the model values of the last ``p`` points and the
model value at the predicted point, so it does not care how that point was predicted.
:func:`unic_correct` is that step on its own (data prediction), for any multistep loop;
``predictor="ddim"`` runs it after a DDIM step, and ``order=2, variant="bh2"`` is DPM-Solver++(2M) + UniC-2.

Order planning
--------------
Step ``i`` has order ``min(order, i + 1)`` (warm-up from the history at hand); with
``lower_order_final`` the orders follow the one rule of :mod:`._kernel.orders` (runs under 15 steps
end at decreasing orders, a step more than ``1 + √2`` times longer in λ than the one before is at most
second order), as every λ-space solver here. UniPC's reference code caps the final orders at any step
count; an order-1 final step to ``σ_min > 0`` has local error ``O(h²)`` and would cap the global order
at 2, hence the 15-step limit. No corrector follows the final step (it would need one more call).

The warm-up steps keep their lower local order, so asymptotically the first step caps the global
order: at 2 without the corrector (an Euler step), at 3 with it (Euler + UniC-1). Their error
constants are small, since the first steps lie at high σ where ``D`` barely moves
(``D − E[x0] = O(σ^{-2})``): on a Gaussian from σ = 10 to 0.05, UniPC-3 with the corrector shows slope
3.9 up to 512 steps; without it the slope falls to 2 from about 30 steps (``tests/solvers/test_unipc.py``).

Defaults
--------
``order=2, variant="bh2"``, corrector on (order 3). Measured RMSE against the exact PF-ODE solution
(σ 80 → 0, Karras and log-SNR steps, NFE 5–10, three Gaussian-mixture beds incl. ``ring2d`` and
``mixture64``): order 2 beats order 3 at NFE 5–8 on every bed and schedule (by 1.1–4×) and at NFE 10 in
four of six cases; at NFE 15 they split three to three. This matches diffusers' default order 2.

Two configurations have names of their own, so that step-schedule tables, automatic mode and the command line can
name them like any solver: ``unipc_3m`` (``order=3``: diffusers' ``solver_order=3``, DPM-Solver++(3M) + UniC-3) and
``unipc_bh1`` (``variant="bh1"``: ComfyUI's ``uni_pc``, the paper's choice for few-step unconditional sampling). On the
two Stable Diffusion-table digits networks (``python -m benchmarks defaults --select``) ``unipc_3m`` on Karras steps
has 1.4–2× lower RMSE than order 2 at NFE 15–20 and matches diffusers' best there; at NFE 4–8 neither order
wins consistently.

The step into σ = 0
-------------------
There ``λ_t = +∞``, ``h = ∞``. The first-order update has a finite limit: ``D_s`` (data prediction,
``A = e^{−h} = 0``) or ``x_s − σ_s ε̂_s`` (noise prediction). The data-prediction multistep terms have
none: with ``r_m = δ_m / h → 0`` (``δ_m`` the finite λ-offsets of the earlier points) UniP-2's term is
``(h − 1 + e^{−h}) (D_m − D_s) / δ_m``, which grows linearly in ``h`` (a polynomial in λ extrapolated
to λ = ∞); evaluating the coefficients at ``h = ∞`` gives ``∞·0`` and ``0/0``, which is where
diffusers' UniPC returns NaN into σ = 0 (bh1, or noise prediction) or fails (order ≥ 2 without
``lower_order_final``). So the step into σ = 0 is always this first-order step, in closed form. Its
error is ``O(σ_s²)``: along the ODE ``D(x(σ), σ) = x(σ) − σ dx/dσ = x(0) − σ² x''(0)/2 + O(σ³)``.
(In noise prediction the multistep terms do converge, the weight ``e^{−τ}`` decays, but they only
improve on an ``O(σ_s²)`` error; one rule serves both.) In data prediction the step ignores ``x_s``,
so the corrector of the step before it is skipped (its result would be unused).

Coefficients are computed in float64 host arithmetic; ``φ_k`` from its power series where the
recurrence ``φ_{k+1}(z) = (φ_k(z) − 1/k!)/z`` would cancel, so no step size is too small.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Iterable, Sequence
from typing import Any

import torch

from ..contracts import Denoiser, NoiseSource
from ..errors import DiffsampleError, SigmaError
from ._kernel.callbacks import Callback
from ._kernel.levels import sigma_list
from ._kernel.orders import check_choice, check_order
from ._kernel.unified import (
    MAX_ORDER,
    PREDICTIONS,
    PREDICTORS,
    VARIANTS,
    UnifiedState,
    combine,
    unified_plan,
    unified_start,
    unified_step,
    unified_weights,
)
from .registry import SolverFn, register

__all__ = ["unic_correct", "unipc", "unipc_3m", "unipc_bh1"]


@register("unipc", order=3)
def unipc(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    noise: NoiseSource | None = None,
    callback: Callback = None,
    order: int = 2,
    variant: str = "bh2",
    predict: str = "data",
    predictor: str = "unip",
    corrector: bool = True,
    lower_order_final: bool = True,
    disable_corrector: Iterable[int] = (),
) -> torch.Tensor:
    """UniPC (Zhao et al. 2023): multistep UniP-p predictor + UniC-p corrector, one model call per step.

    Args:
        order: 1–3, the predictor's order ``p`` (default 2, chosen by benchmark, see the module
            docstring); with the corrector the method has order ``p + 1`` (measured in the tests).
        variant: ``"bh2"`` (``B(h) = e^h − 1``, default) or ``"bh1"`` (``B(h) = h``); see the module docstring.
        predict: ``"data"`` (UniPC with the x0 model, the "++" form, default) or ``"noise"`` (with ε̂).
        predictor: ``"unip"`` (UniP-p) or ``"ddim"`` (first-order predictor at every step, so that
            UniC-p on top of DDIM raises the order from 1 to 2).
        corrector: apply UniC after every step but the last (no extra model calls).
        lower_order_final: the order plan of :func:`._kernel.orders.planned_orders` (runs under 15 steps end
            at decreasing orders, sudden λ-step growth at order ≤ 2).
        disable_corrector: step indices ``i`` (the step ``σ_i → σ_{i+1}``) whose result is not corrected,
            e.g. the first steps under strong guidance (diffusers' option of the same name).

    The callback sees each model evaluation: ``x`` is the point it was evaluated at (the predicted,
    not yet corrected state).
    """
    check_choice("unipc", "variant", variant, VARIANTS)
    check_choice("unipc", "predict", predict, PREDICTIONS)
    check_choice("unipc", "predictor", predictor, PREDICTORS)
    order = check_order(order, MAX_ORDER, "unipc")
    s = sigma_list(sigmas)
    is_noise = predict == "noise"
    plan = unified_plan(
        s,
        order,
        variant,
        is_noise,
        predictor,
        bool(corrector),
        bool(lower_order_final),
        frozenset(int(i) for i in disable_corrector),
    )
    state: UnifiedState | torch.Tensor = unified_start(denoiser, x, s[0], is_noise)
    for _ in plan:
        assert isinstance(state, UnifiedState)
        state = unified_step(denoiser, s, plan, is_noise, order - 1, state, state.f, callback)
    return state if isinstance(state, torch.Tensor) else state.x


def _named_configuration(name: str, doc: str, **fixed: Any) -> SolverFn:
    """``unipc`` with the options ``fixed``, registered as ``name`` (its other options pass through; one of the
    fixed options passed again is an error, not silently overridden)."""

    def solver(
        denoiser: Denoiser,
        x: torch.Tensor,
        sigmas: torch.Tensor,
        *,
        noise: NoiseSource | None = None,
        callback: Callback = None,
        **options: Any,
    ) -> torch.Tensor:
        clash = sorted(set(options) & set(fixed))
        if clash:
            raise DiffsampleError(f"{name} is unipc with {fixed}; pass {', '.join(clash)} to unipc instead")
        return unipc(denoiser, x, sigmas, noise=noise, callback=callback, **fixed, **options)

    solver.__name__ = solver.__qualname__ = name
    solver.__doc__ = doc
    # unipc's own options less the fixed ones, so that plans check options against it (``plan._check_options``)
    full = inspect.signature(unipc)
    solver.__signature__ = full.replace(  # type: ignore[attr-defined]
        parameters=[p for p in full.parameters.values() if p.name not in fixed]
    )
    return register(name, order=3)(solver)


unipc_3m = _named_configuration(
    "unipc_3m",
    """UniPC with the third-order predictor, UniP-3 + UniC-3 (diffusers' solver_order=3).

    :func:`unipc` with ``order=3``. Its global order is 3, set by the warm-up steps (module docstring); the
    higher-order terms pay off where the steps are short (NFE ≳ 15). Other options as :func:`unipc`.""",
    order=3,
)

unipc_bh1 = _named_configuration(
    "unipc_bh1",
    """UniPC with B(h) = h, the bh1 variant (ComfyUI's uni_pc).

    :func:`unipc` with ``variant="bh1"``, which Zhao et al. (2023) recommend for unconditional sampling with very
    few steps. Other options as :func:`unipc`.""",
    variant="bh1",
)


def unic_correct(
    x: torch.Tensor,
    denoised: Sequence[torch.Tensor],
    sigmas: Sequence[float],
    denoised_next: torch.Tensor,
    sigma_next: float,
    *,
    variant: str = "bh2",
) -> torch.Tensor:
    """UniC-p (data prediction) after *any* predictor: the corrected state at ``sigma_next``.

    Args:
        x: the (corrected) state at ``sigmas[-1]`` the predictor started from.
        denoised: ``D`` at the last ``p`` points visited, oldest first, the last at ``sigmas[-1]``; the
            corrector's order ``p`` is ``len(denoised)``, 1–3.
        sigmas: the noise levels of ``denoised``, strictly decreasing and positive.
        denoised_next: ``D(x_pred, sigma_next)`` at the predictor's output (the next step's model call).
        sigma_next: the level the predictor stepped to, ``0 < sigma_next < sigmas[-1]``.

    After a predictor of order ``p`` the result has order ``p + 1`` (Zhao et al. 2023, §3.2):
    DDIM/Euler + UniC-1 is second order, DPM-Solver++(2M) + UniC-2 (= ``unipc`` with ``order=2``,
    ``variant="bh2"``) third order. There is no corrector into σ = 0 (the new node would sit at λ = ∞).
    """
    check_choice("unipc", "variant", variant, VARIANTS)
    sig = [float(v) for v in sigmas]
    sigma_next = float(sigma_next)
    if len(sig) != len(denoised) or not 1 <= len(sig) <= MAX_ORDER:
        raise DiffsampleError(
            f"unic_correct needs 1 to {MAX_ORDER} denoised values with one sigma each, "
            f"got {len(denoised)} values and {len(sig)} sigmas"
        )
    if not all(a > b for a, b in zip(sig, sig[1:], strict=False)) or not sig[-1] > sigma_next > 0:
        raise SigmaError(f"unic_correct needs strictly decreasing sigmas > sigma_next > 0, got {sig} and {sigma_next}")
    lam = [-math.log(v) for v in sig]
    h = -math.log(sigma_next) - lam[-1]
    nodes = [(lam[-1 - m] - lam[-1]) / h for m in range(1, len(lam))]
    u = unified_weights(h, nodes, sig[-1], False, variant, corrector=True)
    return combine(x, u, denoised[-1], list(reversed(denoised[:-1])), denoised_next)
