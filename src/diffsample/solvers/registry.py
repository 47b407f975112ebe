"""The solver registry: names (k-diffusion's where one exists) mapped to solver functions.

A solver is a plain function ``solver(denoiser, x, sigmas, *, noise=None, callback=None, **options)``
returning the state at ``sigmas[-1]``; all history lives in the call's locals. The registry also
records each solver's order and its cost in model evaluations, so budgets can be turned into step
counts without running anything.

A solver whose cost depends on its options or on where the levels lie (Restart's extra walks,
PC's corrector steps) registers a ``cost`` hook ``cost(n_steps, ends_at_zero, sigmas=None, **options)``:
given ``sigmas`` it returns the exact count of one run, without them an upper bound valid for every
schedule of ``n_steps`` steps, so budgets turned into steps are never exceeded.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import BudgetError, UnknownNameError

__all__ = ["SolverSpec", "register", "available", "get", "spec"]

SolverFn = Callable[..., torch.Tensor]
CostFn = Callable[..., int]
"""``cost(n_steps, ends_at_zero, sigmas=None, **options) -> int`` (module docstring)."""


@dataclass(frozen=True)
class SolverSpec:
    """What the registry knows about a solver.

    ``evals_per_step`` model calls per step; ``saves_last_eval`` is true when the step into σ = 0
    needs one call fewer (Heun-type methods end with an Euler step there, a final σ = 0 step of a
    second-stage method needs no second stage). ``order`` is the global order of accuracy of the
    deterministic method (0 for none), ``stochastic`` whether it consumes noise, ``adaptive`` whether it
    chooses its own steps (error control) and only uses the ends of ``sigmas``. ``cost``, when set,
    replaces the ``evals_per_step`` count (module docstring); the other fields then describe the
    solver's default configuration. ``min_steps``: the fewest steps a budget may buy
    (:meth:`steps_for_nfe` raises below it rather than return a walk that does not use the method).
    """

    name: str
    fn: SolverFn
    order: int
    evals_per_step: int = 1
    saves_last_eval: bool = False
    stochastic: bool = False
    adaptive: bool = False
    summary: str = ""
    cost: CostFn | None = None
    min_steps: int = 1

    def nfe(self, n_steps: int, ends_at_zero: bool = True, **options: Any) -> int:
        """Model evaluations for ``n_steps`` steps (``ends_at_zero``: the last step goes to σ = 0).

        ``options`` are the solver's options; only a solver with a ``cost`` hook reads them, and then the
        count is an upper bound over schedules (:meth:`nfe_on` is exact for given levels).
        """
        if self.cost is not None:
            return int(self.cost(n_steps, ends_at_zero, sigmas=None, **options))
        total = self.evals_per_step * n_steps
        if ends_at_zero and self.saves_last_eval and n_steps > 0:
            total -= self.evals_per_step - 1
        return total

    def nfe_on(self, sigmas: torch.Tensor | Sequence[float], **options: Any) -> int:
        """Model evaluations of one run on the levels ``sigmas`` with ``options`` (exact for fixed-step solvers)."""
        n_steps, ends_at_zero = len(sigmas) - 1, float(sigmas[-1]) == 0.0
        if self.cost is not None:
            return int(self.cost(n_steps, ends_at_zero, sigmas=sigmas, **options))
        return self.nfe(n_steps, ends_at_zero)

    def steps_for_nfe(self, nfe: int, ends_at_zero: bool = True, **options: Any) -> int:
        """The largest number of steps whose cost (with ``options``) does not exceed ``nfe`` model evaluations."""
        if int(nfe) != nfe or nfe < 1:
            raise BudgetError(f"NFE budget must be a positive integer, got {nfe!r}")
        n = 0
        while self.nfe(n + 1, ends_at_zero, **options) <= nfe:
            n += 1
        if n < self.min_steps:
            steps = "one step" if self.min_steps == 1 else f"{self.min_steps} steps (fewer do not use the method)"
            raise BudgetError(
                f"solver {self.name!r} needs at least {self.nfe(self.min_steps, ends_at_zero, **options)} model "
                f"evaluations for {steps}; the budget is {nfe}"
            )
        return n


_REGISTRY: dict[str, SolverSpec] = {}


def register(
    name: str,
    *,
    order: int,
    evals_per_step: int = 1,
    saves_last_eval: bool = False,
    stochastic: bool = False,
    adaptive: bool = False,
    cost: CostFn | None = None,
    min_steps: int = 1,
) -> Callable[[SolverFn], SolverFn]:
    """Decorator adding a solver function to the registry under ``name`` (``cost``, ``min_steps``: see
    :class:`SolverSpec`)."""

    def wrap(fn: SolverFn) -> SolverFn:
        if name in _REGISTRY:
            raise ValueError(f"solver {name!r} is registered twice")
        doc = (fn.__doc__ or "").strip().splitlines()
        _REGISTRY[name] = SolverSpec(
            name,
            fn,
            order,
            evals_per_step,
            saves_last_eval,
            stochastic,
            adaptive,
            doc[0] if doc else "",
            cost,
            min_steps,
        )
        return fn

    return wrap


def available() -> list[str]:
    """Names of all registered solvers, sorted."""
    return sorted(_REGISTRY)


def spec(name: str) -> SolverSpec:
    """The :class:`SolverSpec` registered under ``name``; the error lists the valid names."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownNameError("solver", name, list(_REGISTRY)) from None


def get(name: str) -> SolverFn:
    """The solver function registered under ``name``."""
    return spec(name).fn


def describe(name: str) -> dict[str, Any]:
    s = spec(name)
    return {
        "name": s.name,
        "order": s.order,
        "evals_per_step": s.evals_per_step,
        "stochastic": s.stochastic,
        "adaptive": s.adaptive,
        "summary": s.summary,
    }
