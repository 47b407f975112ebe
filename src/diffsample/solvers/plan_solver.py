"""``plan``: a multistep exponential integrator whose strategy is chosen per step (what a tuned plan runs).

The unified sampling framework of Liu et al. (2024, "A Unified Sampling Framework for Solver Searching
of Diffusion Probabilistic Models", USF) observes that every exponential-integrator solver (DDIM,
DPM-Solver(++), UniPC, DEIS in λ) is one update rule with a few independent decisions, and that taking
different decisions at different steps lowers the error at a fixed budget. This solver exposes those
decisions as per-step options; the update maths is UniPC's (:mod:`.unipc`), composed, not copied.

One step ``λ_i → λ_{i+1}`` (``λ = −log σ``, ``h = λ_{i+1} − λ_i``) from the state ``x_i``
-------------------------------------------------------------------------------------------
With the σ-space PF-ODE written in λ, ``dx/dλ = D − x = −σ ε̂``, variation of constants gives
exactly (Lu et al. 2022b, §3 with α = 1; Lu et al. 2022a, §3.1)

    x_{i+1} = e^{−h} x_i + ∫_0^h e^{−(h−τ)} D(λ_i + τ) dτ          (prediction="data", the "++" form)
    x_{i+1} = x_i − σ_i ∫_0^h e^{−τ} ε̂(λ_i + τ) dτ,  ε̂ = (x − D)/σ   (prediction="noise")

The model output is replaced by the polynomial (in λ) through its values at the last ``k = order`` points
visited, ``λ_i, λ_{i−1}, …``, and the integral is taken in closed form (UniP-k, Zhao et al. 2023, §3.1;
:func:`~._kernel.unified.unified_weights`): ``order=1`` is DDIM, ``order=3`` the quadratic rule of
DPM-Solver++(3M)/UniP-3.
For ``order=2`` the one unknown weight is UniPC's ``h → 0`` rule ``B(h)/2`` with ``variant`` choosing
``B`` (``"bh2"``: ``1 − e^{−h}``, then data prediction is exactly DPM-Solver++(2M); ``"bh1"``: ``h``),
USF's "low-order derivative estimation" choice. Step ``i`` uses ``min(order_i, i + 1)`` points (warm-up).

``corrector=True`` adds UniC-k (Zhao et al. 2023, §3.2): the model value at the predicted point, which
the next step evaluates anyway, joins the interpolation as the node ``λ_{i+1}`` and the step is redone,
raising its order by one at no extra model call (data prediction: :func:`~.unipc.unic_correct`). That is
USF's choice of where the Taylor expansion of the step draws its points from: the start and the past
(explicit) or also the end (the corrected, implicit-like form). The next step's model value stays the
one taken at the *predicted* point, as in UniPC. No corrector follows the last step (it would need one
more call), and a corrector before a data-prediction step into σ = 0 changes nothing (that step returns
``D`` at the predicted point).

The step into σ = 0 is the exact first-order limit, as in every λ-space solver of this library
(:mod:`.dpm`, :mod:`.unipc`): ``D_i`` (data) or ``x_i − σ_i ε̂_i`` (noise; with a corrected ``x_i`` this
is ``D_i + (x_i − x_i^{pred})``). Every step costs exactly one model call, so ``n`` steps cost ``n`` NFE.

:func:`plan_step` and :func:`plan_correct` are the two halves of a step as functions of the visited
points (:class:`Visit`), so the tuner (:mod:`diffsample.tuning`) can score a step from any state.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, TypeVar

import torch

from ..contracts import Denoiser, NoiseSource
from ..errors import DiffsampleError
from ._kernel.callbacks import Callback, report
from ._kernel.levels import sigma_batch, sigma_list
from ._kernel.unified import (
    MAX_ORDER,
    PREDICTIONS,
    VARIANTS,
    Update,
    combine,
    into_zero_update,
    prediction_output,
    unified_weights,
)
from .registry import register
from .unipc import unic_correct

_T = TypeVar("_T")
PerStep = _T | Sequence[_T]
"""A plan option: one value for every step, or a sequence of one value per step."""

__all__ = [
    "PREDICTIONS",
    "VARIANTS",
    "Visit",
    "WalkState",
    "plan_correct",
    "plan_options",
    "plan_solver",
    "plan_step",
    "plan_walk",
    "step_update",
]


class Visit(NamedTuple):
    """A model evaluation: the level ``sigma``, the point ``x`` it was taken at and ``denoised = D(x, σ)``."""

    sigma: float
    x: torch.Tensor
    denoised: torch.Tensor

    def output(self, noise: bool) -> torch.Tensor:
        """The integrated model output at this point: ``D`` (data prediction) or ``ε̂ = (x − D)/σ`` (noise)."""
        return prediction_output(self.x, self.denoised, self.sigma, noise)


def _nodes(sigmas: Sequence[float], k: int, h: float) -> list[float]:
    """UniPC's ``r_m = (λ_{i−m} − λ_i)/h`` of the ``k − 1`` earlier levels (``sigmas`` newest first)."""
    lam = -math.log(sigmas[0])
    return [(-math.log(s) - lam) / h for s in sigmas[1:k]]


