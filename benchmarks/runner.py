"""The benchmark runner: every (bed, solver, schedule, NFE) cell is one walk from the same seeded
initial noise, scored against the exact probability-flow ODE solution over the same σ span.

NFE is read from the bed's own call counter (real model evaluations), never computed from the
step count. A configuration whose cheapest step already exceeds the budget is skipped, not run
over budget.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field

import torch

from diffsample import noise as noise_mod
from diffsample import solvers, steps
from diffsample.errors import BudgetError
from diffsample.sampling import sample

__all__ = ["BenchConfig", "BenchRow", "run_benchmark", "convergence_slopes"]


@dataclass
class BenchConfig:
    """What to run. The span is EDM's ``σ ∈ [0.002, 80]`` by default, walked down to σ = 0.

    ``end_at_zero=False`` ends the walk (and the reference) at ``sigma_min`` instead: that is how
    convergence orders are measured, free of the fixed-size final step σ_min → 0.
    """

    beds: Sequence[str] = ("ring2d", "mixture64", "digits")
    solvers: Sequence[str] = ("euler", "heun")
    schedules: Sequence[str] = ("karras",)
    nfes: Sequence[int] = (3, 4, 5, 6, 8, 10, 15, 20, 50)
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    batch: int = 64
    seed: int = 0
    dtype: torch.dtype = torch.float64
    end_at_zero: bool = True
    solver_options: dict[str, dict] = field(default_factory=dict)


@dataclass
class BenchRow:
    bed: str
    solver: str
    schedule: str
    nfe_budget: int
    nfe: int
    steps: int
    rmse: float
    mode_mismatch: float
    log_likelihood: float
    seconds: float
    source: str = "diffsample"

    def as_dict(self) -> dict:
        return asdict(self)


def _initial_state(bed, batch: int, sigma_max: float, seed: int, dtype: torch.dtype) -> torch.Tensor:
    shape = (batch, *bed.shape)
    return noise_mod.seeded(seed).initial(shape, sigma_max, dtype=dtype)


def run_benchmark(
    config: BenchConfig, progress: Callable[[str], None] | None = None, extra: Iterable[Callable] = ()
) -> list[BenchRow]:
    """Run every cell of ``config`` and return one :class:`BenchRow` per cell.

    ``extra`` are callables ``f(bed_name, bed, x_start, config) -> list[BenchRow]`` (used for peer
    libraries) run on the same beds and initial states.
    """
    from diffsample.testbeds import get_bed, metrics, reference_solution

    rows: list[BenchRow] = []
    for bed_name in config.beds:
        bed = get_bed(bed_name)
        x_start = _initial_state(bed, config.batch, config.sigma_max, config.seed, config.dtype)
        t0 = time.perf_counter()
        sigma_end = 0.0 if config.end_at_zero else config.sigma_min
        reference = reference_solution(bed, x_start, config.sigma_max, sigma_end)
        if progress:
            progress(f"[{bed_name}] reference ODE solution ready ({time.perf_counter() - t0:.1f}s)")
        for solver_name in config.solvers:
            spec = solvers.spec(solver_name)
            options = config.solver_options.get(solver_name, {})
            for schedule_name in config.schedules:
                make_sigmas = steps.get(schedule_name)
                for budget in config.nfes:
                    try:
                        n_steps = spec.steps_for_nfe(budget, ends_at_zero=config.end_at_zero)
                        sigmas = make_sigmas(
                            n_steps + (not config.end_at_zero),
                            config.sigma_min,
                            config.sigma_max,
                            append_zero=config.end_at_zero,
                        )
                    except BudgetError:
                        continue
                    bed.reset_counter()
                    t0 = time.perf_counter()
                    out = sample(bed, x_start, sigmas, solver=solver_name, **options)
                    seconds = time.perf_counter() - t0
                    rows.append(
                        score_row(
                            bed_name,
                            bed,
                            out,
                            reference,
                            solver_name,
                            schedule_name,
                            budget,
                            bed.nfe,
                            n_steps,
                            seconds,
                            metrics,
                        )
                    )
                if progress:
                    progress(f"[{bed_name}] {solver_name} / {schedule_name} done")
        for runner in extra:
            rows.extend(runner(bed_name, bed, x_start, config))
    return rows


def score_row(
    bed_name: str,
    bed,
    out: torch.Tensor,
    reference: torch.Tensor,
    solver: str,
    schedule: str,
    budget: int,
    nfe: int,
    n_steps: int,
    seconds: float,
    metrics,
    source: str = "diffsample",
) -> BenchRow:
    """Score one final state against the exact reference: RMSE, mode mismatch, log-likelihood."""
    out64 = out.to(torch.float64)
    return BenchRow(
        bed=bed_name,
        solver=solver,
        schedule=schedule,
        nfe_budget=budget,
        nfe=nfe,
        steps=n_steps,
        rmse=float(metrics.rmse(out64, reference)),
        mode_mismatch=float(metrics.mode_mismatch(bed, out64, reference)),
        log_likelihood=float(metrics.mean_log_likelihood(bed, out64)),
        seconds=seconds,
        source=source,
    )


def convergence_slopes(rows: Sequence[BenchRow], min_nfe: int = 10) -> dict[tuple[str, str, str], float]:
    """Least-squares slope of log RMSE against log NFE per (bed, solver, schedule), over NFE ≥ ``min_nfe``.

    The order of accuracy p shows as RMSE ∝ NFE^{-p}: the returned value is ``-slope``.
    """
    groups: dict[tuple[str, str, str], list[tuple[float, float]]] = {}
    for r in rows:
        if r.nfe >= min_nfe and r.rmse > 0:
            groups.setdefault((r.bed, r.solver, r.schedule), []).append((math.log(r.nfe), math.log(r.rmse)))
    slopes = {}
    for key, pts in groups.items():
        if len(pts) >= 2:
            xs = torch.tensor([p[0] for p in pts], dtype=torch.float64)
            ys = torch.tensor([p[1] for p in pts], dtype=torch.float64)
            xc = xs - xs.mean()
            slopes[key] = float(-(xc * (ys - ys.mean())).sum() / (xc * xc).sum())
    return slopes
