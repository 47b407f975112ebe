"""Accuracy cliffs of the λ-space multistep solvers at a tiny σ_min (issue #11): rule 4 of
:mod:`diffsample.solvers._kernel.orders` lowers a step's order while DPM-Solver++'s step on the Gaussian
test problem is less accurate than a first-order step can be. Checked against the exact PF-ODE solution
(DOP853 reference) and the ring2d bed's own geometry (its data lie within 0.05·4 of the unit circle)."""

from __future__ import annotations

import math

import pytest
import torch

from diffsample import sample, steps
from diffsample.solvers._kernel import orders
from diffsample.solvers._kernel.orders import FIRST_ORDER_ERROR_BOUND, multistep_error, planned_orders
from diffsample.testbeds import mixture64, reference_solution, ring2d

F64 = torch.float64
RING = ring2d()
X0 = 80.0 * torch.randn(64, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
LAMBDA_SOLVERS = [
    "dpmpp_2m",
    "dpmpp_3m",
    "dpm_solver_2m",
    "dpm_solver_3m",
    "unipc",
    "dc_solver",
    "dpm_solver_v3",
    "dpmpp_2m_hb",
]


def rmse(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.to(F64) - b.to(F64)).square().mean().sqrt())


@pytest.mark.parametrize(("sigma", "sigma_next"), [(80.0, 0.002), (1.0, 1e-30), (0.5, 0.4)])
def test_first_order_error_is_the_exact_gaussian_ratio(sigma, sigma_next):
    """Order 1 is DDIM: x' = (s² + σσ')/(s² + σ²)·x against the exact sqrt((s² + σ'²)/(s² + σ²))·x."""
    s = torch.logspace(math.log10(sigma_next) - 2, math.log10(sigma) + 2, 4001, dtype=F64)
    exact = (1 - (s * s + sigma * sigma_next) / ((s * s + sigma**2) * (s * s + sigma_next**2)).sqrt()).max()
    error = multistep_error([sigma, sigma_next], 0, 1)
    assert error < FIRST_ORDER_ERROR_BOUND
    assert error == pytest.approx(float(exact), rel=1e-2)  # 20 scales per decade: the peak within 1 %


def test_long_second_order_step_is_lowered():
    assert multistep_error([80.0, 1.0, 1e-30], 1, 2) > 5 * FIRST_ORDER_ERROR_BOUND  # 7.2: the |x| it returned
    assert planned_orders([80.0, 1.0, 1e-30, 0.0], 3, True) == [1, 1, 1]
    assert planned_orders([80.0, 1.0, 1e-30, 0.0], 3, False) == [1, 2, 1]  # the option still switches the rules


@pytest.mark.parametrize("solver", LAMBDA_SOLVERS)
def test_huge_last_step_stays_on_the_ring(solver):
    # [80, 1, 1e-30, 0]: a second-order step of λ-ratio 16 used to return |x| = 7.2 on the unit-circle bed.
    out = sample(RING, X0.clone(), torch.tensor([80.0, 1.0, 1e-30, 0.0], dtype=F64), solver=solver)
    assert float(out.norm(dim=1).max()) < 1.25


@pytest.mark.parametrize(
    ("bed", "n", "before", "bound"),
    [(RING, 10, 1.80, 0.35), (RING, 20, 0.41, 0.1), (mixture64(), 10, 1.85, 0.7), (mixture64(), 20, 0.17, 0.08)],
)
def test_tiny_sigma_min_dpmpp_3m(bed, n, before, bound):
    """karras(n, 1e-10, 80): DPM-Solver++(3M) against the exact solution (RMSE ``before`` rule 4 in the comment)."""
    x0 = 80.0 * torch.randn(64, bed.means.shape[1], generator=torch.Generator().manual_seed(0), dtype=F64)
    ref = reference_solution(bed, x0, 80.0, 0.0)
    out = sample(bed, x0.clone(), steps.karras(n, 1e-10, 80.0).to(F64), solver="dpmpp_3m")
    assert rmse(out, ref) < bound < before


@pytest.mark.parametrize("schedule", ["karras", "logsnr", "exponential", "kl_optimal"])
def test_default_span_plans_unchanged(schedule, monkeypatch):
    """Rule 4 never triggers on the default span (0.002 … 80): every README figure keeps its bits."""
    grids = [steps.get(schedule)(n, 0.002, 80.0).tolist() for n in range(2, 101)]
    plans = [planned_orders(s, order, True) for s in grids for order in (2, 3)]
    monkeypatch.setattr(orders, "FIRST_ORDER_ERROR_BOUND", math.inf)
    assert plans == [planned_orders(s, order, True) for s in grids for order in (2, 3)]
