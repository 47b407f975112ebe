"""DC-Solver: UniPC with dynamic compensation of the predictor–corrector misalignment (Zhao et al. 2024).

Zhao, Wang, Zhou, Lu, "DC-Solver: Improving Predictor-Corrector Diffusion Sampler via Dynamic
Compensation", ECCV 2024 (arXiv:2409.03755; reference code ``wl-zhao/DC-Solver``).

The misalignment
----------------
UniPC (:mod:`.unipc`) evaluates the model at the *predicted* state ``x̃_i`` of step ``i − 1`` and uses that
value twice: in UniC, to correct ``x̃_i`` into ``x_i``, and as the model value ``F_i`` that the next step
``λ_i → λ_{i+1}`` integrates from ``x_i``. ``F_i = F(x̃_i, λ_i)`` does not belong to the corrected state
``x_i`` it is paired with; evaluating at ``x_i`` would cost one more call per step.

Dynamic compensation (Zhao et al. 2024, §4.1)
--------------------------------------------
Before step ``i`` (``i ≥ K``, ``K = dc_order``, default 2) the value ``F_i`` is replaced by the Lagrange
polynomial through the last ``K + 1`` model values, in the log-SNR ``λ = −log σ``, read at a shifted time

    λ*_i = λ_{i−1} + ρ_i (λ_i − λ_{i−1}),    F̂_i = Σ_{j=0..K} F_{i−j} Π_{m≠j} (λ*_i − λ_{i−m}) / (λ_{i−j} − λ_{i−m}),

where ``F_{i−1}, …, F_{i−K}`` are the (already compensated) values of the earlier steps. ``F̂_i`` then
serves everywhere ``F_i`` did: the predictor of step ``i``, its corrector, the history of later steps and
later interpolations (the reference implementation overwrites its model-output buffer the same way).
``ρ_i = 1`` puts ``λ*_i`` on the node ``λ_i``, so ``F̂_i = F_i``: the neutral ratio, which this solver skips,
so that ``ratios = [1, …, 1]`` *is* :func:`~.unipc.unipc` bit for bit. Steps ``i < K`` (too few points)
are never compensated. The ratios are found per step on a few calibration samples against a reference
trajectory (:func:`diffsample.tuning.dc.search_dc_ratios`) and stored in a plan.

Difference from the reference code: it interpolates in the network's own time variable (VP ``t`` or
the discrete timestep), which σ-space does not have; here the variable is ``λ = −log σ``, the one every
exponential-integrator solver of this library steps in (the log-SNR of the original model). The
ratios therefore mean the same thing for any network parameterisation, but are not interchangeable
with ratios searched by the reference code.

Each step costs one model call, as in UniPC: ``n`` steps cost ``n`` NFE (the compensation is a linear
combination of stored values).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import torch

from ..contracts import Denoiser, NoiseSource
from ..errors import DiffsampleError
from ._kernel.callbacks import Callback
from ._kernel.lagrange import lagrange_at
from ._kernel.levels import sigma_list
from ._kernel.orders import check_choice, check_order
from ._kernel.unified import (
    MAX_ORDER,
    PREDICTIONS,
    PREDICTORS,
    VARIANTS,
    UnifiedState,
    Update,
    unified_plan,
    unified_start,
    unified_step,
)
from .registry import register

__all__ = ["DCState", "DCWalk", "dc_solver", "dc_weights", "neutral_ratios", "check_ratios"]

MAX_DC_ORDER = 3


def dc_weights(lams: Sequence[float], ratio: float | torch.Tensor) -> list[Any]:
    """Lagrange weights ``w_j`` with ``F̂ = Σ_j w_j F_{i−j}`` at ``λ* = λ_{i−1} + ρ (λ_i − λ_{i−1})``.

    ``lams = [λ_i, λ_{i−1}, …, λ_{i−K}]`` (newest first, distinct). ``ratio`` may be a float or a
    0-dim tensor (the weights are then differentiable in it, for the search's gradient optimiser).
    """
    return lagrange_at(lams, lams[1] + ratio * (lams[0] - lams[1]))


def neutral_ratios(n_steps: int) -> list[float]:
    """``n_steps`` neutral ratios (1.0): DC-Solver is then exactly UniPC."""
    return [1.0] * n_steps


def check_ratios(ratios: Iterable[float] | None, n_steps: int, dc_order: int) -> list[float]:
    """Validate ``ratios`` (one finite number per step, neutral 1.0 on the first ``dc_order`` steps)."""
    if ratios is None:
        return neutral_ratios(n_steps)
    if isinstance(ratios, str | bytes) or not isinstance(ratios, Iterable):
        raise DiffsampleError(f"dc_solver: ratios must be a list of {n_steps} numbers (one per step), got {ratios!r}")
    values = list(ratios)
    if len(values) != n_steps:
        raise DiffsampleError(f"dc_solver: ratios has {len(values)} entries for {n_steps} steps (one per step)")
    out = []
    for i, r in enumerate(values):
        if isinstance(r, bool) or not isinstance(r, int | float) or not math.isfinite(r):
            raise DiffsampleError(f"dc_solver: ratios[{i}] must be a finite number, got {r!r}")
        if i < dc_order and r != 1.0:
            raise DiffsampleError(
                f"dc_solver: step {i} has only {i} earlier model values, dynamic compensation of "
                f"order {dc_order} needs {dc_order}; ratios[{i}] must be 1.0, got {r!r}"
            )
        out.append(float(r))
    return out


class DCState(NamedTuple):
    """The walk at the start of step ``i``: everything a step needs, held in values (no mutation).

    ``x`` the (corrected) state at ``σ_i``; ``x_at`` the point the last model call was made at;
    ``denoised`` that call's ``D``; ``f`` the integrated output there (``D`` or ``ε̂``), not yet compensated;
    ``hist`` UniPC's earlier outputs (compensated, newest first); ``past`` the earlier
    ``(λ, compensated F)`` pairs the interpolation uses (newest first, at most ``dc_order``).
    """

    i: int
    x: torch.Tensor
    x_at: torch.Tensor
    denoised: torch.Tensor
    f: torch.Tensor
    hist: tuple[torch.Tensor, ...]
    past: tuple[tuple[float, torch.Tensor], ...]


class DCWalk:
    """One DC-Solver walk as explicit steps, so that a search can score a step from a saved state.

    ``start(x)`` makes the first model call; ``step(state, ratio)`` runs step ``state.i`` with ratio ``ρ``
    and returns the next state or, after the last step, the final tensor. The instance holds only the
    walk's fixed plan (levels and coefficients), never tensors, so it may be reused.
    """

    def __init__(
        self,
        sigmas: torch.Tensor,
        *,
        order: int = 2,
        variant: str = "bh2",
        predict: str = "data",
        predictor: str = "unip",
        corrector: bool = True,
        lower_order_final: bool = True,
        disable_corrector: Iterable[int] = (),
        dc_order: int = 2,
    ) -> None:
        check_choice("unipc", "variant", variant, VARIANTS)
        check_choice("unipc", "predict", predict, PREDICTIONS)
        check_choice("unipc", "predictor", predictor, PREDICTORS)
        order = check_order(order, MAX_ORDER, "dc_solver")
        if isinstance(dc_order, bool) or int(dc_order) != dc_order or not 1 <= dc_order <= MAX_DC_ORDER:
            raise DiffsampleError(f"dc_solver: dc_order must be an integer from 1 to {MAX_DC_ORDER}, got {dc_order!r}")
        self.s = sigma_list(sigmas)
        self.lam = [-math.log(v) if v > 0 else math.inf for v in self.s]
        self.noise = predict == "noise"
        self.depth = int(order) - 1
        self.dc_order = int(dc_order)
        self.plan: list[tuple[Update, Update | None]] = unified_plan(
            self.s,
            int(order),
            variant,
            self.noise,
            predictor,
            bool(corrector),
            bool(lower_order_final),
            frozenset(int(i) for i in disable_corrector),
        )

    @property
    def n_steps(self) -> int:
        return len(self.plan)

    def start(self, denoiser: Denoiser, x: torch.Tensor) -> DCState:
        """The state at ``σ_0`` after the first model call."""
        return DCState(*unified_start(denoiser, x, self.s[0], self.noise), ())

    def compensated(self, state: DCState, ratio: float | torch.Tensor) -> torch.Tensor:
        """``F̂_i`` (module docstring); ``F_i`` itself for the neutral ratio or too short a history."""
        if not isinstance(ratio, torch.Tensor) and ratio == 1.0:
            return state.f
        if len(state.past) < self.dc_order:
            raise DiffsampleError(f"dc_solver: step {state.i} cannot be compensated (too few earlier model values)")
        lams = [self.lam[state.i], *(lam for lam, _ in state.past)]
        w = dc_weights(lams, ratio)
        out = state.f * w[0]
        for wj, (_, fj) in zip(w[1:], state.past, strict=True):
            out = out + fj * wj
        return out

    def step(
        self, denoiser: Denoiser, state: DCState, ratio: float | torch.Tensor = 1.0, callback: Callback = None
    ) -> DCState | torch.Tensor:
        """Step ``state.i`` with compensation ratio ``ratio``: the next state, or the result after the last step."""
        f = self.compensated(state, ratio)
        out = unified_step(denoiser, self.s, self.plan, self.noise, self.depth, UnifiedState(*state[:6]), f, callback)
        if isinstance(out, torch.Tensor):
            return out
        past = ((self.lam[state.i], f), *state.past[: self.dc_order - 1])
        return DCState(*out, past)


@register("dc_solver", order=3)
def dc_solver(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    noise: NoiseSource | None = None,
    callback: Callback = None,
    ratios: Sequence[float] | None = None,
    dc_order: int = 2,
    order: int = 2,
    variant: str = "bh2",
    predict: str = "data",
    predictor: str = "unip",
    corrector: bool = True,
    lower_order_final: bool = True,
    disable_corrector: Iterable[int] = (),
) -> torch.Tensor:
    """DC-Solver (Zhao et al. 2024): UniPC whose reused model value is re-interpolated at a searched time.

    Args:
        ratios: one compensation ratio ``ρ_i`` per step (see the module docstring); ``None`` or all 1.0
            is UniPC exactly. The first ``dc_order`` entries must be 1.0. Found by
            :func:`diffsample.tuning.dc.search_dc_ratios`, which stores them in a plan.
        dc_order: degree ``K`` of the Lagrange interpolation through ``K + 1`` model values (1–3, default 2
            as in the paper).
        order, variant, predict, predictor, corrector, lower_order_final, disable_corrector: UniPC's options
            (:func:`diffsample.solvers.unipc.unipc`), same defaults.

    The callback sees each model evaluation, as UniPC's does (``denoised`` uncompensated).
    """
    walk = DCWalk(
        sigmas,
        order=order,
        variant=variant,
        predict=predict,
        predictor=predictor,
        corrector=corrector,
        lower_order_final=lower_order_final,
        disable_corrector=disable_corrector,
        dc_order=dc_order,
    )
    rho = check_ratios(ratios, walk.n_steps, walk.dc_order)
    state: DCState | torch.Tensor = walk.start(denoiser, x)
    for r in rho:
        assert isinstance(state, DCState)
        state = walk.step(denoiser, state, r, callback)
    assert isinstance(state, torch.Tensor)
    return state
