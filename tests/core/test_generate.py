"""diffsample.generate: the default configuration keeps the budget and beats the simple solvers."""

from __future__ import annotations

import math
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch

import diffsample as ds
from diffsample.testbeds import get_bed, metrics, reference_solution

pytest.importorskip("scipy")


@pytest.fixture(scope="module")
def ring():
    bed = get_bed("ring2d")
    x = ds.noise.seeded(1).initial((16, 2), 80.0, dtype=torch.float64)
    return bed, x, reference_solution(bed, x, 80.0, 0.0)


@pytest.mark.parametrize("nfe", [1, 2, 3, 4, 5, 7, 10, 16, 25])
def test_never_exceeds_the_budget(ring, nfe):
    bed, x, _ = ring
    bed.reset_counter()
    out = ds.generate(bed, x, nfe=nfe, sigma_min=0.002, sigma_max=80.0)
    assert 1 <= bed.nfe <= nfe
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("nfe", [2, 3, 9, 20])
def test_guided_denoiser_gets_half_the_calls(ring, nfe):
    bed, x, _ = ring
    guided = ds.cfg(bed, 1.5, uncond=get_bed("ring2d"))
    out = ds.generate(guided, x, nfe=nfe, sigma_min=0.002, sigma_max=80.0)
    assert guided.nfe <= nfe and guided.nfe == 2 * (nfe // 2)
    assert torch.isfinite(out).all()


def test_impossible_budget_is_refused(ring):
    bed, x, _ = ring
    with pytest.raises(ds.BudgetError, match="positive integer"):
        ds.generate(bed, x, nfe=0, sigma_min=0.002, sigma_max=80.0)
    with pytest.raises(ds.BudgetError, match="buys no call"):
        ds.generate(ds.cfg(bed, 2.0, uncond=get_bed("ring2d")), x, nfe=1, sigma_min=0.002, sigma_max=80.0)


@pytest.fixture(scope="module")
def three_beds():
    out = []
    for name in ("ring2d", "mixture64", "digits"):
        bed = get_bed(name)
        x = ds.noise.seeded(2).initial((16, *bed.shape), 80.0, dtype=torch.float64)
        out.append((bed, x, reference_solution(bed, x, 80.0, 0.0)))
    return out


@pytest.mark.parametrize("nfe", [5, 10, 20])
def test_more_accurate_than_euler_and_heun_across_beds(three_beds, nfe):
    """Geometric mean of the RMSE over the three exact beds, at equal budget and span."""

    def mean_log_rmse(run) -> float:
        return sum(math.log(max(metrics.rmse(run(bed, x), ref), 1e-6)) for bed, x, ref in three_beds) / 3

    gen = mean_log_rmse(lambda bed, x: ds.generate(bed, x, nfe=nfe, sigma_min=0.002, sigma_max=80.0))
    for solver in ("euler", "heun"):
        n = ds.solvers.spec(solver).steps_for_nfe(nfe)
        other = mean_log_rmse(
            lambda bed, x, n=n, solver=solver: ds.sample(bed, x, ds.steps.karras(n, 0.002, 80.0), solver=solver)
        )
        assert gen < other, (solver, nfe, math.exp(gen), math.exp(other))


def test_converges_to_the_exact_solution(ring):
    bed, x, ref = ring
    errors = [metrics.rmse(ds.generate(bed, x, nfe=n, sigma_min=0.002, sigma_max=80.0), ref) for n in (10, 40, 160)]
    assert errors[2] < errors[1] < errors[0]
    assert errors[2] < 1e-3


# --------------------------------------------------------------------- configure: one place for the walk


def test_configure_fills_what_the_caller_leaves_open_from_the_table():
    from diffsample.generate import configure, default_choice, default_sigmas

    for nfe in (3, 8, 20):
        walk = configure(nfe, 0.002, 80.0)
        choice, sigmas = default_sigmas(nfe, 0.002, 80.0)
        assert (walk.solver, walk.step_schedule, walk.nfe) == (choice.solver, choice.step_schedule, nfe)
        assert torch.equal(walk.sigmas, sigmas)
        named = configure(nfe, 0.002, 80.0, solver="heun")
        n = len(named.sigmas) - 1
        assert named.step_schedule == default_choice(nfe).step_schedule and named.options == {}
        assert ds.solvers.spec("heun").nfe(n) <= nfe < ds.solvers.spec("heun").nfe(n + 1)
        karras = configure(nfe, 0.002, 80.0, step_schedule="karras", calls_per_eval=2)
        assert karras.solver == choice.solver
        steps_for = ds.solvers.spec(choice.solver).steps_for_nfe(nfe // 2)
        assert torch.equal(karras.sigmas, ds.steps.karras(steps_for, 0.002, 80.0))


def test_configure_runs_a_plan_and_refuses_a_solver_beside_it():
    from diffsample.generate import configure

    plan = ds.Plan(ds.steps.karras(4, 0.002, 80.0).tolist(), "euler")
    walk = configure(plan=plan, calls_per_eval=2)
    assert walk.step_schedule == "plan" and walk.nfe == 8 and torch.equal(walk.sigmas, plan.sigma_tensor())
    with pytest.raises(ds.DiffsampleError, match="plan fixes"):
        configure(plan=plan, solver="heun")
    with pytest.raises(ds.BudgetError, match="over the budget"):
        configure(3, plan=plan)


@pytest.mark.parametrize(
    ("flags", "solver", "step_schedule"),
    [
        ([], None, None),
        (["--solver", "heun"], "heun", None),
        (["--step-schedule", "karras"], None, "karras"),
        (["--schedule", "karras"], None, "karras"),  # the deprecated spelling
    ],
)
def test_the_sample_command_runs_the_walk_generate_configures(tmp_path, capsys, flags, solver, step_schedule):
    from diffsample.cli import main
    from diffsample.generate import configure
    from diffsample.models import load_digits_model

    assert main(["sample", "--nfe", "6", "--batch", "2", "--quiet", "--out", str(tmp_path), *flags]) == 0
    model = load_digits_model()  # the command takes the model's family's default (diffsample.generate.FAMILY_TABLES)
    span = model.noise_schedule
    walk = configure(
        6, float(span.sigma_min), float(span.sigma_max), solver=solver, step_schedule=step_schedule, model=model
    )
    np.testing.assert_array_equal(np.load(tmp_path / "samples.npz")["sigmas"], walk.sigmas.numpy())
    out, err = capsys.readouterr()
    assert f"solver {walk.solver}, schedule {walk.step_schedule}," in out
    assert ("--schedule is deprecated; use --step-schedule" in err) == ("--schedule" in flags)


def test_one_version_for_the_package_metadata_and_the_library():
    from diffsample._version import __version__

    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text(encoding="utf-8"))
    assert "version" in pyproject["project"]["dynamic"] and "version" not in pyproject["project"]
    assert pyproject["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "diffsample._version.__version__"}
    assert ds.__version__ == __version__
