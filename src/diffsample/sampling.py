"""``diffsample.sample``: validate the inputs, guard the model, run a solver (a registered name or a function).

The update maths runs in float32 (float64 when x is float64) whatever the network's dtype: x is
promoted before the walk and every denoiser output is cast to that dtype
(:class:`~diffsample.transforms.GuardedDenoiser`). A model output with NaN/Inf raises
:class:`~diffsample.errors.NonFiniteError` naming the step index and σ. All of this is the same whether
``solver`` names a registered solver or is a solver function itself.

Bad inputs are named before the walk: ``x`` with NaN/Inf, noise levels beyond the work dtype's range. A noise
draw with NaN/Inf raises naming the step (:class:`~diffsample.transforms.guard.GuardedNoise`), not the model.
The walk starts from a copy of ``x``, so a model that writes into its input never changes the caller's tensor.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from . import contracts, solvers, steps
from .denoisers import as_denoiser
from .errors import DiffsampleError, NonFiniteError, ShapeError, SigmaError
from .plan import Plan
from .transforms.base import work_dtype
from .transforms.guard import GuardedDenoiser, GuardedNoise, all_finite
from .transforms.walk_context import walk_context

__all__ = ["GuardedDenoiser", "sample", "work_dtype"]


def sample(
    denoiser: contracts.Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor | None = None,
    solver: str | contracts.Solver | None = None,
    noise: contracts.NoiseSource | None = None,
    callback: contracts.StepCallback | None = None,
    *,
    plan: Plan | str | os.PathLike[str] | None = None,
    check_finite: bool = True,
    **options: Any,
) -> torch.Tensor:
    """Walk ``x`` (the state at ``sigmas[0]``) down the noise levels ``sigmas`` with ``solver``.

    Args:
        denoiser: ``D(x, sigma) -> x0_hat`` in σ-space (a :class:`~diffsample.denoisers.Denoiser`
            or any callable of that form, which then gets an NFE counter).
        x: the state at ``sigmas[0]``, shape ``(B, …)``; from pure noise, ``x = sigmas[0] · z``.
        sigmas: strictly decreasing, non-negative noise levels (e.g. :func:`diffsample.steps.karras`).
        solver: a name from :func:`diffsample.solvers.available` (default ``"euler"``), or a solver function
            ``solver(denoiser, x, sigmas, *, noise, callback, **options)`` (:class:`~diffsample.contracts.Solver`),
            which gets the same validation, float32 work dtype and NaN guard as a registered one.
        noise: a noise source (:func:`diffsample.noise.seeded`) for stochastic solvers.
        callback: called after each model evaluation of a step with a dict (i, x, sigma, sigma_next,
            denoised).
        plan: a :class:`diffsample.Plan` (or the path of one saved as JSON) from :func:`diffsample.tune`:
            its noise levels, solver and options are used. ``sigmas``, ``solver`` and options may still be
            passed if they agree with the plan's; a conflict raises.
        check_finite: raise on NaN/Inf model outputs (default on).
        **options: solver-specific options.

    Returns:
        The state at ``sigmas[-1]`` in the work dtype (float32, or float64 for float64 input).
    """
    if plan is not None:
        sigmas, solver, options = _from_plan(plan, sigmas, solver, options)
    if sigmas is None:
        raise SigmaError("sample() needs sigmas (a step schedule such as diffsample.steps.karras(...)) or a plan")
    solver = "euler" if solver is None else solver
    sigmas = steps.validate(sigmas)
    if not isinstance(x, torch.Tensor):
        raise ShapeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() < 1 or x.shape[0] < 1:
        raise ShapeError(f"x must have shape (B, …) with B >= 1, got {tuple(x.shape)}")
    fn = solvers.get(solver) if isinstance(solver, str) else _solver_function(solver)
    dtype = work_dtype(x.dtype)
    _check_inputs(x, sigmas, dtype, check_finite)
    guarded = GuardedDenoiser(as_denoiser(denoiser), sigmas, dtype, check_finite)
    if noise is not None and check_finite:
        noise = GuardedNoise(noise, sigmas)
    start = x.to(dtype, copy=True)  # the model may write into its input; never into the caller's x
    with walk_context(sigmas, fn, **options):  # what step-aware transforms (CFG++) and per-walk state (APG) read
        out = fn(guarded, start, sigmas, noise=noise, callback=callback, **options)
    if check_finite and not all_finite(out):
        raise NonFiniteError(f"solver {_solver_name(solver)!r} produced NaN/Inf although every model output was finite")
    return out


def _check_inputs(x: torch.Tensor, sigmas: torch.Tensor, dtype: torch.dtype, check_finite: bool) -> None:
    """Every level fits the work dtype ``dtype`` (a level beyond it becomes Inf) and, with ``check_finite``,
    ``x`` is finite."""
    largest = torch.finfo(dtype).max
    if float(sigmas[0]) > largest:
        raise SigmaError(
            f"sigmas[0] = {float(sigmas[0]):g} is beyond the range of x's work dtype {dtype} "
            f"(largest {largest:g}); use smaller noise levels or float64 x"
        )
    if check_finite and not all_finite(x):
        kind = "NaN" if bool(torch.isnan(x).any()) else "Inf"
        raise DiffsampleError(f"x contains {kind}; the walk needs a finite starting state")


def _solver_function(solver: object) -> contracts.Solver:
    """``solver`` itself when it is callable (a function following the Solver contract)."""
    if not callable(solver):
        raise DiffsampleError(f"solver must be a registered name or a solver function, got {type(solver).__name__}")
    return solver


def _solver_name(solver: str | contracts.Solver) -> str:
    """A name for messages: the registered name, or the function's own."""
    return solver if isinstance(solver, str) else getattr(solver, "__name__", type(solver).__name__)


def _from_plan(
    plan: Plan | str | os.PathLike[str],
    sigmas: torch.Tensor | None,
    solver: str | contracts.Solver | None,
    options: dict[str, Any],
) -> tuple[torch.Tensor, str, dict[str, Any]]:
    """The levels, solver and options of ``plan``, checked against any passed alongside it."""
    if not isinstance(plan, Plan):
        plan = Plan.load(plan)
    planned = plan.sigma_tensor()
    if sigmas is not None:
        given = steps.validate(sigmas)
        if given.shape != planned.shape or not torch.allclose(given, planned, rtol=1e-12, atol=0.0):
            raise SigmaError("sample() got both sigmas and a plan with different noise levels; pass one of them")
    if solver is not None and solver != plan.solver:
        raise DiffsampleError(f"sample() got solver={solver!r} and a plan for solver {plan.solver!r}")
    clash = [k for k in options if k in plan.options and options[k] != plan.options[k]]
    if clash:
        raise DiffsampleError(f"sample() options {clash} conflict with the plan's; leave them out to use the plan")
    return planned, plan.solver, {**plan.options, **options}
