"""Robustness of the ODE solver family from 1 to 1000 steps under float32 / float16 / bfloat16 networks.

A representative subset of ``python -m benchmarks robustness`` (:mod:`benchmarks.robustness`) on the
``ring2d`` bed: every registered deterministic fixed-step solver × {Karras, log-SNR} × {1, 2, 3, 5,
10, 100} steps (80 → 0.002 → 0) × each network dtype, plus 1000 steps for a few solvers in float16.
The answers come from outside the solver under test:

* the number of model evaluations the network itself counted, against the registry's
  ``spec(name).nfe(n)``;
* the same walk with a float64 network and a float64 state (how far the network's rounding moves the
  result; the tolerance is derived from the dtype's unit roundoff, see ``TOLERANCE``);
* the exact PF-ODE solution at a positive σ_min from DOP853 (``reference_solution``), and, for the
  stochastic solvers, the exact second moment of the noised data at σ_min.

Networks never see σ = 0: every σ passed to them is recorded.
"""

from __future__ import annotations

import functools
import math

import pytest
import torch

from benchmarks.robustness import CastNetwork, GridConfig, format_report, grid_solvers, run_grid, step_schedule
from diffsample import noise, sample, solvers, steps
from diffsample.testbeds import reference_solution, ring2d

F64 = torch.float64
SIGMA_MIN, SIGMA_MAX = 0.002, 80.0
BED = ring2d()
Z = torch.randn(4, 2, generator=torch.Generator().manual_seed(11), dtype=F64)

ODE_SOLVERS = [name for name in grid_solvers() if not solvers.spec(name).stochastic]
STOCHASTIC = [name for name in grid_solvers() if solvers.spec(name).stochastic]
STEP_COUNTS = (1, 2, 3, 5, 10, 100)
SCHEDULES = {"karras": steps.karras, "logsnr": steps.logsnr}
DTYPES = [torch.float32, torch.float16, torch.bfloat16]

# Unit roundoff u = 2^-p of each network dtype (p = significand bits).
UNIT_ROUNDOFF = {torch.float32: 2.0**-24, torch.float16: 2.0**-11, torch.bfloat16: 2.0**-8}
# RMSE allowed between a run with a reduced-precision network and the float64 run, for n >= 10 steps.
# A network of unit roundoff u returns D with an error of at most u·|D| per coordinate; on ring2d the
# data lie on the unit circle, so |D| <= 1. The result is the last D (the step into σ = 0 is D itself)
# plus the earlier roundings, each entering the state with a weight (1 − σ'/σ) or a multistep/Heun
# coefficient of size O(1) at n >= 10 on these grids (Heun's (σ − σ')/(2σ') is at most 4.5 on the
# last Karras step at n = 10), and then contracted by the flow towards the modes (the PF-ODE of one
# Gaussian component of std s scales a perturbation at σ by s/sqrt(s² + σ²) <= 1 on its way to 0).
# So the deviation is a few u: measured at most 3.2u (float16) and 1.7u (bfloat16) over all these
# solvers, schedules and n = 10, 100. float32 adds the solver's float32 arithmetic on states as large
# as σ_max·|z| ≈ 250, which the noise-prediction updates (x − (σ − σ')ε̂) carry through cancellation:
# measured up to 15u. Allowed: 8u for the half-precision networks, 64u for float32.
TOLERANCE = {
    torch.float32: 64 * UNIT_ROUNDOFF[torch.float32],
    torch.float16: 8 * UNIT_ROUNDOFF[torch.float16],
    torch.bfloat16: 8 * UNIT_ROUNDOFF[torch.bfloat16],
}


def rmse(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.to(F64) - b.to(F64)).square().mean().sqrt())


def walk(solver: str, sigmas: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, CastNetwork]:
    """``sample`` from ``σ_0·Z`` with the exact bed behind a ``dtype`` network (float64: a float64 walk)."""
    net = CastNetwork(BED, (dtype,))
    state = Z * float(sigmas[0])
    out = sample(net, state if dtype == F64 else state.to(torch.float32), sigmas, solver=solver)
    return out, net


@functools.cache
def float64_run(solver: str, schedule: str, n: int) -> torch.Tensor:
    return walk(solver, SCHEDULES[schedule](n, SIGMA_MIN, SIGMA_MAX), F64)[0]


# ------------------------------------------------------------------------------------- the network