def step_update(
    sigmas: Sequence[float], sigma_next: float, *, prediction: str = "data", order: int = 2, variant: str = "bh2"
) -> Update:
    """The coefficients of one predictor step: ``x' = keep·x + cur·F_i + Σ_m prev[m]·F_{i−1−m}``.

    ``sigmas`` are the levels visited so far, newest (the current level) first; ``F`` is ``D`` or ``ε̂``
    as ``prediction`` says; ``order`` is capped by ``len(sigmas)``. Into σ = 0 this is the first-order
    limit ``D_i`` (``keep = 0, cur = 1`` on ``D``) or ``x − σ_i ε̂_i`` (``keep = 1, cur = −σ_i``).
    """
    noise = prediction == "noise"
    if sigma_next == 0:  # the h = ∞ first-order limit
        return into_zero_update(sigmas[0], noise)
    k = min(int(order), len(sigmas))
    h = math.log(sigmas[0] / sigma_next)
    return unified_weights(h, _nodes(sigmas, k, h), sigmas[0], noise, variant)


def plan_step(
    x: torch.Tensor,
    visits: Sequence[Visit],
    sigma_next: float,
    *,
    prediction: str = "data",
    order: int = 2,
    variant: str = "bh2",
) -> torch.Tensor:
    """The predicted state at ``sigma_next`` from ``x`` at ``visits[0].sigma`` (UniP-k, module docstring).

    Args:
        x: the state at the current level (after any correction).
        visits: the model evaluations so far, newest first; ``visits[0]`` is at the current level.
        sigma_next: the next level, ``0 ≤ sigma_next < visits[0].sigma``.
        prediction, order, variant: the step's strategy; ``order`` is capped by ``len(visits)``.
    """
    noise = prediction == "noise"
    u = step_update([v.sigma for v in visits], sigma_next, prediction=prediction, order=order, variant=variant)
    if u.keep == 0.0:  # into σ = 0 with data prediction: exactly D_i
        return visits[0].denoised
    return combine(x, u, visits[0].output(noise), [v.output(noise) for v in visits[1 : 1 + len(u.prev)]])


def plan_correct(
    x: torch.Tensor,
    visits: Sequence[Visit],
    new: Visit,
    *,
    prediction: str = "data",
    order: int = 2,
    variant: str = "bh2",
) -> torch.Tensor:
    """UniC-k: the corrected state at ``new.sigma`` given the model value ``new`` at the predicted point.

    ``x`` and ``visits`` are as for :func:`plan_step` (the step's start); ``0 < new.sigma < visits[0].sigma``.
    """
    k = min(int(order), len(visits))
    if prediction == "data":
        past = visits[:k][::-1]  # oldest first
        return unic_correct(
            x, [v.denoised for v in past], [v.sigma for v in past], new.denoised, new.sigma, variant=variant
        )
    cur = visits[0]
    h = math.log(cur.sigma / new.sigma)
    u = unified_weights(h, _nodes([v.sigma for v in visits], k, h), cur.sigma, True, variant, corrector=True)
    return combine(x, u, cur.output(True), [v.output(True) for v in visits[1:k]], new.output(True))


def _per_step(name: str, value: PerStep[Any], n: int) -> list[Any]:
    if isinstance(value, str | bool | int | float):
        return [value] * n
    values = list(value)
    if len(values) != n:
        raise DiffsampleError(f"plan: option {name!r} has {len(values)} entries for {n} steps")
    return values


