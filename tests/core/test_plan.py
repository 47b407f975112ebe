"""The per-step ``plan`` solver and the ``Plan`` document, checked against independent answers.

* uniform choices reproduce the library's separately written solvers (DPM-Solver++(2M)/(3M), DPM-Solver-3M,
  UniPC with either prediction, Euler/DDIM), which are themselves verified against exact flows and peers;
* mixed per-step choices keep the order of their parts: slopes against the closed-form flow of a Gaussian;
* a plan survives JSON exactly, ``sample(plan=)`` and ``generate(plan=)`` run it, conflicts raise.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import diffsample
from diffsample import Plan, generate, sample, steps
from diffsample.errors import BudgetError, DiffsampleError, SigmaError
from diffsample.solvers import spec
from diffsample.testbeds import mixture64

F64 = torch.float64

# ---------------------------------------------------------------- one Gaussian: exact denoiser and flow
from exact_gaussian import gaussian, gaussian_flow  # noqa: E402


def max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


@pytest.mark.parametrize("n", [2, 5, 12])
def test_uniform_choices_reproduce_the_library_solvers(n: int):
    bed = mixture64()
    x = 80.0 * torch.randn(8, 64, dtype=F64, generator=torch.Generator().manual_seed(n))
    sigmas = steps.karras(n, 0.002, 80.0)

    def plan(**options):
        return sample(bed, x, sigmas, solver="plan", **options)

    pairs = [
        (plan(), sample(bed, x, sigmas, solver="dpmpp_2m", lower_order_final=False)),
        (plan(order=3), sample(bed, x, sigmas, solver="dpmpp_3m", lower_order_final=False)),
        (plan(order=3, prediction="noise"), sample(bed, x, sigmas, solver="dpm_solver_3m", lower_order_final=False)),
        (plan(corrector=True), sample(bed, x, sigmas, solver="unipc", lower_order_final=False)),
        (
            plan(order=3, corrector=True, variant="bh1"),
            sample(bed, x, sigmas, solver="unipc", order=3, variant="bh1", lower_order_final=False),
        ),
        (
            plan(prediction="noise", corrector=True),
            sample(bed, x, sigmas, solver="unipc", predict="noise", lower_order_final=False),
        ),
        (plan(order=1, prediction="noise"), sample(bed, x, sigmas, solver="euler")),
        (plan(order=1), sample(bed, x, sigmas, solver="euler")),
    ]
    for ours, theirs in pairs:
        assert max_abs(ours, theirs) < 1e-11  # the same updates in other words (measured ≤ 7.5e-13)


def _slope(errors: list[float], ns: list[int]) -> float:
    return float(-np.polyfit(np.log(ns), np.log(errors), 1)[0])


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"prediction": "alternate", "order": 2}, 2.0),
        ({"prediction": "alternate", "order": 3, "corrector": True}, 3.0),
    ],
)
def test_mixed_per_step_choices_keep_their_order(options: dict, expected: float):
    """Alternating data/noise prediction from step to step still integrates the flow at the order of its parts
    (the history is re-expressed in each step's own prediction type)."""
    x = torch.tensor([[3.0, -2.0, 1.0], [-1.0, 4.0, 0.5]], dtype=F64) * 10.0
    exact = gaussian_flow(x, 10.0, 0.05)
    ns, errors = [16, 32, 64, 128], []
    for n in ns:
        sigmas = steps.logsnr(n + 1, 0.05, 10.0, append_zero=False)
        opts = dict(options)
        opts["prediction"] = ["data" if i % 2 == 0 else "noise" for i in range(n)]
        out = sample(gaussian(), x, sigmas, solver="plan", **opts)
        errors.append(float((out - exact).abs().max()))
    assert _slope(errors, ns) > expected - 0.25


def test_plan_solver_validates_its_options():
    den, x, sigmas = gaussian(), torch.zeros(1, 3, dtype=F64), steps.logsnr(3, 0.1, 10.0)
    with pytest.raises(DiffsampleError, match="3 steps"):
        sample(den, x, sigmas, solver="plan", order=[1, 2])
    with pytest.raises(DiffsampleError, match="order"):
        sample(den, x, sigmas, solver="plan", order=4)
    with pytest.raises(DiffsampleError, match="prediction"):
        sample(den, x, sigmas, solver="plan", prediction="velocity")
    with pytest.raises(DiffsampleError, match="corrector"):
        sample(den, x, sigmas, solver="plan", corrector=[1, 0, 0])
    assert spec("plan").nfe(5) == 5


def test_one_model_call_per_step():
    den = gaussian()
    x = torch.ones(2, 3, dtype=F64) * 10.0
    for n in (1, 2, 7):
        den.reset_counter()
        sample(den, x, steps.logsnr(n, 0.01, 10.0), solver="plan", order=3, corrector=True)
        assert den.nfe == n


def _example_plan() -> Plan:
    return Plan(
        [80.0, 3.3041234567890123, 0.4614, 0.151, 0.0],
        "plan",
        {
            "prediction": ["data", "noise", "data", "data"],
            "order": [1, 2, 1, 1],
            "corrector": [True, True, False, False],
            "variant": ["bh1", "bh1", "bh2", "bh2"],
        },
        {"model": "mixture64", "nfe": 4, "error": 0.1},
    )


def test_plan_json_round_trip_is_exact(tmp_path):
    plan = _example_plan()
    path = tmp_path / "plan.json"
    plan.save(path)
    loaded = Plan.load(path)
    assert loaded == plan
    assert loaded.sigmas == plan.sigmas  # floats bit for bit
    data = json.loads(path.read_text())
    assert data["format"] == "diffsample.plan" and data["solver"] == "plan"
    assert Plan.from_json(plan.to_json()).to_dict() == plan.to_dict()
    assert plan.nfe == 4


def test_plan_rejects_bad_documents():
    with pytest.raises(DiffsampleError, match="not a diffsample plan"):
        Plan.from_dict({"sigmas": [1.0, 0.0]})
    with pytest.raises(SigmaError):
        Plan([1.0, 2.0, 0.0])
    with pytest.raises(diffsample.UnknownNameError):
        Plan([1.0, 0.0], "no_such_solver")


def test_sample_and_generate_run_a_plan(tmp_path):
    bed = mixture64()
    plan = _example_plan()
    x = 80.0 * torch.randn(4, 64, dtype=F64, generator=torch.Generator().manual_seed(0))
    direct = sample(bed, x, plan.sigma_tensor(), solver=plan.solver, **plan.options)
    assert torch.equal(sample(bed, x, plan=plan), direct)
    path = tmp_path / "p.json"
    plan.save(path)
    assert torch.equal(sample(bed, x, plan=str(path)), direct)
    assert torch.equal(sample(bed, x, plan.sigma_tensor(), plan=plan), direct)  # agreeing sigmas are fine
    bed.reset_counter()
    assert torch.equal(generate(bed, x, plan=plan), direct)
    assert bed.nfe == 4
    assert torch.equal(generate(bed, x, nfe=4, sigma_min=0.002, sigma_max=80.0, plan=plan), direct)


def test_a_plan_documents_walk_lands_near_the_exact_solution():
    """The example plan's mixed per-step walk (data/noise prediction, orders 1–2, bh1/bh2 correctors) run through
    ``sample(plan=)``, against DOP853 on the exact mixture64 PF-ODE: far closer than Euler or DPM-Solver++(2M)
    on its four levels (measured RMSE 0.060 against 0.31 and 0.27)."""
    pytest.importorskip("scipy")
    from diffsample.testbeds import reference_solution, rmse

    bed, plan = mixture64(), _example_plan()
    x = 80.0 * torch.randn(4, 64, dtype=F64, generator=torch.Generator().manual_seed(0))
    exact = reference_solution(bed, x, 80.0, 0.0)
    error = rmse(sample(bed, x, plan=plan), exact)
    for solver in ("euler", "dpmpp_2m"):
        assert error < 0.5 * rmse(sample(bed, x, plan.sigma_tensor(), solver=solver), exact), solver


def test_plan_conflicts_raise():
    bed = mixture64()
    plan = _example_plan()
    x = torch.zeros(1, 64, dtype=F64)
    with pytest.raises(SigmaError, match="different noise levels"):
        sample(bed, x, steps.karras(4, 0.002, 80.0), plan=plan)
    with pytest.raises(DiffsampleError, match="solver"):
        sample(bed, x, solver="euler", plan=plan)
    with pytest.raises(DiffsampleError, match="conflict"):
        sample(bed, x, plan=plan, order=3)
    with pytest.raises(BudgetError, match="over the budget"):
        generate(bed, x, nfe=3, plan=plan)
    with pytest.raises(SigmaError, match="sigma_max"):
        generate(bed, x, sigma_max=10.0, plan=plan)
    with pytest.raises(SigmaError, match="below sigma_min"):
        generate(bed, x, sigma_min=0.2, plan=plan)


def test_plan_nfe_is_the_counted_cost_for_option_dependent_solvers():
    """A restart plan's cost depends on its intervals and levels: ``Plan.nfe`` equals the calls a run makes."""
    from diffsample import noise
    from diffsample.testbeds import ring2d

    bed = ring2d()
    sigmas = steps.karras(6, 0.002, 80.0).tolist()
    plan = Plan(sigmas, solver="restart", options={"intervals": [[0.1, 2.0, 2, 3]]})
    x = noise.seeded(0).initial((8, 2), 80.0, dtype=torch.float64)
    bed.reset_counter()
    sample(bed, x, plan=plan, noise=noise.seeded(1))
    assert plan.nfe == bed.nfe


# ------------------------------------------------------------------------------ where the plan lives

SRC = Path(diffsample.__file__).parent


def _imported_modules(path: Path) -> set[str]:
    """Every module a source file imports, at module level or inside functions, as dotted names below diffsample."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = ".".join(path.relative_to(SRC).with_suffix("").parts[: -node.level] or ())
            module = ".".join(p for p in (base, node.module or "") if p)
            names.update(
                ".".join(p for p in (module, a.name) if p) if node.module is None else module for a in node.names
            )
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("diffsample"):
            names.add(node.module.removeprefix("diffsample").lstrip("."))
    return names


@pytest.mark.parametrize("module", ["sampling.py", "generate.py", "plan.py"])
def test_sample_generate_and_plan_import_nothing_upward(module: str):
    upward = ("tuning", "cli", "sample_cli", "testbeds", "bench", "models", "integrations")
    imported = _imported_modules(SRC / module)
    assert imported and not [m for m in imported if m.split(".")[0] in upward], imported


def test_plan_is_one_class_under_every_name():
    from diffsample import plan, tuning
    from diffsample.tuning import plan as tuning_plan

    assert diffsample.Plan is plan.Plan is tuning.Plan is tuning_plan.Plan
