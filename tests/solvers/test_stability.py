"""StabilityWarning of the solvers whose steps leave the stability region at 2–4 steps (issue #11):
Heun (``heun``, ``edm``, ``restart``) and noise-prediction singlestep DPM-Solvers (``dpm_solver_2s``,
``dpm_solver_3s``, ``dpm_fast``). The criterion (:mod:`diffsample.solvers._kernel.stability`) is checked
against the exact solution of the Gaussian test problem; the warnings against the ring2d bed's geometry
(its data lie near the unit circle)."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from diffsample import noise, sample, steps
from diffsample.errors import StabilityWarning
from diffsample.solvers._kernel.pf_ode import euler_step
from diffsample.solvers._kernel.stability import STABILITY_LIMIT, gaussian_step_error
from diffsample.testbeds import ring2d

F64 = torch.float64
BED = ring2d()
X0 = 80.0 * torch.randn(16, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
WARNING_SOLVERS = ["heun", "edm", "dpm_solver_2s", "dpm_solver_3s", "dpm_fast", "restart"]


def euler_from(denoiser, x, sigma, sigma_next):
    return euler_step(x, denoiser(x, torch.full((x.shape[0],), sigma, dtype=x.dtype)), sigma, sigma_next)


@pytest.mark.parametrize(("sigma", "sigma_next"), [(80.0, 0.002), (80.0, 40.0), (1.0, 1e-6), (0.5, 0.4)])
def test_euler_error_is_the_exact_gaussian_ratio(sigma, sigma_next):
    """Euler maps x to (s² + σσ')/(s² + σ²)·x; the exact flow to sqrt((s² + σ'²)/(s² + σ²))·x: E < 1."""
    s = torch.logspace(math.log10(sigma_next) - 2, math.log10(sigma) + 2, 4001, dtype=F64)
    exact = (1 - (s * s + sigma * sigma_next) / ((s * s + sigma**2) * (s * s + sigma_next**2)).sqrt()).max()
    error = gaussian_step_error(euler_from, sigma, sigma_next)
    assert error < 1.0
    assert error == pytest.approx(float(exact), rel=1e-2)  # 20 scales per decade: the peak within 1 %


def _run(name: str, n: int) -> tuple[torch.Tensor, list[warnings.WarningMessage]]:
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        out = sample(BED, X0.clone(), steps.karras(n, 0.002, 80.0).to(F64), solver=name, noise=noise.seeded(0))
    return out, [w for w in record if issubclass(w.category, StabilityWarning)]


@pytest.mark.parametrize("name", WARNING_SOLVERS)
def test_too_few_steps_warn_once(name):
    n = 3 if name == "dpm_fast" else 2  # dpm_fast: 2 calls before the final denoising = one 2nd-order step
    out, warned = _run(name, n)
    assert len(warned) == 1
    message = str(warned[0].message)
    assert "step 0" in message and "sigma 80" in message and "ratio" in message
    assert float(out.norm(dim=1).max()) > 10.0  # the warned result is far off the unit circle


@pytest.mark.parametrize("name", [*WARNING_SOLVERS, "dpmpp_2s", "euler"])
@pytest.mark.parametrize("n", [5, 6, 8, 10, 20, 50])
def test_normal_step_counts_do_not_warn(name, n):
    out, warned = _run(name, n)
    assert not warned
    assert float(out.norm(dim=1).max()) < 5.0


def test_limit_sits_between_normal_and_broken_runs():
    """Every Heun/DPM-Solver step of ≥ 5 Karras steps is below the limit; Heun's 3-step run far above."""
    from diffsample.solvers._kernel.pf_ode import heun_from

    s = steps.karras(3, 0.002, 80.0).tolist()
    assert gaussian_step_error(heun_from, s[1], s[2]) > 5 * STABILITY_LIMIT
