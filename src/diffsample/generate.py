"""``diffsample.generate``: the default solver and step schedule for an NFE budget.

The choice is a small table indexed by the budget, fixed by the side-by-side benchmark
(``python -m benchmarks beds --peers``, evidence in the README), never fitted per model. The walk never
spends more than ``nfe`` model evaluations: classifier-free guided denoisers, which cost 2 per
call, get half as many calls.

:func:`configure` turns a budget (or a tuned plan, or a solver and step-schedule name of the user's) into
the walk to run; :func:`generate` runs it within the budget, and the ``diffsample sample`` command uses
the same :func:`configure`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import torch

from . import contracts, solvers, steps
from ._deprecation import RenamedAttribute, renamed_keyword
from .denoisers import CallCounter
from .errors import BudgetError, DiffsampleError, SigmaError
from .plan import Plan
from .sampling import sample

__all__ = ["DefaultChoice", "Walk", "configure", "default_choice", "default_sigmas", "generate"]


@dataclass(frozen=True)
class DefaultChoice:
    """A solver, its options and a step schedule (a name in :data:`diffsample.steps.SCHEDULES`)."""

    solver: str
    step_schedule: str
    options: dict[str, Any] = field(default_factory=dict)
    step_schedule_options: dict[str, Any] = field(default_factory=dict)

    schedule = RenamedAttribute("step_schedule")
    """Deprecated spelling of ``step_schedule``."""
    schedule_options = RenamedAttribute("step_schedule_options")
    """Deprecated spelling of ``step_schedule_options``."""


# (largest budget it applies to, choice); see the README's "Choosing the default" for the evidence:
# over the three exact beds, DPM-Solver-2M on log-SNR steps has the best geometric-mean error ratio to
# the per-cell best of 17 solvers × 3 schedules at NFE 3–6 (1.30–1.35, worst 1.95), iPNDM on log-SNR
# steps at NFE 8–20 (1.52 at 8–10, 3.35 at 15–20 where the digits bed's basin hits dominate). Both
# agree with the papers (Lu et al. 2022 for DPM-Solver-2 with log-SNR steps at few NFE; Zhou et al.
# 2024 for iPNDM as the best training-free multistep method around 10 NFE).
DEFAULT_TABLE: tuple[tuple[int, DefaultChoice], ...] = (
    (6, DefaultChoice("dpm_solver_2m", "logsnr")),
    (1_000_000, DefaultChoice("ipndm", "logsnr")),
)


def default_choice(nfe: int) -> DefaultChoice:
    """The default configuration for a budget of ``nfe`` model evaluations."""
    if int(nfe) != nfe or nfe < 1:
        raise BudgetError(f"nfe must be a positive integer number of model evaluations, got {nfe!r}")
    for limit, choice in DEFAULT_TABLE:
        if nfe <= limit:
            return choice
    return DEFAULT_TABLE[-1][1]


def default_sigmas(
    nfe: int, sigma_min: float, sigma_max: float, calls_per_eval: int = 1
) -> tuple[DefaultChoice, torch.Tensor]:
    """The default choice and its noise levels for ``nfe`` evaluations over ``[sigma_min, sigma_max]`` → 0.

    ``calls_per_eval`` is the number of model evaluations one denoiser call costs (2 under CFG).
    """
    return default_choice(nfe), configure(nfe, sigma_min, sigma_max, calls_per_eval=calls_per_eval).sigmas


@dataclass(frozen=True)
class Walk:
    """What :func:`configure` decided: the noise levels, the solver and its options, and where they came from.

    ``step_schedule`` is the step-schedule name, or ``"plan"`` for a tuned plan's levels; ``nfe`` the budget in
    model evaluations the walk must stay within.
    """

    sigmas: torch.Tensor
    solver: str
    options: dict[str, Any]
    step_schedule: str
    nfe: int

    schedule = RenamedAttribute("step_schedule")
    """Deprecated spelling of ``step_schedule``."""


@renamed_keyword("schedule", "step_schedule")
def configure(
    nfe: int | None = None,
    sigma_min: float | None = None,
    sigma_max: float | None = None,
    *,
    calls_per_eval: int = 1,
    plan: Plan | str | os.PathLike[str] | None = None,
    solver: str | None = None,
    step_schedule: str | None = None,
) -> Walk:
    """The walk for a budget of ``nfe`` model evaluations over ``[sigma_min, sigma_max]`` → 0, or for a plan.

    Without a plan the table's choice (:func:`default_choice`) fills in whatever ``solver`` and ``step_schedule``
    leave open, and the solver takes as many steps as the budget buys.

    Args:
        nfe: the budget in model evaluations (a guided call counts 2).
        sigma_min, sigma_max: the noise-level span.
        calls_per_eval: model evaluations one denoiser call costs (2 under classifier-free guidance).
        plan: a :class:`~diffsample.Plan` (or the path of one): it replaces the default table. ``nfe``,
            ``sigma_min`` and ``sigma_max`` may then be left out; any given must agree with the plan (its cost
            within ``nfe``, its first level ``sigma_max``, its lowest positive level at least ``sigma_min``).
        solver: a registered solver name instead of the table's (with ``nfe``; its steps fill the budget).
        step_schedule: a step-schedule name (:data:`diffsample.steps.SCHEDULES`) instead of the table's
            (``schedule=`` is its deprecated spelling).
    """
    if solver is not None and solvers.spec(solver).adaptive:
        raise BudgetError(
            f"solver {solver!r} chooses its own steps (error control), so it cannot keep a budget of "
            f"model evaluations; call diffsample.sample(..., solver={solver!r}) without a budget, "
            "or pick a fixed-step solver"
        )
    if plan is not None:
        if solver is not None or step_schedule is not None:
            raise DiffsampleError("a plan fixes the solver and the noise levels; pass no solver or step schedule too")
        plan = _checked_plan(plan, nfe, sigma_min, sigma_max, calls_per_eval)
        budget = plan.nfe * calls_per_eval if nfe is None else nfe
        return Walk(plan.sigma_tensor(), plan.solver, dict(plan.options), "plan", budget)
    if nfe is None or sigma_min is None or sigma_max is None:
        raise BudgetError("generate() needs nfe, sigma_min and sigma_max (or a plan)")
    choice = default_choice(nfe)
    name = choice.solver if solver is None else solver
    options = dict(choice.options) if solver is None else {}
    step_options = choice.step_schedule_options if step_schedule is None else {}
    step_schedule = choice.step_schedule if step_schedule is None else step_schedule
    n_steps = solvers.spec(name).steps_for_nfe(_calls(nfe, calls_per_eval))
    sigmas = steps.get(step_schedule)(n_steps, sigma_min, sigma_max, **step_options)
    return Walk(sigmas, name, options, step_schedule, nfe)


def generate(
    denoiser: contracts.Denoiser,
    x: torch.Tensor,
    *,
    nfe: int | None = None,
    sigma_min: float | None = None,
    sigma_max: float | None = None,
    noise: contracts.NoiseSource | None = None,
    callback: contracts.StepCallback | None = None,
    plan: Plan | str | os.PathLike[str] | None = None,
) -> torch.Tensor:
    """Sample with the best default configuration for a budget of ``nfe`` model evaluations, or with a tuned plan.

    Args:
        denoiser: a σ-space denoiser ``D(x, sigma) -> x0_hat``.
        x: the state at ``sigma_max`` (from pure noise: ``sigma_max · z``).
        nfe: the budget in model evaluations (a guided call counts 2); never exceeded.
        sigma_min, sigma_max: the noise-level span; the walk ends at σ = 0.
        plan: a :class:`diffsample.Plan` from :func:`diffsample.tune` (or the path of one): it replaces the
            default table. ``nfe``, ``sigma_min`` and ``sigma_max`` may then be left out; any given must
            agree with the plan (its cost within ``nfe``, its first level ``sigma_max``, its lowest
            positive level at least ``sigma_min``). A model with a noise schedule (``denoiser.noise_schedule``)
            supplies the span not given, so a plan tuned for another span is refused, not run.

    Returns:
        The state at σ = 0.

    Several threads may call it at once on one denoiser: the budget check counts this call's own evaluations
    (:class:`~diffsample.denoisers.CallCounter`), not the shared model's total.
    """
    den = CallCounter(denoiser)  # this call's own evaluations: other threads may walk the same model
    if plan is not None:  # a model's own span, when it has one, must contain the plan's
        sigma_min, sigma_max = _span_of(den, sigma_min, sigma_max)
    walk = configure(nfe, sigma_min, sigma_max, calls_per_eval=den.nfe_per_call, plan=plan)
    out = sample(den, x, walk.sigmas, solver=walk.solver, noise=noise, callback=callback, **walk.options)
    spent = den.nfe
    if spent > walk.nfe:  # a guard on the promise, not an expected path
        raise BudgetError(f"generate spent {spent} model evaluations, over the budget of {walk.nfe}")
    return out


def _span_of(den: object, sigma_min: float | None, sigma_max: float | None) -> tuple[float | None, float | None]:
    """``(sigma_min, sigma_max)`` with those not given taken from the model's noise schedule, if it has one."""
    schedule = getattr(den, "noise_schedule", None)
    if schedule is None:
        return sigma_min, sigma_max
    lo = float(schedule.sigma_min) if sigma_min is None else sigma_min
    hi = float(schedule.sigma_max) if sigma_max is None else sigma_max
    return lo, hi


