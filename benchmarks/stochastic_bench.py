"""Restart and SDE samplers against the best ODE solver at equal NFE, on imperfect denoisers.

The claim under test (Xu et al. 2023, "Restart Sampling for Improving Generative Processes", §3–4):
with an imperfect model, the noise that SDE samplers inject contracts the errors accumulated so far,
so at equal NFE Restart beats ODE samplers in sample quality. Here the model errors are the exact
ones of :mod:`~diffsample.testbeds.imperfect` (a misfit mixture, an exposure-biased ε̂), and sample
quality is the sliced Wasserstein distance of :mod:`~diffsample.testbeds.distribution` between the
samples and exact draws of the *true* distribution (the same 10 000 seeded starting points, reference
draws and 256 directions for every method). ``SW1`` ranks the methods: with 10 000 samples its floor
(two sets of exact draws) is ≈ 0.009 on ring2d, while ``SW2`` (also listed) is dominated by the
sampling noise of the mode weights (floor ≈ 0.035) and hides differences of that size.

For each bed and NFE budget the table lists:

* ``ode-best``: the best deterministic solver in the registry (every non-adaptive, non-stochastic one
  except ``plan`` and ``dpm_fast``) on Karras (ρ = 7) and log-SNR steps, chosen on SW1;
* ``restart-default``: Restart with the paper's CIFAR-10 interval ``(0.06, 0.30)``, K = 2 and 2 Heun
  steps per restart when it fits in the budget (else K = 1, then 1 step), with as many main Heun
  steps as the rest of the budget allows;
* ``restart-best``: the best Restart configuration of a small grid (4 intervals, K ∈ {1, 2, 3},
  n ∈ {1, 2}, Heun or DPM-Solver++(2M) as the ODE solver, main steps filling the budget), chosen on
  SW1 like ``ode-best``;
* the SDE samplers ``ddpm``, ``euler_ancestral``, ``dpmpp_2m_sde``, ``dpmpp_3m_sde``, ``edm`` and
  ``pc`` (also with the paper's per-sample ``step_rule="sample"``) at their defaults, at the same budget
  on Karras steps, and ``exact draws`` (the metric's own floor: two sets of exact samples).

Beds: ``ring2d`` (8 Gaussians of std 0.05 on the unit circle) and ``mixture64`` as the exact control,
their :class:`~diffsample.testbeds.imperfect.MisfitMixture` (means 0.05 away from the centre, stds
×1.3) and :class:`~diffsample.testbeds.imperfect.ExposureBiasDenoiser` (γ_0 = 0.3, σ_c = 0.5: ε̂ is 30 %
too large at σ → 0, 15 % at σ = 0.5). All walks span σ ∈ [0.002, 80]. A misfit model is the exact
denoiser of another mixture, so every convergent sampler ends at that mixture: there the methods can
only differ in discretisation error. The exposure-biased model is the exact denoiser of nothing, and
ODE and SDE samplers converge to different answers (measured on ring2d, 20 000 samples, 200 steps:
SW1 0.017 for DPM-Solver++(2M), 0.011 for its SDE version and DDPM, floor 0.0065).

Measured (SW1; ring2d with 10 000 samples, floor 0.0070; mixture64 with 4 000, floor 0.0134)
-----------------------------------------------------------------------------------------------
* The paper's claim does **not** hold for its own configuration at these budgets: ``restart-default``
  (Heun backbone, 3–6 main steps over [0.002, 80]) is 2.7–8.6× worse than ``ode-best`` at NFE 20 and
  36–78× at NFE 10, on every bed — the main Heun walk is too coarse.
* Restart on a DPM-Solver++(2M) backbone (``restart-best``, picked from 96 configurations on the metric,
  against ~30 ODE configurations): on the misfit beds it beats ``ode-best`` at NFE 20 (ring2d 0.0135 vs
  0.0266, ×0.51; mixture64 0.0135 vs 0.0197, ×0.69, at the floor) and on ring2d at NFE 10 (×0.81),
  ties on mixture64 at NFE 10 (×1.00); on the exposure-biased beds it ties or loses (×0.93 ring2d at
  NFE 20, ×1.22–1.97 otherwise); on the exact beds it loses (×1.12–2.02). Choosing the best of more
  configurations on a noisy metric favours it slightly (the SW1 sampling noise is ≈ 0.001–0.002).
* DDPM (= Euler ancestral) on Karras steps matches or beats ``ode-best`` on all three ring2d beds at
  NFE 20 (×0.91–1.01) and on ring2d-misfit at NFE 10 (×0.77); SDE-DPM-Solver++(2M) is the best method
  on ring2d-exposure at NFE 20 (0.0141 vs 0.0215, ×0.66). On mixture64 the ODE solvers win at NFE 10
  (DDPM and SDE-DPM-Solver++(2M) ×2.7–6.6) and mostly at NFE 20. EDM's churn sampler (ImageNet
  defaults) and the 3M SDE solver are far behind at these budgets. PC with the paper's per-sample
  step rule throws some ring2d samples far off (SW2 0.79 at NFE 20); its default ``step_rule="auto"``
  (``"sigma"`` in 2-D, measured here before it became the default) does not.

Run: ``python -m benchmarks.stochastic_bench`` (every bed; ≈ 10 min for ring2d and ≈ 30 min for
mixture64 on one busy CPU core, measured when per-sample seeded noise still cost ≈ 0.1–0.5 s per call on
these batches; it now costs ≈ 2 ms, see :mod:`diffsample.noise`), or
``run_stochastic_bench(["ring2d-misfit"], nfes=(10, 20))``; ``python -m benchmarks stochastic --part imperfect``.

SDE convergence with an exact denoiser (:func:`run_sde_convergence`)
---------------------------------------------------------------------
Claim: on the exact beds every SDE sampler's distribution converges to the truth as NFE grows. Every
stochastic solver (DDPM, DDIM η = 1, Euler ancestral — one update in σ-space, so one row each with the
same numbers —, EDM with S_churn = 40 and S_noise = 1, SDE-DPM-Solver++ 2M/3M, Restart with the paper's
default interval, PC with its default rule) from the exact marginal at σ = 80, Karras steps to 0.002,
budgets 8–64 NFE; SW1 to a fixed set of exact draws; the floor is SW1 of exact draws to that set (mean ±
SD of 6); slope of ``log(SW1 − floor)`` vs ``log NFE`` over the points more than 3 SD above the floor.

Measured (``python -m benchmarks stochastic --part convergence``, ring2d with ``--samples 20000``, mixture64
with 4 000; ring2d floor 0.0045 ± 0.0009; SW1 at NFE 8 / 16 / 32 / 64, slope):
DDPM 0.065 / 0.017 / 0.0093 / 0.0063, −1.34; EDM churn 2.94 / 0.28 / 0.030 / 0.0057, −3.2; SDE-DPM-Solver++(2M)
0.23 / 0.036 / 0.0075 / 0.0040, −2.6; (3M) 0.54 / 0.16 / 0.0091 / 0.0040, −3.3; Restart 0.63 (1 NFE: its
restarts do not fit) / 2.0 (7 NFE) / 0.0061 / 0.0035, −4.9 on 3 points; PC 0.17 / 0.059 / 0.021 / 0.0115,
−1.43. mixture64 (4 000 samples, floor 0.0137 ± 0.0017): DDPM 0.084 / 0.047 / 0.025 / 0.019, −1.24; EDM
2.10 / 0.14 / 0.027 / 0.016, −3.1; 2M 0.116 / 0.032 / 0.014 / 0.0125, −2.3; 3M 0.37 / 0.048 / 0.012 / 0.012,
−3.9; Restart 0.43 (1 NFE) / 1.48 (7 NFE) / 0.019 / 0.014, −3.9 on 3 points; PC (per-sample rule at d = 64)
0.134 / 0.056 / 0.024 / 0.015, −1.70. So every sampler reaches the floor or approaches it (PC, the
slowest on ring2d, is at 2.5× the floor there at 64 NFE: half its calls are corrector steps). The slopes
steeper than −2 (EDM, 3M, Restart) are pre-asymptotic: those start from huge errors at few steps (EDM's
churn γ = √2 − 1 on 4–8 Heun steps; Restart's main walk of 1–4 Heun steps). Single SW1 values fluctuate
by about the floor's SD (DDPM 0.0093 at 32 NFE, 0.0103 at 48). Subtracting the floor is a heuristic:
sampling noise and bias do not add exactly.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from diffsample import noise as noise_mod
from diffsample import solvers, steps
from diffsample.denoisers import Denoiser
from diffsample.errors import BudgetError, UnknownNameError
from diffsample.sampling import sample
from diffsample.solvers.restart import restart_nfe
from diffsample.testbeds import mixture64, ring2d
from diffsample.testbeds.distribution import sliced_wasserstein_profile, true_distribution
from diffsample.testbeds.imperfect import ExposureBiasDenoiser, MisfitMixture

from .report import markdown_table

__all__ = [
    "CONVERGENCE_SAMPLERS",
    "ConvergenceRow",
    "SDE_SAMPLERS",
    "StochasticRow",
    "convergence_slopes",
    "format_convergence_table",
    "format_stochastic_table",
    "imperfect_beds",
    "ode_solvers",
    "restart_configs",
    "run_sde_convergence",
    "run_stochastic_bench",
]

SIGMA_MIN, SIGMA_MAX = 0.002, 80.0
SDE_SAMPLERS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("ddpm", "ddpm", {}),
    ("euler_ancestral", "euler_ancestral", {}),
    ("dpmpp_2m_sde", "dpmpp_2m_sde", {}),
    ("dpmpp_3m_sde", "dpmpp_3m_sde", {}),
    ("edm", "edm", {}),
    ("pc", "pc", {}),
    ("pc step_rule=sample", "pc", {"step_rule": "sample"}),
)
"""``(label, solver, options)`` of the SDE samplers in the table, at their defaults (and PC's per-sample rule)."""
RESTART_INTERVALS: tuple[tuple[float, float], ...] = ((0.06, 0.30), (0.1, 1.0), (0.3, 2.0), (0.06, 2.0))


@dataclass(frozen=True)
class StochasticRow:
    """One measured configuration: bed, NFE budget, method label, the settings, NFE used and the metric."""

    bed: str
    budget: int
    method: str
    config: str
    nfe: int
    sw1: float
    sw2: float


def imperfect_beds(names: Sequence[str] | None = None) -> dict[str, Denoiser]:
    """The benchmark's beds by name (exact controls and their imperfect versions; a plain ``"ring2d"`` or
    ``"mixture64"`` stands for its three)."""
    makers: dict[str, Callable[[], Denoiser]] = {
        "ring2d-exact": ring2d,
        "ring2d-misfit": lambda: MisfitMixture(ring2d(), mean_shift=0.05, std_scale=1.3),
        "ring2d-exposure": lambda: ExposureBiasDenoiser(ring2d(), gamma=0.3, sigma_c=0.5),
        "mixture64-exact": mixture64,
        "mixture64-misfit": lambda: MisfitMixture(mixture64(), mean_shift=0.05, std_scale=1.3),
        "mixture64-exposure": lambda: ExposureBiasDenoiser(mixture64(), gamma=0.3, sigma_c=0.5),
    }
    chosen: list[str] = []
    for name in list(makers) if names is None else list(names):
        family = [key for key in makers if key.startswith(f"{name}-")]  # "ring2d": its exact, misfit, exposure beds
        if name not in makers and not family:
            raise UnknownNameError("bed", name, list(makers) + ["ring2d", "mixture64"])
        chosen += [name] if name in makers else family
    return {name: makers[name]() for name in chosen}


def ode_solvers() -> list[str]:
    """Deterministic fixed-step solvers of the registry (``plan`` and ``dpm_fast`` left out)."""
    out = []
    for name in solvers.available():
        s = solvers.spec(name)
        if not s.stochastic and not s.adaptive and name not in ("plan", "dpm_fast"):
            out.append(name)
    return out


RestartConfig = tuple[str, int, tuple[tuple[float, float, int, int], ...]]


def restart_configs(budget: int) -> list[RestartConfig]:
    """``(ODE solver, main steps, intervals)`` of the grid whose NFE fits ``budget``, the main walk taking the rest."""
    configs: list[RestartConfig] = []
    for solver, (lo, hi), k, n in itertools.product(("heun", "dpmpp_2m"), RESTART_INTERVALS, (1, 2, 3), (1, 2)):
        backbone = solvers.spec(solver)
        extra = k * backbone.nfe(n, ends_at_zero=False)
        if budget - extra < 2:
            continue
        try:
            main = backbone.steps_for_nfe(budget - extra)
        except BudgetError:
            continue
        if main >= 2:
            configs.append((solver, main, ((lo, hi, k, n),)))
    return configs


def _default_restart(budget: int) -> RestartConfig | None:
    for k, n in ((2, 2), (1, 2), (1, 1)):
        main = (budget - 2 * k * n + 1) // 2
        if main >= 2:
            return "heun", main, ((0.06, 0.30, k, n),)
    return None


def _run(
    bed: Denoiser, z: torch.Tensor, sigmas: torch.Tensor, solver: str, seed: int, **options: Any
) -> tuple[torch.Tensor, int]:
    bed.reset_counter()
    out = sample(bed, float(sigmas[0]) * z, sigmas, solver, noise=noise_mod.seeded(seed), **options)
    return out, bed.nfe


def _grid(kind: str, n: int) -> torch.Tensor:
    return steps.karras(n, SIGMA_MIN, SIGMA_MAX) if kind == "karras" else steps.logsnr(n, SIGMA_MIN, SIGMA_MAX)


def run_stochastic_bench(
    beds: Sequence[str] | None = None,
    nfes: Sequence[int] = (10, 20),
    n_samples: int = 10000,
    seed: int = 0,
    n_projections: int = 256,
) -> list[StochasticRow]:
    """Measure every method of the module docstring on ``beds`` at each NFE budget; rows in table order."""
    rows: list[StochasticRow] = []
    for bed_name, bed in imperfect_beds(beds).items():
        truth = true_distribution(bed)
        z = torch.randn(n_samples, *truth.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        reference = truth.sample(n_samples, generator=torch.Generator().manual_seed(seed + 1))

        def row(
            budget: int,
            method: str,
            config: str,
            x: torch.Tensor,
            used: int,
            _bed: str = bed_name,
            _ref: torch.Tensor = reference,
        ) -> StochasticRow:
            sw = sliced_wasserstein_profile(x, _ref, (1.0, 2.0), n_projections=n_projections, seed=seed)
            return StochasticRow(_bed, budget, method, config, used, sw[1.0], sw[2.0])

        exact = truth.sample(n_samples, generator=torch.Generator().manual_seed(seed + 2))
        for budget in nfes:
            best: StochasticRow | None = None
            for name, kind in itertools.product(ode_solvers(), ("karras", "logsnr")):
                try:
                    n_steps = solvers.spec(name).steps_for_nfe(budget)
                except BudgetError:
                    continue
                x, used = _run(bed, z, _grid(kind, n_steps), name, seed)
                r = row(budget, "ode-best", f"{name} {kind} {n_steps} steps", x, used)
                best = r if best is None or r.sw1 < best.sw1 else best
            if best is not None:
                rows.append(best)
            default = _default_restart(budget)
            if default is not None:
                solver, main, intervals = default
                x, used = _run(bed, z, _grid("karras", main), "restart", seed, intervals=intervals, ode=solver)
                rows.append(row(budget, "restart-default", _restart_label(solver, main, intervals), x, used))
            best = None
            for solver, main, intervals in restart_configs(budget):
                sig = _grid("karras", main)
                if restart_nfe(sig, intervals, ode=solver) > budget:
                    continue
                x, used = _run(bed, z, sig, "restart", seed, intervals=intervals, ode=solver)
                r = row(budget, "restart-best", _restart_label(solver, main, intervals), x, used)
                best = r if best is None or r.sw1 < best.sw1 else best
            if best is not None:
                rows.append(best)
            for label, name, options in SDE_SAMPLERS:
                try:
                    n_steps = solvers.spec(name).steps_for_nfe(budget)
                except BudgetError:
                    continue
                x, used = _run(bed, z, _grid("karras", n_steps), name, seed, **options)
                rows.append(row(budget, label, f"karras {n_steps} steps", x, used))
            rows.append(row(budget, "exact draws", "metric floor", exact, 0))
    return rows


def _restart_label(solver: str, main: int, intervals: Sequence[tuple[float, float, int, int]]) -> str:
    parts = [f"[{lo:g},{hi:g}] K={k} n={n}" for lo, hi, k, n in intervals]
    return f"{solver} {main} steps + " + ", ".join(parts)


def format_stochastic_table(rows: Sequence[StochasticRow]) -> str:
    """A Markdown table: bed, budget, method, NFE used, SW1, SW2, SW1 ratio to ``ode-best``, settings."""
    ode = {(r.bed, r.budget): r.sw1 for r in rows if r.method == "ode-best"}

    def ratio(r: StochasticRow) -> str:
        base = ode.get((r.bed, r.budget))
        return f"{r.sw1 / base:.2f}" if base and math.isfinite(r.sw1) else "—"

    header = ["bed", "NFE budget", "method", "NFE", "SW1", "SW2", "SW1 ÷ ode-best", "settings"]
    return markdown_table(
        header,
        ([r.bed, r.budget, r.method, r.nfe, f"{r.sw1:.4f}", f"{r.sw2:.4f}", ratio(r), r.config] for r in rows),
        ["", ":", "", ":", ":", ":", ":", ""],
    )


# --------------------------------------------------------------------------------------------- convergence

CONVERGENCE_SAMPLERS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("ddpm", "ddpm", {}),
    ("ddim eta=1", "ddim", {"eta": 1.0}),
    ("euler_ancestral", "euler_ancestral", {}),
    ("edm churn=40 s_noise=1", "edm", {"s_churn": 40.0, "s_noise": 1.0}),
    ("dpmpp_2m_sde", "dpmpp_2m_sde", {}),
    ("dpmpp_3m_sde", "dpmpp_3m_sde", {}),
    ("restart", "restart", {}),
    ("pc", "pc", {}),
)
"""``(label, solver, options)`` of the SDE convergence figure: every stochastic solver, EDM with churn but without
its noise inflation (``S_noise = 1.003`` is a deliberate bias that does not vanish with NFE)."""
CONVERGENCE_BUDGETS = (8, 12, 16, 24, 32, 48, 64)
FLOOR_DRAWS = 6


@dataclass(frozen=True)
class ConvergenceRow:
    """SW1 of one sampler at one NFE budget on an exact bed, and the floor: mean and standard deviation of SW1
    between exact draws and the same reference set."""

    bed: str
    method: str
    budget: int
    steps: int
    nfe: int
    sw1: float
    floor: float
    floor_sd: float


def run_sde_convergence(
    beds: Sequence[str] = ("ring2d", "mixture64"),
    nfes: Sequence[int] = CONVERGENCE_BUDGETS,
    n_samples: int = 10000,
    seed: int = 0,
    n_projections: int = 256,
    samplers: Sequence[tuple[str, str, dict[str, Any]]] = CONVERGENCE_SAMPLERS,
) -> list[ConvergenceRow]:
    """SW1 between each sampler's output and exact draws, at each NFE budget, on exact beds.

    Every walk starts from the exact noised marginal at σ = 80 (``x0 + 80 z``, ``x0`` exact draws), so the
    only errors are the sampler's discretisation and the metric's sampling noise; it runs on Karras steps
    (ρ = 7) down to 0.002 and then 0, as many as the registry's cost allows within the budget (the NFE used,
    counted by the bed, is reported). The floor is the mean SW1 between :data:`FLOOR_DRAWS` independent sets of
    ``n_samples`` exact draws and the same reference set: what a perfect sampler would get. Its spread is
    large (on ring2d mostly the multinomial noise of the 8 mode masses: SD ≈ 0.002 at 10 000 samples).
    """
    rows: list[ConvergenceRow] = []
    for bed_name in beds:
        bed = (
            {"ring2d": ring2d, "mixture64": mixture64}[bed_name]()
            if bed_name in ("ring2d", "mixture64")
            else imperfect_beds([bed_name])[bed_name]
        )  # an imperfect bed: convergence to its truth is not expected
        truth = true_distribution(bed)

        def draws(offset: int, _truth: Any = truth) -> torch.Tensor:
            return _truth.sample(n_samples, generator=torch.Generator().manual_seed(seed + offset))

        def sw1(x: torch.Tensor, y: torch.Tensor) -> float:
            return sliced_wasserstein_profile(x, y, (1.0,), n_projections=n_projections, seed=seed)[1.0]

        reference = draws(1)
        floors = torch.tensor([sw1(draws(10 + k), reference) for k in range(FLOOR_DRAWS)], dtype=torch.float64)
        floor, floor_sd = float(floors.mean()), float(floors.std())
        start = draws(2) + SIGMA_MAX * torch.randn(
            n_samples, *truth.shape, generator=torch.Generator().manual_seed(seed + 3), dtype=torch.float64
        )
        for label, name, options in samplers:
            spec = solvers.spec(name)
            for budget in nfes:
                try:
                    n_steps = spec.steps_for_nfe(budget, **options)
                except BudgetError:
                    continue
                sigmas = _grid("karras", n_steps)
                bed.reset_counter()
                out = sample(bed, start, sigmas, name, noise=noise_mod.seeded(seed + 4), **options)
                rows.append(
                    ConvergenceRow(bed_name, label, budget, n_steps, bed.nfe, sw1(out, reference), floor, floor_sd)
                )
    return rows


def _fitted(r: ConvergenceRow) -> bool:
    return r.sw1 - r.floor > 3 * r.floor_sd and r.steps >= 2


def convergence_slopes(rows: Sequence[ConvergenceRow]) -> dict[tuple[str, str], float]:
    """Least-squares slope of ``log(SW1 − floor)`` against ``log NFE`` per (bed, method), over the budgets where
    ``SW1 − floor`` exceeds three floor SDs (below that it is mostly sampling noise) and the walk has at least two
    steps (Restart's extra walks do not fit the smallest budgets: it then falls back to one step); NaN with fewer
    than 2 points."""
    groups: dict[tuple[str, str], list[ConvergenceRow]] = {}
    for r in rows:
        groups.setdefault((r.bed, r.method), []).append(r)
    slopes: dict[tuple[str, str], float] = {}
    for key, group in groups.items():
        pts = [(math.log(r.nfe), math.log(r.sw1 - r.floor)) for r in group if _fitted(r)]
        if len(pts) < 2:
            slopes[key] = math.nan
            continue
        mx = sum(p[0] for p in pts) / len(pts)
        my = sum(p[1] for p in pts) / len(pts)
        slopes[key] = sum((p[0] - mx) * (p[1] - my) for p in pts) / sum((p[0] - mx) ** 2 for p in pts)
    return slopes


def format_convergence_table(rows: Sequence[ConvergenceRow]) -> str:
    """A Markdown table: per bed and method, SW1 at each budget (NFE used in brackets), the floor (± SD) and the
    slope of :func:`convergence_slopes` with the number of points it was fitted on."""
    budgets = sorted({r.budget for r in rows})
    slopes = convergence_slopes(rows)
    seen: dict[tuple[str, str], dict[int, ConvergenceRow]] = {}
    for r in rows:
        seen.setdefault((r.bed, r.method), {})[r.budget] = r
    body = []
    for (bed, method), by_budget in seen.items():
        cells = [f"{by_budget[b].sw1:.4f} ({by_budget[b].nfe})" if b in by_budget else "—" for b in budgets]
        first = next(iter(by_budget.values()))
        slope = slopes[(bed, method)]
        used = sum(_fitted(r) for r in by_budget.values())
        body.append(
            [
                bed,
                method,
                *cells,
                f"{first.floor:.4f} ± {first.floor_sd:.4f}",
                f"{slope:.2f} ({used} pts)" if math.isfinite(slope) else "—",
            ]
        )
    header = ["bed", "method", *(f"NFE {b}" for b in budgets), "floor ± SD", "slope of SW1 − floor"]
    return markdown_table(header, body, ["", ""] + [":"] * (len(budgets) + 2))


if __name__ == "__main__":  # python -m benchmarks.stochastic_bench [convergence]
    import sys

    if sys.argv[1:] == ["convergence"]:
        print(format_convergence_table(run_sde_convergence()))
    else:
        print(format_stochastic_table(run_stochastic_bench()))
