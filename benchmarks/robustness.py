"""The robustness grid: every fixed-step solver × step schedule × step count × network precision.

Each cell is one walk of a registered, non-adaptive solver (:func:`diffsample.sample`) on an exact
test bed (``ring2d``, ``mixture64``) from ``σ_max·z`` down to σ = 0, with the bed's exact denoiser
behind a :class:`CastNetwork`: a "network" of dtype float32, float16 or bfloat16 that receives its
input (``x`` and σ) rounded to that dtype and returns its output in that dtype, as a half-precision
network does (``sample`` promotes the state to float32 and casts each output back, so the solver's
own arithmetic is float32 in all three cases). The same walk with a float64 network and a float64
state is the reference each reduced-precision run is compared with.

A cell fails when

* the walk raises (any exception, e.g. a division by zero or a singular coefficient),
* its output has NaN/Inf,
* the model evaluations it made differ from the registry's ``spec(name).nfe_on(sigmas)``, or
* the network was called at σ = 0 (the solver contract: a step into 0 never evaluates there).

The float64 runs are checked the same way. Besides the failures the grid records, per dtype, the
worst RMSE between a run and its float64 counterpart (how far rounding in the network moves the
result), overall and over runs of at least :data:`ACCURATE_FROM` steps, next to the float64 run's
own RMSE against the exact PF-ODE solution (:func:`~diffsample.testbeds.reference_solution`): a
deviation matters only where it is not small against that. Stochastic solvers get the same
per-sample noise streams (:func:`diffsample.noise.seeded`) in every run of a cell.

Cost: a bed call is dominated by fixed per-call overhead, not by the batch, so the three reduced
dtypes run as three blocks of one batch in one walk (a fixed-step solver treats samples
independently, so this is exactly three walks; ``tests/solvers/test_robustness.py`` checks it). The full
grid is still about 2 × 25 solvers × 6 schedules × 2 walks × 3430 steps, some 2.5 million model
calls: roughly 25 minutes on one idle core; ``jobs`` spreads the (bed, solver, schedule) groups over
worker processes. ``--quick`` (1, 2, 3, 5, 10 and 100 steps) is 28 times cheaper.

Step schedules (σ ∈ [0.002, 80] unless a schedule fixes its own span): ``karras`` (ρ = 7),
``logsnr``, ``kl_optimal``, ``polyexponential`` (ρ = 2, so that it differs from ``logsnr``, its
ρ = 1 case), ``time_uniform`` on the DDPM linear-β table (σ from 157.4 down to 0.0100, diffusers'
``linspace`` timesteps) and ``align_your_steps`` (the published SD 1.5 list, σ 14.6 → 0.029,
resampled log-linearly to ``n`` levels). All end in σ = 0.

``python -m benchmarks robustness`` is the command-line entry point, :func:`run_grid` the library one;
groups of cells (one bed, solver and schedule) can run in worker processes (``jobs``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import torch

from diffsample import noise as noise_mod
from diffsample import solvers, steps
from diffsample.denoisers import Denoiser
from diffsample.sampling import sample
from diffsample.schedules import DiscreteVP
from diffsample.testbeds import get_bed, reference_solution

from .report import Column, text_table

__all__ = [
    "ACCURATE_FROM",
    "BEDS",
    "DTYPES",
    "FULL_STEPS",
    "QUICK_STEPS",
    "SCHEDULES",
    "CastNetwork",
    "GridConfig",
    "GridReport",
    "RunResult",
    "format_report",
    "grid_solvers",
    "run_grid",
    "run_group",
    "step_schedule",
]

SIGMA_MIN, SIGMA_MAX = 0.002, 80.0
SCHEDULES = ("karras", "logsnr", "kl_optimal", "polyexponential", "time_uniform", "align_your_steps")
FULL_STEPS = (*range(1, 21), 25, 30, 40, 50, 75, 100, 150, 200, 300, 500, 750, 1000)
QUICK_STEPS = (1, 2, 3, 5, 10, 100)
DTYPES = (torch.float32, torch.float16, torch.bfloat16)
BEDS = ("ring2d", "mixture64")
ACCURATE_FROM = 10
"""Runs with at least this many steps enter the "n ≥ 10" worst-deviation column."""

_DTYPE_NAMES = {
    torch.float64: "float64",
    torch.float32: "float32",
    torch.float16: "float16",
    torch.bfloat16: "bfloat16",
}


def grid_solvers() -> list[str]:
    """Every registered solver that walks a given step schedule (``adaptive`` ones choose their own steps)."""
    return [name for name in solvers.available() if not solvers.spec(name).adaptive]


@cache
def _ddpm_table() -> DiscreteVP:
    return DiscreteVP(beta_schedule="linear", num_train_timesteps=1000)


def step_schedule(name: str, n: int) -> torch.Tensor:
    """The ``n``-step schedule ``name`` of the grid (module docstring), ending in σ = 0."""
    entry = steps.get(name)
    if name == "time_uniform":
        return entry(n, noise_schedule=_ddpm_table())
    if name == "align_your_steps":
        return entry(n)
    if name == "polyexponential":
        return entry(n, SIGMA_MIN, SIGMA_MAX, rho=2.0)
    return entry(n, SIGMA_MIN, SIGMA_MAX)


class CastNetwork(Denoiser):
    """An exact denoiser behind networks of reduced precision: input ``x`` and σ rounded to a dtype, output in it.

    ``dtypes`` lists one dtype per block of the batch: with ``dtypes = (float16,)`` the whole batch is
    a float16 network; with ``(float32, float16, bfloat16)`` and a batch of ``3·B`` the first ``B``
    samples see a float32 network, the next ``B`` a float16 one, the last ``B`` a bfloat16 one. The
    inner denoiser's maths (float64 on the beds) runs on the rounded inputs and each block's result
    is rounded to its dtype, so the only errors are those of a network that reads and writes tensors
    of that dtype. The output has dtype ``out_dtype`` (default: the single dtype, or float32 for
    several blocks, which holds float16 and bfloat16 values exactly). Evaluations are counted here
    (one call on the whole batch is one NFE), and the smallest σ ever passed is kept in ``min_sigma``.
    """

    def __init__(self, inner: Denoiser, dtypes: Sequence[torch.dtype], out_dtype: torch.dtype | None = None) -> None:
        super().__init__()
        if not dtypes:
            raise ValueError("CastNetwork needs at least one dtype")
        self.inner = inner
        self.dtypes = tuple(dtypes)
        self.out_dtype = out_dtype or (self.dtypes[0] if len(self.dtypes) == 1 else torch.float32)
        self.min_sigma = math.inf

    def _round(self, t: torch.Tensor) -> torch.Tensor:
        """Each block of ``t`` rounded to its dtype, returned in float64 (exactly)."""
        out = t.to(torch.float64, copy=True)
        if self.dtypes == (torch.float64,):
            return out
        size, rest = divmod(out.shape[0], len(self.dtypes))
        if rest:
            raise ValueError(f"batch of {out.shape[0]} does not split into {len(self.dtypes)} equal blocks")
        for j, dtype in enumerate(self.dtypes):
            block = out[j * size : (j + 1) * size]
            block.copy_(block.to(dtype))
        return out

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        self.min_sigma = min(self.min_sigma, float(sigma.min()))
        out = self.inner.denoise(self._round(x), self._round(sigma), **kwargs)
        return self._round(out).to(self.out_dtype)


@dataclass(frozen=True)
class RunResult:
    """One walk of the grid (for a reduced dtype: its block of the shared walk).

    ``error`` is the exception (``Type: message``) if the walk raised, else ``""``. ``rmse`` is the RMSE
    against the float64 run of the same cell (0 for that run itself, NaN if either failed);
    ``f64_error`` is the float64 run's RMSE against the exact PF-ODE solution over the same span (NaN
    for stochastic solvers, whose paths do not follow the ODE, and without scipy), the scale against
    which a deviation is small or not.
    """

    bed: str
    solver: str
    schedule: str
    steps: int
    dtype: str
    nfe: int
    expected_nfe: int
    finite: bool
    rmse: float = math.nan
    f64_error: float = math.nan
    error: str = ""
    called_at_zero: bool = False

    @property
    def failure(self) -> str:
        """Why the run failed (``""`` if it did not)."""
        if self.error:
            return f"exception {self.error}"
        reasons = []
        if not self.finite:
            reasons.append("NaN/Inf output")
        if self.nfe != self.expected_nfe:
            reasons.append(f"NFE {self.nfe} != registry {self.expected_nfe}")
        if self.called_at_zero:
            reasons.append("model called at sigma = 0")
        return ", ".join(reasons)


@dataclass(frozen=True)
class GridConfig:
    """What :func:`run_grid` runs: beds × solvers × schedules × step counts × dtypes (plus float64 references).

    ``solvers=None`` means :func:`grid_solvers`; ``dtypes`` are the reduced network precisions (float32,
    float16, bfloat16), all run in one walk (:class:`CastNetwork` blocks); ``batch`` samples per dtype.
    """

    beds: Sequence[str] = BEDS
    solvers: Sequence[str] | None = None
    schedules: Sequence[str] = SCHEDULES
    steps: Sequence[int] = FULL_STEPS
    dtypes: Sequence[torch.dtype] = DTYPES
    batch: int = 4
    seed: int = 0

    def solver_names(self) -> list[str]:
        return list(self.solvers) if self.solvers is not None else grid_solvers()

    def check(self) -> None:
        """Fail early, before any walk, on unknown names, bad step counts, dtypes or batch."""
        for name in self.solver_names():
            solvers.spec(name)
        for schedule in self.schedules:
            steps.get(schedule)
        for bed in self.beds:
            if bed not in BEDS:
                raise ValueError(f"robustness grid beds are {', '.join(BEDS)}; got {bed!r}")
        if not self.steps or any(int(n) != n or n < 1 for n in self.steps):
            raise ValueError(f"step counts must be positive integers, got {list(self.steps)}")
        if not self.dtypes or any(d not in DTYPES for d in self.dtypes):
            raise ValueError(f"dtypes must be among {[_DTYPE_NAMES[d] for d in DTYPES]}")
        if self.batch < 1:
            raise ValueError(f"batch must be >= 1, got {self.batch}")


@dataclass
class GridReport:
    """All runs of a grid, the failures among them and the worst deviations from float64."""

    results: list[RunResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def failures(self) -> list[RunResult]:
        return [r for r in self.results if r.failure]

    def worst_rmse(self, dtype: str, min_steps: int = 1, stochastic: bool | None = None) -> RunResult | None:
        """The run of ``dtype`` with the largest finite RMSE against float64 among those of ≥ ``min_steps`` steps
        (only deterministic or only stochastic solvers when ``stochastic`` is given)."""
        runs = [
            r
            for r in self.results
            if r.dtype == dtype
            and r.steps >= min_steps
            and math.isfinite(r.rmse)
            and (stochastic is None or solvers.spec(r.solver).stochastic == stochastic)
        ]
        return max(runs, key=lambda r: r.rmse, default=None)


def _walk(
    net: CastNetwork, x: torch.Tensor, sigmas: torch.Tensor, solver: str, stochastic: bool, seeds: list[int]
) -> tuple[torch.Tensor | None, str]:
    """``sample`` on ``net``: the output (float64) or ``None`` and the exception's ``Type: message``."""
    noise = noise_mod.seeded(seeds) if stochastic else None
    try:
        out = sample(net, x, sigmas, solver=solver, noise=noise, check_finite=False)
    except Exception as exc:  # noqa: BLE001 - any exception is a finding of the grid
        return None, f"{type(exc).__name__}: {exc}"
    return out.to(torch.float64), ""