def plan_options(
    n_steps: int,
    prediction: PerStep[str] = "data",
    order: PerStep[int] = 2,
    corrector: PerStep[bool] = False,
    variant: PerStep[str] = "bh2",
) -> list[dict[str, Any]]:
    """Validate the options of :func:`plan_solver` and return one dict of choices per step."""
    preds = _per_step("prediction", prediction, n_steps)
    orders = _per_step("order", order, n_steps)
    corrs = _per_step("corrector", corrector, n_steps)
    variants = _per_step("variant", variant, n_steps)
    out = []
    for i in range(n_steps):
        if preds[i] not in PREDICTIONS:
            raise DiffsampleError(f"plan: prediction[{i}] must be 'data' or 'noise', got {preds[i]!r}")
        if variants[i] not in VARIANTS:
            raise DiffsampleError(f"plan: variant[{i}] must be 'bh2' or 'bh1', got {variants[i]!r}")
        o = orders[i]
        if isinstance(o, bool) or not isinstance(o, int | float) or int(o) != o or not 1 <= o <= MAX_ORDER:
            raise DiffsampleError(f"plan: order[{i}] must be an integer from 1 to {MAX_ORDER}, got {o!r}")
        if not isinstance(corrs[i], bool):
            raise DiffsampleError(f"plan: corrector[{i}] must be true or false, got {corrs[i]!r}")
        out.append({"prediction": preds[i], "order": int(o), "corrector": corrs[i], "variant": variants[i]})
    return out


@register("plan", order=3)
def plan_solver(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    noise: NoiseSource | None = None,
    callback: Callback = None,
    prediction: str | Sequence[str] = "data",
    order: int | Sequence[int] = 2,
    corrector: bool | Sequence[bool] = False,
    variant: str | Sequence[str] = "bh2",
) -> torch.Tensor:
    """Per-step exponential integrator (USF-style, Liu et al. 2024): one model call per step.

    Every option is one value for all steps or a list with one entry per step ``σ_i → σ_{i+1}``
    (``len(sigmas) − 1`` entries); a tuned :class:`diffsample.Plan` stores such lists.

    Args:
        prediction: ``"data"`` (integrate ``D``) or ``"noise"`` (integrate ``ε̂``).
        order: 1–3, the points of the interpolating polynomial (capped by the points visited so far).
        corrector: apply UniC after the step, reusing the next step's model call (ignored on the last step).
        variant: ``"bh2"`` or ``"bh1"``, the one-point derivative estimate (UniPC's ``B(h)``).

    The defaults (data, order 2, no corrector, bh2) are DPM-Solver++(2M) without lower-order final steps.
    The callback sees each model evaluation at the point it was taken (the predicted state).
    """
    s = sigma_list(sigmas)
    choices = plan_options(len(s) - 1, prediction, order, corrector, variant)
    return plan_walk(denoiser, x, s, choices, callback=callback)


#: The state of a walk at the start of step ``i``: ``(i, x_i, visits)`` with ``visits[0]`` the call at ``σ_i``.
WalkState = tuple[int, torch.Tensor, list[Visit]]


def plan_walk(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: Sequence[float],
    choices: Sequence[dict[str, Any]],
    *,
    callback: Callback = None,
    resume: WalkState | None = None,
    keep: Callable[[WalkState], None] | None = None,
) -> torch.Tensor:
    """The loop of :func:`plan_solver` on validated per-step ``choices`` (:func:`plan_options`).

    ``resume`` starts at step ``i`` from a state recorded earlier instead of from ``x`` at ``sigmas[0]``;
    ``keep`` receives the state at the start of every step ``i ≥ 1``. That state depends only on
    ``sigmas[:i + 1]`` and ``choices[:i]``, so the tuner can re-run a candidate from the first step it
    changes; the result is the same, bit for bit, as a walk from the start.
    """
    s = [float(v) for v in sigmas]
    n = len(s) - 1
    if resume is None:
        first, visits = 0, [Visit(s[0], x, denoiser(x, sigma_batch(x, s[0])))]
    else:
        first, x, visits = resume
    for i in range(first, n):
        c = choices[i]
        report(callback, i, visits[0].x, s[i], s[i + 1], visits[0].denoised)
        x_pred = plan_step(x, visits, s[i + 1], prediction=c["prediction"], order=c["order"], variant=c["variant"])
        if i == n - 1:
            return x_pred
        new = Visit(s[i + 1], x_pred, denoiser(x_pred, sigma_batch(x, s[i + 1])))
        if c["corrector"]:
            x = plan_correct(x, visits, new, prediction=c["prediction"], order=c["order"], variant=c["variant"])
        else:
            x = x_pred
        visits = [new, *visits[: MAX_ORDER - 1]]
        if keep is not None:
            keep((i + 1, x, visits))
    return x