def test_cast_network_is_the_bed_read_and_written_in_its_dtype():
    x = 3.0 * torch.randn(6, 2, generator=torch.Generator().manual_seed(1))
    sigma = torch.full((6,), 0.37)
    for dtype in DTYPES:
        expected = BED.denoise(x.to(dtype), sigma.to(dtype)).to(dtype)
        net = CastNetwork(BED, (dtype,))
        out = net(x, sigma)
        assert out.dtype == dtype and torch.equal(out, expected) and net.nfe == 1
    # the grid's shared walk: block j of the batch is a network of dtypes[j], one call = one NFE
    mixed = CastNetwork(BED, DTYPES)
    out = mixed(x.repeat(3, 1), sigma.repeat(3))
    assert out.dtype == torch.float32 and mixed.nfe == 1
    for block, dtype in zip(out.chunk(3), DTYPES, strict=True):
        assert torch.equal(block, CastNetwork(BED, (dtype,))(x, sigma).to(torch.float32))


@pytest.mark.parametrize("solver", ["dpmpp_3m", "heun", "unipc"])
def test_shared_walk_of_the_grid_equals_separate_walks(solver):
    """The grid runs the three dtypes as blocks of one batch; for a fixed-step solver that is exactly three walks."""
    sigmas = steps.karras(12, SIGMA_MIN, SIGMA_MAX)
    mixed = CastNetwork(BED, DTYPES)
    out = sample(mixed, (Z * SIGMA_MAX).repeat(3, 1).to(torch.float32), sigmas, solver=solver)
    for block, dtype in zip(out.chunk(3), DTYPES, strict=True):
        separate, net = walk(solver, sigmas, dtype)
        assert torch.equal(block, separate) and net.nfe == mixed.nfe


# ------------------------------------------------------------------------- steps × schedules × dtypes


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).removeprefix("torch."))
@pytest.mark.parametrize("schedule", list(SCHEDULES))
@pytest.mark.parametrize("solver", ODE_SOLVERS)
def test_steps_into_zero(solver, schedule, dtype):
    """Finite float32 output, NFE = registry, no call at σ = 0, and within ``TOLERANCE`` of float64 for n >= 10."""
    for n in STEP_COUNTS:
        sigmas = SCHEDULES[schedule](n, SIGMA_MIN, SIGMA_MAX)
        out, net = walk(solver, sigmas, dtype)
        assert out.dtype == torch.float32 and bool(torch.isfinite(out).all()), n
        assert net.nfe == solvers.spec(solver).nfe(n), n
        assert net.min_sigma > 0, n
        if n >= 10:
            deviation = rmse(out, float64_run(solver, schedule, n))
            assert deviation <= TOLERANCE[dtype], (n, deviation / UNIT_ROUNDOFF[dtype])


@pytest.mark.parametrize(
    "solver", [pytest.param("heun", marks=pytest.mark.slow), pytest.param("lms", marks=pytest.mark.slow), "dpmpp_3m"]
)
def test_thousand_steps_in_float16(solver):
    """1000 log-SNR steps (σ_min/h ≈ 100 on the last steps) with a float16 network: still within 8u of float64."""
    sigmas = steps.logsnr(1000, SIGMA_MIN, SIGMA_MAX)
    out, net = walk(solver, sigmas, torch.float16)
    assert bool(torch.isfinite(out).all()) and net.nfe == solvers.spec(solver).nfe(1000) and net.min_sigma > 0
    assert rmse(out, walk(solver, sigmas, F64)[0]) <= TOLERANCE[torch.float16]


# ------------------------------------------------------------------------ ending at σ_min > 0

END = 0.5  # well above ring2d's std 0.05: x(0.5) and x(0) differ by O(0.1–1) per sample


@functools.cache
def exact_at(sigma_end: float) -> torch.Tensor:
    return reference_solution(BED, Z * SIGMA_MAX, SIGMA_MAX, sigma_end, rtol=1e-10, atol=1e-10, cache=False)


@pytest.mark.parametrize("solver", ODE_SOLVERS + [n for n in solvers.available() if solvers.spec(n).adaptive])
def test_ends_exactly_at_a_positive_last_level(solver):
    """Ending at σ_min = 0.5 (no trailing 0): the error against the exact solution *at 0.5* falls with the
    steps (the adaptive solver: with its tolerance) and ends far below the distance between x(0.5) and x(0),
    and no σ below 0.5 reaches the network."""
    spec = solvers.spec(solver)
    runs = [{"rtol": 1e-3, "atol": 1e-4}, {"rtol": 1e-5, "atol": 1e-6}] if spec.adaptive else [{}, {}]
    grids = [steps.logsnr(n, END, SIGMA_MAX, append_zero=False) for n in (17, 65)]
    errors = []
    for sigmas, options in zip(grids, runs, strict=True):
        net = CastNetwork(BED, (F64,))
        out = sample(net, Z * SIGMA_MAX, sigmas, solver=solver, **options)
        assert net.min_sigma >= END * (1 - 1e-12)
        if not spec.adaptive:
            assert net.nfe == spec.nfe(len(sigmas) - 1, ends_at_zero=False)
        errors.append(rmse(out, exact_at(END)))
    gap = rmse(exact_at(END), exact_at(0.0))
    assert gap > 0.1
    assert errors[1] < errors[0] and errors[1] < 0.05 * gap, (errors, gap)