def _rmse(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).square().mean().sqrt())


def _exact_solutions(bed: Denoiser, z: torch.Tensor) -> Callable[[float], torch.Tensor | None]:
    """``σ_start ↦`` the exact PF-ODE solution at σ = 0 from ``σ_start·z`` (DOP853, disk-cached), or ``None``
    without scipy."""
    known: dict[float, torch.Tensor | None] = {}

    def exact(sigma_start: float) -> torch.Tensor | None:
        if sigma_start not in known:
            try:
                known[sigma_start] = reference_solution(bed, z * sigma_start, sigma_start, 0.0)
            except ImportError:
                known[sigma_start] = None
        return known[sigma_start]

    return exact


def run_group(
    bed_name: str,
    solver: str,
    schedule: str,
    step_counts: Sequence[int],
    dtypes: Sequence[torch.dtype] = DTYPES,
    batch: int = 4,
    seed: int = 0,
) -> list[RunResult]:
    """All runs of one (bed, solver, schedule): per step count a float64 run and one shared walk for ``dtypes``.

    The start is ``σ_max·z`` with ``z`` standard normal from ``seed``; every dtype block starts from the
    same ``z`` (and a stochastic solver gets the same per-sample noise streams in every block).
    """
    torch.set_num_threads(1)  # tiny tensors: threads only add overhead
    bed = get_bed(bed_name)
    dim = int(getattr(bed, "dim"))  # noqa: B009 - the grid beds are GaussianMixtures
    z = torch.randn(batch, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    exact = _exact_solutions(bed, z)
    spec = solvers.spec(solver)
    seeds = list(range(batch))
    names = [_DTYPE_NAMES[d] for d in dtypes]
    results: list[RunResult] = []
    for n in step_counts:
        sigmas = step_schedule(schedule, n)
        s0 = float(sigmas[0])
        expected = spec.nfe_on(sigmas)
        cell = (bed_name, solver, schedule, n)
        net64 = CastNetwork(bed, (torch.float64,))
        ref, err64 = _walk(net64, z * s0, sigmas, solver, spec.stochastic, seeds)
        target = exact(s0) if ref is not None and not spec.stochastic else None  # an SDE path has no ODE answer
        f64_error = _rmse(ref, target) if ref is not None and target is not None else math.nan
        results.append(
            RunResult(
                *cell,
                "float64",
                net64.nfe,
                expected,
                ref is not None and bool(torch.isfinite(ref).all()),
                0.0 if ref is not None else math.nan,
                f64_error,
                err64,
                net64.min_sigma <= 0,
            )
        )
        net = CastNetwork(bed, dtypes)
        out, err = _walk(
            net, (z * s0).repeat(len(dtypes), 1).to(torch.float32), sigmas, solver, spec.stochastic, seeds * len(dtypes)
        )
        blocks = out.chunk(len(dtypes)) if out is not None else [None] * len(dtypes)
        for name, block in zip(names, blocks, strict=True):
            finite = block is not None and bool(torch.isfinite(block).all())
            rmse = _rmse(block, ref) if finite and ref is not None and bool(torch.isfinite(ref).all()) else math.nan
            results.append(RunResult(*cell, name, net.nfe, expected, finite, rmse, f64_error, err, net.min_sigma <= 0))
    return results


def run_grid(config: GridConfig, *, jobs: int = 1, progress: Callable[[str], None] | None = None) -> GridReport:
    """Run every (bed, solver, schedule) group of ``config``, in ``jobs`` worker processes when ``jobs > 1``.

    ``progress`` receives one line per finished group (runs, failures, seconds).
    """
    config.check()
    groups = [
        (bed, solver, schedule)
        for bed in config.beds
        for solver in config.solver_names()
        for schedule in config.schedules
    ]
    args = [
        (bed, solver, schedule, tuple(config.steps), tuple(config.dtypes), config.batch, config.seed)
        for bed, solver, schedule in groups
    ]
    report = GridReport()
    t0 = time.perf_counter()

    def done(i: int, group: tuple[str, str, str], runs: list[RunResult], seconds: float) -> None:
        report.results.extend(runs)
        if progress is not None:
            bad = sum(1 for r in runs if r.failure)
            progress(
                f"[{i}/{len(groups)}] {' '.join(group):<40} {len(runs):>4} runs, {bad} failures, "
                f"{seconds:5.1f} s (elapsed {time.perf_counter() - t0:.0f} s)"
            )

    if jobs <= 1:
        for i, arg in enumerate(args, 1):
            runs, seconds = _timed_group(arg)
            done(i, arg[:3], runs, seconds)
    else:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            futures = {pool.submit(_timed_group, arg): arg[:3] for arg in args}
            for i, future in enumerate(as_completed(futures), 1):
                runs, seconds = future.result()
                done(i, futures[future], runs, seconds)
    order = {g: k for k, g in enumerate(groups)}
    report.results.sort(key=lambda r: (order[(r.bed, r.solver, r.schedule)], r.steps))
    report.seconds = time.perf_counter() - t0
    return report


def _timed_group(arg: tuple) -> tuple[list[RunResult], float]:
    start = time.perf_counter()
    runs = run_group(*arg)
    return runs, time.perf_counter() - start


def format_report(report: GridReport, dtypes: Sequence[torch.dtype] = DTYPES, max_rows: int = 200) -> str:
    """The failure table (at most ``max_rows`` rows), the failure count and the worst deviations per dtype."""
    lines = []
    failures = report.failures
    if failures:
        columns = [
            Column("bed", "<10"),
            Column("solver", "<14"),
            Column("schedule", "<17"),
            Column("steps", ">5"),
            Column("dtype", "<8"),
            Column("NFE", ">5"),
            Column("expect", ">6"),
            Column("failure", "", "  "),
        ]
        lines.append(
            text_table(
                columns,
                (
                    [r.bed, r.solver, r.schedule, r.steps, r.dtype, r.nfe, r.expected_nfe, r.failure]
                    for r in failures[:max_rows]
                ),
                rule="",
            )
        )
        if len(failures) > max_rows:
            lines.append(f"... and {len(failures) - max_rows} more")
        lines.append("")
    lines.append(f"{len(report.results)} runs, {len(failures)} failures ({report.seconds:.0f} s)")
    lines.append(
        "worst RMSE against the float64 run [cell: bed solver schedule steps; the float64 run's own "
        "RMSE against the exact solution]:"
    )
    kinds = sorted({solvers.spec(r.solver).stochastic for r in report.results})
    for stochastic in kinds:
        lines.append(f" {'stochastic' if stochastic else 'deterministic (ODE)'} solvers:")
        for dtype in dtypes:
            name = _DTYPE_NAMES[dtype]
            for min_steps, label in ((1, "all steps"), (ACCURATE_FROM, f"steps >= {ACCURATE_FROM}")):
                w = report.worst_rmse(name, min_steps, stochastic)
                cell = (
                    f"{w.rmse:9.3g}  [{w.bed} {w.solver} {w.schedule} {w.steps}; {w.f64_error:.3g}]"
                    if w
                    else "        —"
                )
                lines.append(f"  {name:<8} {label:<11} {cell}")
    return "\n".join(lines)
