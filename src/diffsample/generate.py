"""``diffsample.generate``: the default solver and step schedule for an NFE budget.

The choice is a small table per model family (VP ε/x0/v, EDM/VE, flow matching with and without shift:
:func:`diffsample.model_family.model_family`), indexed by the budget, fixed by a documented selection procedure over
several beds and networks (``python -m benchmarks defaults --select``, :data:`FAMILY_TABLES`), never fitted per
model; ``auto=True`` instead picks among a few candidates for the model at hand (:mod:`diffsample.auto`). The walk
never spends more than ``nfe`` model evaluations: classifier-free guided denoisers, which cost 2 per call, get half
as many calls.

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
from .model_family import SHORT_SPAN_FAMILIES, model_family, model_span, noise_schedule_of, short_span
from .plan import Plan
from .sampling import sample
from .schedules import NoiseSchedule

__all__ = [
    "DEFAULT_TABLE",
    "FAMILY_TABLES",
    "GUIDED_TABLES",
    "SHORT_SPAN_TABLES",
    "DefaultChoice",
    "Walk",
    "configure",
    "default_choice",
    "default_sigmas",
    "generate",
    "schedule_levels",
]


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


_ALL = 1_000_000


def _rows(*rows: tuple[int, str, str]) -> tuple[tuple[int, DefaultChoice], ...]:
    return tuple((limit, DefaultChoice(solver, schedule)) for limit, solver, schedule in rows)


_VP_TABLE = _rows(
    (6, "unipc_3m", "kl_optimal+trailing"),
    (12, "ipndm", "logsnr+trailing"),
    (25, "unipc_3m", "logsnr"),
    (_ALL, "unipc_3m", "logsnr+trailing"),
)

_VP_SHORT_TABLE = _rows(
    (6, "dpm_solver_3m", "karras+trailing"),
    (12, "unipc_3m", "logsnr"),
    (25, "unipc_3m", "karras"),
    (_ALL, "dpmpp_3m", "logsnr"),
)

FAMILY_TABLES: dict[str, tuple[tuple[int, DefaultChoice], ...]] = {
    "vp_eps": _VP_TABLE,
    "vp_x0": _VP_TABLE,
    "vp_v": _VP_TABLE,
    "edm": _rows(
        (6, "unipc_bh1", "kl_optimal+trailing"),
        (12, "dpm_solver_3m", "karras+trailing"),
        (25, "unipc_3m", "logsnr+trailing"),
        (_ALL, "unipc_3m", "logsnr"),
    ),
    "flow": _rows(
        (12, "ipndm", "time_uniform+trailing"),
        (_ALL, "ipndm", "time_uniform"),
    ),
    "flow_shift": _rows(
        (6, "ipndm", "time_uniform+trailing"),
        (12, "unipc", "kl_optimal+trailing"),
        (25, "ipndm", "kl_optimal+trailing"),
        (_ALL, "ipndm", "kl_optimal"),
    ),
}
"""Per model family (:data:`diffsample.model_family.FAMILIES`): ``(largest budget it applies to, choice)`` rows
(VP models on a short span, Stable Diffusion's table, take :data:`SHORT_SPAN_TABLES` instead).

Chosen by ``python -m benchmarks defaults --select`` (:func:`benchmarks.defaults_bench.select_defaults`), run on
2026-12-06 and again in full on 2026-12-07 (the VP rows split by span; the others reproduced), the EDM rows again on
2026-12-07 with networks (below) with this library: 13
fixed-step solvers (UniPC also as ``unipc_3m`` and ``unipc_bh1``) × 8 step schedules (``logsnr``, ``karras``,
``kl_optimal``, ``time_uniform`` where the model has a time, each also ending the trailing way, ``+trailing``: no
call at σ_min, :data:`diffsample.steps.TRAILING`) on every unit of a family — the exact beds ``ring2d``,
``mixture64``, ``digits`` on the family's span (EDM ``[0.002, 80]``, DDPM table ``[0.01, 157.4]`` and Stable
Diffusion's table ``[0.029, 14.6]`` for VP, rectified flow ``[0.001, 999]``, with shift 3 ``[0.003, 2997]``) and the
digits networks: VP ε ``digits_uncond``, ``digits_cond`` (DDPM table), ``digits_uncond_sd`` and the 16×16
``digits16_uncond_sd`` and ``digits16_uncond_sd_small`` (Stable Diffusion's table); flow matching ``digits_flow`` and
the 16×16 ``digits16_flow`` (each also with shift 3); EDM: ``digits_uncond``, ``digits_cond`` and ``digits16_flow``
seen as bare σ-space functions on EDM's span (``*_edmview``: the same ODE, the schedule hidden, as a k-diffusion-style
wrapper presents a model) — at NFE 4, 5, 6, 8, 10, 15, 20, 30, 50 on two batches of 64
noises of their own (seeds 2 and 3, pooled; the figures report on seed 0). Each error (batch RMSE to the exact end
point, DOP853, on a bed; to the network's ODE end point, a 477-step DPM-Solver++(3M) teacher, on a network) is
divided by the best diffusers / k-diffusion configuration's on the same span — the figure the defaults are judged by.
Per budget range (4–6, 8–10, 15–20, 30–50) the choice has the smallest worst-case ratio over all cells of the table
(the family; for VP, its units on the DDPM span here and those on Stable Diffusion's in :data:`SHORT_SPAN_TABLES`), a
bed's ratio divided by 3 where the family has networks (the networks decide, a bed vetoes beyond 3×; errors below
1e-3 on a network, one 8-bit level, 2/255, on a bed count as that; scores within 2 % tie, broken by the geometric
mean), never the best of one unit. Worst-case ratio to the best peer on the networks / on the beds of each choice:

=========== ========================== ========================== ========================== =========================
family      NFE 4–6                    NFE 8–10                   NFE 15–20                  NFE 30–50 (and above)
=========== ========================== ========================== ========================== =========================
VP ε/x0/v   UniPC-3, KL-opt. trailing  iPNDM, log-SNR trailing    UniPC-3, log-SNR           UniPC-3, log-SNR trailing
            0.63 / 1.38                0.80 / 1.88                0.91 / 2.47                1.06 / 5.05
EDM / VE    UniPC-bh1, KL-opt. trail.  DPM-Solver-3M, Karras tr.  UniPC-3, log-SNR trailing  UniPC-3, log-SNR
            0.84 / 2.33                0.75 / 1.37                0.87 / 1.06                1.11 / 1.00
flow        iPNDM, uniform t trailing  iPNDM, uniform t trailing  iPNDM, uniform t           iPNDM, uniform t
            0.87 / 1.02                0.81 / 1.09                0.72 / 2.70                0.55 / 1.53
flow, shift iPNDM, uniform t trailing  UniPC, KL-optimal trailing iPNDM, KL-optimal trailing iPNDM, KL-optimal
            1.00 / 2.26                0.82 / 0.96                0.78 / 2.49                0.81 / 2.63
=========== ========================== ========================== ========================== =========================

No static choice is within the best peer on every network: the peers' best differs between networks, which is
what ``auto=True`` and :func:`diffsample.tune` are for. Until 2026-12-07 one VP table served both VP spans; its worst
cases on the networks were 1.24 / 1.23 / 1.38 / 1.71 (the peers' best is diffusers' UniPC on Karras steps on
Stable Diffusion's table, k-diffusion's DPM-Solver++(3M) on the DDPM table, and no configuration was within both).
Until then too the EDM rows were chosen on the beds alone (DPM-Solver-2M on log-SNR steps to NFE 6, then iPNDM on
log-SNR steps); on the networks seen as σ-space functions their worst cases were 1.31 / 0.77 / 1.12 / 1.44 (beds
1.39 / 0.98 / 1.00 / 1.00). The beds' worst cases are mode lotteries (on ``digits`` a sample that ends on another
training image than the reference; a peer that lands every sample on its image scores 0), which the guard of 3
keeps from deciding; at VP 30–50 such cells veto every configuration alike (the row is then the networks' choice, the
geometric mean breaking the tie). VP x0 and v models take the VP ε row (the same σ-space ODE; no such network was
available to measure). Budgets below 4 take the first row, above 50 the last; budgets between
two ranges the higher one's row (7 → 8–10). Guided models (a call costing 2 evaluations) of the VP families take
:data:`GUIDED_TABLES` instead.
"""

GUIDED_TABLES: dict[str, tuple[tuple[int, DefaultChoice], ...]] = {
    family: _rows(
        (6, "ipndm", "kl_optimal+trailing"),
        (25, "unipc", "kl_optimal+trailing"),
        (_ALL, "dpmpp_3m", "logsnr+trailing"),
    )
    for family in ("vp_eps", "vp_x0", "vp_v")
}
"""Per model family, the rows for a guided model (one call costs 2 evaluations: classifier-free guidance, CFG++,
autoguidance), budgets in evaluations. Chosen by the same procedure on the conditional digits network under
classifier-free guidance of weight 2 and 4 (``digits_cond_cfg2``, ``digits_cond_cfg4``; the teacher walks the guided
ODE; no peer runs a guided walk, so each cell's best is the library's own): iPNDM on KL-optimal steps ending the
trailing way at NFE 4–6 (worst case 1.10× the per-cell best), UniPC on them at 8–10 and 15–20 (1.06 / 1.42×),
DPM-Solver++(3M) on log-SNR steps, trailing, at 30–50 (1.54×). The unguided VP rows are poor there (iPNDM on log-SNR
steps, as measured in session 6: 3–5× the best at weight 4 and NFE 20–40; high-order Adams steps suffer most from
the guided ODE's stiffness, as Lu et al. 2022b found for DPM-Solver++ and Zhao et al. 2023 for UniPC). Families
without a guided network here (EDM, flow) keep their table when guided.
"""

SHORT_SPAN_TABLES: dict[str, tuple[tuple[int, DefaultChoice], ...]] = {
    family: _VP_SHORT_TABLE for family in SHORT_SPAN_FAMILIES
}
"""Per VP family, and for a σ-space denoiser without a noise schedule (``edm``), the rows for a model on a short span
(:func:`diffsample.model_family.short_span`: σ_max ≤ 40, Stable Diffusion's scaled-linear table), chosen by the
same procedure on the units of that span: the exact beds on ``[0.029, 14.6]`` and the networks ``digits_uncond_sd``,
``digits16_uncond_sd`` and ``digits16_uncond_sd_small``. The beds are σ-space functions of no family and the
networks' σ-space ODE is what a k-diffusion ``CompVisDenoiser`` or ComfyUI hands a sampler for a Stable Diffusion
model, so a schedule-less denoiser walked from σ_max ≤ 40 takes these rows too (session 12 of issue #13): on the
selection's noises the EDM rows, chosen on ``[0.002, 80]``, had worst cases on those three networks of 1.30 / 1.95 /
2.39 / 1.64 × the best peer by range, these rows 1.10 / 1.14 / 1.44 / 1.23; on the held-out conditional SD-table
network seen that way (``digits_cond_sd_holdout_sdview``, figures' noises) ``generate`` goes from 2 to 3 of 7 cells
within the best peer (geometric mean 1.15 → 1.01× the best peer; NFE 8 worse, 1.07 → 1.29) and automatic mode from
5 to 7 of 7 within 0.8×.
Worst-case ratio to the best peer on the networks / on the beds:

=========== ========================== ========================== ========================== =========================
table       NFE 4–6                    NFE 8–10                   NFE 15–20                  NFE 30–50 (and above)
=========== ========================== ========================== ========================== =========================
VP, short   DPM-Solver-3M, Karras      UniPC-3, log-SNR           UniPC-3, Karras            DPM-Solver++(3M), log-SNR
            trailing 1.10 / 1.92       1.14 / 2.43                1.44 / 5.35                1.23 / 4.25
=========== ========================== ========================== ========================== =========================

At NFE 15–20 the networks' best peers are different walks (diffusers' UniPC-3 on Karras steps on the 8×8
network, k-diffusion's DPM-Solver++(3M) SDE sampler at η = 0 on exponential steps and diffusers' DPM-Solver++(3M)
on Karras steps on the 16×16 one) and no configuration is within 1.37× of all; the beds veto beyond 3×
(``mixture64`` at 5.35× decides the score, 1.78, among configurations alike vetoed). With the two larger networks
alone (before ``digits16_uncond_sd_small`` was trained) the 8–10 row was UniPC-3 on log-SNR steps ending the trailing
way (1.02 / 2.14), the other rows the same. Guided VP models take :data:`GUIDED_TABLES` on any span.
"""

DEFAULT_TABLE: tuple[tuple[int, DefaultChoice], ...] = FAMILY_TABLES["edm"]
"""The table for a σ-space denoiser of unknown kind (the ``"edm"`` family's)."""


def default_choice(
    nfe: int, family: str | None = None, *, guided: bool = False, sigma_max: float | None = None
) -> DefaultChoice:
    """The default configuration for a budget of ``nfe`` model evaluations on a model of ``family``
    (:func:`diffsample.model_family.model_family`; ``None``: a σ-space denoiser of unknown kind, ``"edm"``);
    ``guided``: a model whose call costs 2 evaluations (its family's :data:`GUIDED_TABLES` row, where it has one);
    ``sigma_max``: where the walk starts (a VP model on a short span takes :data:`SHORT_SPAN_TABLES`)."""
    if int(nfe) != nfe or nfe < 1:
        raise BudgetError(f"nfe must be a positive integer number of model evaluations, got {nfe!r}")
    table = _table(family)
    if guided and family in GUIDED_TABLES:
        table = GUIDED_TABLES[family]
    elif short_span(family, sigma_max):
        table = SHORT_SPAN_TABLES[str(family)]
    for limit, choice in table:
        if nfe <= limit:
            return choice
    return table[-1][1]


def _table(family: str | None) -> tuple[tuple[int, DefaultChoice], ...]:
    if family is None:
        return DEFAULT_TABLE
    if family not in FAMILY_TABLES:
        raise DiffsampleError(f"unknown model family {family!r}; valid families: {', '.join(FAMILY_TABLES)}")
    return FAMILY_TABLES[family]


def schedule_levels(
    step_schedule: str,
    n_steps: int,
    sigma_min: float,
    sigma_max: float,
    noise_schedule: NoiseSchedule | None = None,
    **options: Any,
) -> torch.Tensor:
    """``n_steps`` levels of ``step_schedule`` from ``sigma_max`` to ``sigma_min``, then 0; schedules in a model's
    time (``time_uniform``, ``time_quadratic``) need its ``noise_schedule``."""
    spec = steps.get(step_schedule)
    if spec.needs_noise_schedule:
        if noise_schedule is None:
            raise SigmaError(
                f"step schedule {step_schedule!r} steps in the model's time: pass the model (or its noise_schedule)"
            )
        return spec(n_steps, sigma_min, sigma_max, noise_schedule=noise_schedule, **options)
    return spec(n_steps, sigma_min, sigma_max, **options)


def default_sigmas(
    nfe: int, sigma_min: float, sigma_max: float, calls_per_eval: int = 1, *, model: object | None = None
) -> tuple[DefaultChoice, torch.Tensor]:
    """The default choice and its noise levels for ``nfe`` evaluations over ``[sigma_min, sigma_max]`` → 0.

    ``calls_per_eval`` is the number of model evaluations one denoiser call costs (2 under CFG); ``model`` (a
    denoiser) selects its family's table.
    """
    walk = configure(nfe, sigma_min, sigma_max, calls_per_eval=calls_per_eval, model=model)
    family = None if model is None else model_family(model)
    return default_choice(nfe, family, guided=calls_per_eval > 1, sigma_max=sigma_max), walk.sigmas


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
    model: object | None = None,
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
        model: the denoiser the walk is for: its family (:func:`~diffsample.model_family.model_family`) picks
            the table, and its noise schedule serves the schedules in model time (``time_uniform``). Without it,
            the table of σ-space denoisers of unknown kind (:data:`DEFAULT_TABLE`, the ``"edm"`` family's).
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
    family = None if model is None else model_family(model)
    choice = default_choice(nfe, family, guided=calls_per_eval > 1, sigma_max=sigma_max)
    name = choice.solver if solver is None else solver
    options = dict(choice.options) if solver is None else {}
    step_options = choice.step_schedule_options if step_schedule is None else {}
    step_schedule = choice.step_schedule if step_schedule is None else step_schedule
    n_steps = solvers.spec(name).steps_for_nfe(_calls(nfe, calls_per_eval))
    noise_schedule = None if model is None else noise_schedule_of(model)
    sigmas = schedule_levels(step_schedule, n_steps, sigma_min, sigma_max, noise_schedule, **step_options)
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
    auto: bool = False,
    calibration: int | torch.Tensor | None = None,
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
        auto: choose the solver and step schedule for this model by a short reference run on ``calibration``
            noises, and fit the solver's weights on them where cross-validation says it helps
            (:func:`diffsample.auto.auto_choice`: the family's candidates, cached per model on disk, its cost
            counted apart from this call's budget) instead of the family's static default.
        calibration: automatic mode's calibration noises: a number (seeded 0, 1, …) or unit-variance noises;
            default :func:`diffsample.auto.calibration_size` (16, more for samples of few numbers).

    Without a plan the model's family (:func:`~diffsample.model_family.model_family`: VP ε/x0/v, EDM/VE, flow
    matching with or without shift, from ``denoiser.noise_schedule`` and ``denoiser.prediction``) picks the table
    (:data:`FAMILY_TABLES`; a VP model on a short span, σ_max ≤ 40, :data:`SHORT_SPAN_TABLES`), and its noise
    schedule supplies the span not given.

    Returns:
        The state at σ = 0.

    Several threads may call it at once on one denoiser: the budget check counts this call's own evaluations
    (:class:`~diffsample.denoisers.CallCounter`), not the shared model's total.
    """
    den = CallCounter(denoiser)  # this call's own evaluations: other threads may walk the same model
    sigma_min, sigma_max = model_span(den, sigma_min, sigma_max)  # a model's own span, when it declares one
    if auto and plan is not None:
        raise DiffsampleError("auto=True chooses a solver and steps; a plan fixes them: pass one or the other")
    solver = step_schedule = choice = None
    if auto:
        if nfe is None or sigma_min is None or sigma_max is None:
            raise BudgetError("generate(auto=True) needs nfe, and sigma_min and sigma_max unless the model has them")
        from .auto import auto_choice

        choice = auto_choice(
            denoiser, nfe, tuple(x.shape[1:]), sigma_min=sigma_min, sigma_max=sigma_max, calibration=calibration
        )
        solver, step_schedule = choice.solver, choice.step_schedule
    walk = configure(
        nfe,
        sigma_min,
        sigma_max,
        calls_per_eval=den.nfe_per_call,
        plan=plan,
        solver=solver,
        step_schedule=step_schedule,
        model=denoiser if plan is None else None,
    )
    sigmas, name, options = walk.sigmas, walk.solver, walk.options
    if choice is not None:  # automatic mode's moved levels and fitted weights, where it has them
        sigmas, name, options = choice.walk_on(sigmas, name, options)
    out = sample(den, x, sigmas, solver=name, noise=noise, callback=callback, **options)
    spent = den.nfe
    if spent > walk.nfe:  # a guard on the promise, not an expected path
        raise BudgetError(f"generate spent {spent} model evaluations, over the budget of {walk.nfe}")
    return out


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