def _calls(nfe: int, calls_per_eval: int) -> int:
    """Denoiser calls a budget of ``nfe`` evaluations buys at ``calls_per_eval`` each (at least one)."""
    calls = nfe // calls_per_eval
    if calls < 1:
        raise BudgetError(f"a budget of {nfe} evaluations buys no call of a denoiser costing {calls_per_eval} each")
    return calls


def _checked_plan(
    plan: Plan | str | os.PathLike[str],
    nfe: int | None,
    sigma_min: float | None,
    sigma_max: float | None,
    per_call: int,
) -> Plan:
    """``plan`` (loaded if a path) after checking it against the budget and span passed with it."""
    if not isinstance(plan, Plan):
        plan = Plan.load(plan)
    if nfe is not None and plan.nfe * per_call > nfe:
        raise BudgetError(f"the plan costs {plan.nfe * per_call} model evaluations, over the budget of {nfe}")
    if sigma_max is not None and abs(plan.sigmas[0] - sigma_max) > 1e-9 * sigma_max:
        raise SigmaError(f"the plan starts at sigma = {plan.sigmas[0]:g}, not at sigma_max = {sigma_max:g}")
    lowest = plan.sigmas[-2] if plan.sigmas[-1] == 0 and len(plan.sigmas) > 1 else plan.sigmas[-1]
    if sigma_min is not None and lowest < sigma_min * (1 - 1e-9):
        raise SigmaError(f"the plan goes down to sigma = {lowest:g}, below sigma_min = {sigma_min:g}")
    return plan