# pc's default step rule is per-sample-safe in 2-D (the paper's per-sample rule threw samples far out here:
# E|x|² ≈ 12.6 instead of 1.5; see diffsample.solvers.predictor_corrector.langevin_step_size).
STOCHASTIC_CASES = STOCHASTIC


@pytest.mark.parametrize("solver", STOCHASTIC_CASES)
def test_stochastic_solvers_end_at_a_positive_last_level(solver):
    """An SDE path has no ODE answer, but its end point is a sample of the noised data at σ_min: ring2d's
    ``E|x|² = Σ_k w_k(|μ_k|² + 2 s_k²) + 2σ² = 1.005 + 2σ²`` (1.505 at σ = 0.5, 1.005 at 0). With
    ``v = s² + σ²`` its variance is ``4v + 4v² = 1.27``, so 1024 samples estimate it to ±0.035 (one
    standard error); the allowed 0.2 (under six errors, for the solvers' own 40-step bias too) is
    less than half the distance to the value at σ = 0."""
    z = torch.randn(1024, 2, generator=torch.Generator().manual_seed(5), dtype=F64)
    net = CastNetwork(BED, (F64,))
    out = sample(
        net, z * SIGMA_MAX, steps.karras(40, END, SIGMA_MAX, append_zero=False), solver=solver, noise=noise.seeded(3)
    )
    assert bool(torch.isfinite(out).all()) and net.min_sigma >= END * (1 - 1e-12)
    second_moment = float(out.square().sum(1).mean())
    assert second_moment == pytest.approx(1.005 + 2 * END**2, abs=0.2)


# ------------------------------------------------------------------------------ the grid tool


def test_grid_tool_reports_no_failure_on_a_small_grid_and_counts_right():
    config = GridConfig(
        beds=("ring2d",), solvers=("dpmpp_2m", "heun"), schedules=("time_uniform", "align_your_steps"), steps=(1, 2, 10)
    )
    report = run_grid(config)
    assert len(report.results) == 2 * 2 * 3 * 4 and not report.failures
    worst = report.worst_rmse("float16", 10)
    assert worst is not None and worst.steps == 10 and 0 < worst.rmse <= TOLERANCE[torch.float16]
    assert all(math.isfinite(r.f64_error) for r in report.results)  # exact answers were found
    text = format_report(report)
    assert "48 runs, 0 failures" in text and "float16" in text


def test_grid_tool_flags_a_wrong_nfe_and_an_exception(monkeypatch):
    """A solver that costs one call more than its registry entry says, and one that raises, are failures."""
    spec = solvers.spec("euler")
    monkeypatch.setattr(type(spec), "nfe", lambda self, n, ends_at_zero=True: n + 1)
    report = run_grid(GridConfig(beds=("ring2d",), solvers=("euler",), schedules=("karras",), steps=(3,)))
    assert len(report.failures) == 4 and all("NFE 3 != registry 4" in r.failure for r in report.failures)
    monkeypatch.undo()
    bad = functools.partial(step_schedule, "karras")
    monkeypatch.setattr("benchmarks.robustness.step_schedule", lambda name, n: bad(n)[:1])
    report = run_grid(GridConfig(beds=("ring2d",), solvers=("euler",), schedules=("karras",), steps=(3,)))
    assert len(report.failures) == 4 and all(r.failure.startswith("exception SigmaError") for r in report.failures)


def test_cli_exit_code_is_one_on_a_failure(capsys, monkeypatch):
    from benchmarks.__main__ import main

    args = [
        "robustness",
        "--beds",
        "ring2d",
        "--solvers",
        "euler",
        "--schedules",
        "karras",
        "--steps",
        "1,2",
        "--quiet",
    ]
    assert main(args) == 0
    assert "8 runs, 0 failures" in capsys.readouterr().out
    monkeypatch.setattr(type(solvers.spec("euler")), "nfe", lambda self, n, ends_at_zero=True: n + 1)
    assert main(args) == 1
    out = capsys.readouterr().out
    assert "8 runs, 8 failures" in out and "NFE 1 != registry 2" in out
