"""Accuracy cliffs of the λ-space multistep solvers at a tiny σ_min (issue #11): rule 4 of
:mod:`diffsample.solvers._kernel.orders` lowers the order of a step whose extrapolation amplification
exceeds :data:`AMPLIFICATION_LIMIT`. Checked against the exact PF-ODE solution (DOP853 reference) and the
ring2d bed's own geometry (its data lie within 0.05·4 of the unit circle)."""

from __future__ import annotations

import math

import pytest
import torch

from diffsample import sample, steps
from diffsample.solvers._kernel.orders import AMPLIFICATION_LIMIT, extrapolation_amplification, planned_orders
from diffsample.testbeds import reference_solution, ring2d

F64 = torch.float64
BED = ring2d()
X0 = 80.0 * torch.randn(64, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
LAMBDA_SOLVERS = ["dpmpp_2m", "dpmpp_3m", "dpm_solver_2m", "dpm_solver_3m", "unipc", "dc_solver", "dpm_solver_v3"]


def rmse(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.to(F64) - b.to(F64)).square().mean().sqrt())


def test_amplification_is_the_lebesgue_function():
    assert extrapolation_amplification([0.0, 1.0], 0, 1) == 1.0
    assert extrapolation_amplification([0.0, 1.0, 3.0], 1, 2) == pytest.approx(1 + 2 * 2.0)  # ratio 2: |1+r| + |r|
    L = 1 + math.sqrt(2)
    assert math.isclose(AMPLIFICATION_LIMIT, (L + 1) * (L + 2) / 2 + L * (L + 2) + L * (L + 1) / 2)


@pytest.mark.parametrize("solver", LAMBDA_SOLVERS)
def test_huge_last_step_stays_on_the_ring(solver):
    # [80, 1, 1e-30, 0]: a second-order step of λ-ratio 16 used to return |x| = 7.2 on the unit-circle bed.
    out = sample(BED, X0.clone(), torch.tensor([80.0, 1.0, 1e-30, 0.0], dtype=F64), solver=solver)
    assert float(out.norm(dim=1).max()) < 1.25


def test_tiny_sigma_min_dpmpp_3m():
    sigmas = steps.karras(20, 1e-10, 80.0).to(F64)
    assert planned_orders(sigmas.tolist(), 3, True)[-2:] == [2, 1]
    ref = reference_solution(BED, X0, 80.0, 0.0)
    out = sample(BED, X0.clone(), sigmas, solver="dpmpp_3m")
    assert rmse(out, ref) < 0.2  # 0.41 before rule 4 (Euler: 0.025)
    assert float(out.norm(dim=1).max()) < 1.5  # 2.3 before


@pytest.mark.parametrize("schedule", ["karras", "logsnr", "exponential", "kl_optimal"])
def test_default_span_plans_unchanged(schedule):
    """Rule 4 never triggers on the default span (0.002 … 80): every README figure keeps its bits."""
    for n in range(2, 101):
        s = steps.get(schedule)(n, 0.002, 80.0).tolist()
        lam = [-math.log(v) for v in s if v > 0]
        for order in (2, 3):
            orders = planned_orders(s, order, True)
            assert all(extrapolation_amplification(lam, i, orders[i]) <= AMPLIFICATION_LIMIT
                       for i in range(len(lam) - 1)), (n, order)
