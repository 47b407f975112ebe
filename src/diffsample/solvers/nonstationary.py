"""``nonstationary``: a solver given by its weights, each state a linear combination of the start and every model value.

Every deterministic fixed-step solver of this library that combines model values linearly — DDIM, DPM-Solver(++)
multistep (and singlestep, counting each model call as a step), UniPC with or without corrector, DEIS, iPNDM, the
tuner's ``plan`` — produces states that are linear combinations of the starting state ``x_0`` and the model values
``D_j = D(x_j, σ_j)`` taken so far, with weights that depend on the levels only. Shaul et al. (2024, "Bespoke
Non-Stationary Solvers for Fast Sampling of Diffusion and Flow Models", BNS) take that family as the solver:

    x_{j+1} = w_{j,0} · x_0 + Σ_{k=0..j} w_{j,k+1} · D_k,        D_k = D(x_k, σ_k),    j = 0 … n−1

(their form with the velocity field; in σ-space ``u_k`` is ``(x_k − D_k)/σ_k`` and ``x_k`` lies in the span, so
the families are the same). Row ``j`` of ``weights`` holds ``w_{j,·}`` (``j + 2`` numbers); rows ``0 … n−2`` give
the points where the model is called at ``σ_1 … σ_{n−1}``, the last row gives the state at ``σ_n`` (0 for a walk
into the data). So ``n`` steps cost ``n`` model calls, as for the multistep solvers.

The weights are not hand-made: :func:`diffsample.tuning.fit_weights` fits them to a teacher trajectory (Kim et al.
2024, "Distilling ODE Solvers of Diffusion Models into Smaller Steps", D-ODE, fit such weights step by step by least
squares), and :func:`plan_weights` writes any ``plan`` walk (per-step strategies of :mod:`.plan_solver`) in this form,
exactly, the starting point of the fit. A tuned :class:`~diffsample.Plan` stores them as ``options["weights"]``.
Without weights the solver runs those of the ``plan`` solver's default strategy on the levels given, i.e. it is
DPM-Solver++(2M) (so every generic caller of the registry gets a working solver).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from ..contracts import Denoiser, NoiseSource
from ..errors import DiffsampleError
from ._kernel.callbacks import Callback, report
from ._kernel.levels import sigma_batch, sigma_list
from ._kernel.weighted import weighted_sum
from .plan_solver import plan_options, plan_walk
from .registry import register, spec

__all__ = [
    "check_weights",
    "coefficient_rows",
    "nonstationary",
    "plan_weights",
    "solver_weights",
    "weighted_sum",
    "weighted_walk",
]


def plan_weights(sigmas: Sequence[float], choices: Sequence[dict[str, Any]] | None = None) -> list[list[float]]:
    """The weights of the ``plan`` walk on ``sigmas`` with per-step ``choices`` (:func:`.plan_solver.plan_options`;
    default: the plan solver's defaults, DPM-Solver++(2M)). Exact (:func:`coefficient_rows`)."""
    s = [float(v) for v in sigmas]
    steps = plan_options(len(s) - 1) if choices is None else choices
    return coefficient_rows(lambda model, x0: plan_walk(model, x0, s, steps), s, "plan")


def solver_weights(solver: str, sigmas: Sequence[float] | torch.Tensor, **options: Any) -> list[list[float]]:
    """The weights of the registered ``solver`` (with ``options``) on the levels ``sigmas``, exactly
    (:func:`coefficient_rows`): e.g. ``solver_weights("unipc_3m", sigmas)`` runs, through :func:`nonstationary`,
    the very walk ``diffsample.sample(model, x, sigmas, solver="unipc_3m")`` runs, up to rounding.

    Only deterministic solvers that call the model once per level, in order, at the state of that level, have such
    weights (every one-call-per-step multistep method here); any other (stochastic, several calls per step, error
    control) raises :class:`~diffsample.errors.DiffsampleError`. The solver must also be linear in the model values
    and the start, as every deterministic solver of this library is; a non-linear model wrapper (clipping,
    thresholding) is not part of the solver and does not matter here."""
    info = spec(solver)
    if info.stochastic or info.adaptive or info.evals_per_step != 1 or info.cost is not None:
        raise DiffsampleError(
            f"solver {solver!r} has no nonstationary weights: only deterministic fixed-step solvers with one model "
            "call per step do"
        )
    levels = torch.as_tensor(sigmas, dtype=torch.float64)
    s = sigma_list(levels)
    return coefficient_rows(lambda model, x0: info.fn(model, x0, levels, **options), s, solver)


def coefficient_rows(
    run: Callable[[Denoiser, torch.Tensor], torch.Tensor], sigmas: Sequence[float], name: str
) -> list[list[float]]:
    """The weights of the walk ``run(model, x_0)`` on the levels ``sigmas``, read off by running it on coefficient
    vectors: the start is the unit vector ``e_0`` and a stand-in model returns ``e_{k+1}`` at its ``k``-th call, so
    a linear walk's every state comes out as its weights over ``x_0, D_0, …`` and its output is the last row. The
    stand-in checks that the walk calls it once per positive level, in order, with nothing yet unseen in the
    state; ``name`` is the walk's for that error."""
    s = [float(v) for v in sigmas]
    n = len(s) - 1
    points: list[torch.Tensor] = []

    def unit_model(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        k = len(points)
        at = float(torch.as_tensor(sigma).reshape(-1)[0])
        if k >= n or not math.isclose(at, s[k], rel_tol=1e-9, abs_tol=0.0):
            raise DiffsampleError(f"{name}: the walk does not call the model once at each level, in order, so it "
                                  "has no nonstationary weights")  # fmt: skip
        e = torch.zeros_like(x)
        e[:, 1 + k] = 1.0
        points.append(x[0].clone())
        return e

    x0 = torch.zeros(1, n + 1, dtype=torch.float64)
    x0[0, 0] = 1.0
    out = run(unit_model, x0)
    if len(points) != n or any(bool(p[k + 1 :].any()) for k, p in enumerate(points)):
        raise DiffsampleError(f"{name}: the walk does not call the model once at each level, in order, so it has "
                              "no nonstationary weights")  # fmt: skip
    rows = [points[j + 1][: j + 2].tolist() for j in range(n - 1)]
    rows.append(out[0].tolist())
    return rows


def check_weights(n_steps: int, weights: object) -> list[list[float]]:
    """``weights`` as ``n_steps`` rows of floats, row ``j`` of length ``j + 2``, all finite; else a clear error."""
    if isinstance(weights, str | bytes) or not isinstance(weights, Sequence | torch.Tensor):
        raise DiffsampleError(f"nonstationary: weights must be a list of rows of numbers, got {type(weights).__name__}")
    rows = [r.tolist() if isinstance(r, torch.Tensor) else r for r in weights]
    if len(rows) != n_steps:
        raise DiffsampleError(f"nonstationary: weights has {len(rows)} rows for {n_steps} steps (one row per step)")
    out = []
    for j, row in enumerate(rows):
        if isinstance(row, str | bytes) or not isinstance(row, Sequence) or len(row) != j + 2:
            got = len(row) if isinstance(row, Sequence) else type(row).__name__
            raise DiffsampleError(
                f"nonstationary: weights[{j}] must hold {j + 2} numbers (x_0 and D_0 … D_{j}), got {got}"
            )
        values = []
        for k, v in enumerate(row):
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                raise DiffsampleError(f"nonstationary: weights[{j}][{k}] = {v!r} is not a finite number")
            values.append(float(v))
        out.append(values)
    return out


def weighted_walk(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: Sequence[float],
    weights: Sequence[Sequence[float]],
    *,
    callback: Callback = None,
    keep_basis: list[torch.Tensor] | None = None,
) -> torch.Tensor:
    """The walk of :func:`nonstationary` on checked ``weights`` (float levels). ``keep_basis``, when given, receives
    ``x_0, D_0, …, D_{n−1}`` (the tuner's fit reads them)."""
    s = [float(v) for v in sigmas]
    n = len(s) - 1
    basis = [x]
    x_j = x
    for j in range(n):
        d = denoiser(x_j, sigma_batch(x, s[j]))
        report(callback, j, x_j, s[j], s[j + 1], d)
        basis.append(d)
        x_j = weighted_sum(weights[j], basis)
    if keep_basis is not None:
        keep_basis.extend(basis)
    return x_j


@register("nonstationary", order=2)
def nonstationary(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    noise: NoiseSource | None = None,
    callback: Callback = None,
    weights: Sequence[Sequence[float]] = (),
) -> torch.Tensor:
    """Non-stationary linear solver (BNS form, module docstring): one model call per step.

    Args:
        weights: one row per step ``σ_j → σ_{j+1}``, row ``j`` the ``j + 2`` weights of ``x_0, D_0, …, D_j`` in
            the next state (usually fitted by :func:`diffsample.tuning.tune` and stored in a plan); empty: those of
            DPM-Solver++(2M) on these levels (:func:`plan_weights`).

    Its order is the weights' (2 in the registry: the default's). The callback sees each model call.
    """
    s = sigma_list(sigmas)
    empty = isinstance(weights, Sequence | torch.Tensor) and not isinstance(weights, str) and len(weights) == 0
    rows = plan_weights(s) if empty else check_weights(len(s) - 1, weights)
    return weighted_walk(denoiser, x, s, rows, callback=callback)
