"""DPM-Solver-v3 and its empirical model statistics, checked against answers known independently.

* Reduction: without statistics (``l = 1, s = b = 0``) v3 *is* DPM-Solver++(3M)/(2M) (1e-11), and the
  same statistics given as a per-coordinate grid reproduce it through the quadrature.
* A diagonal Gaussian ``N(μ, diag c²)``: ``D`` is linear in x, so ``l = σ²/(c² + σ²)`` (the Jacobian of
  ``σ ε̂``), ``f = (1 − l) x − D = −l μ`` is the same for every sample, hence ``s = 0`` and
  ``b = f' = −l' μ = 2 l (1 − l) μ``. The computed statistics match these; with them ``g`` is constant
  and even first-order v3 is exact up to the statistics' linear interpolation (error ∝ Δλ², measured).
* Convergence order on mixture64 against DOP853 (``reference_solution``).
* Closed-form cumulative integrals, save/load, and the errors for bad input.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from diffsample import solvers, steps
from diffsample.errors import DiffsampleError, ShapeError, SigmaError
from diffsample.testbeds import GaussianMixture, mixture64, reference_solution
from diffsample.tuning.ems import EMS, compute_statistics, cumulative_integrals

F64 = torch.float64
V3 = solvers.get("dpm_solver_v3")
MU = torch.tensor([[0.7, -0.4, 1.2, 0.1]], dtype=F64)
C = torch.tensor([[0.3, 0.1, 0.5, 1.0]], dtype=F64)
GAUSS = GaussianMixture(MU, C)
M64 = mixture64()


def _noise(n: int, d: int, seed: int = 3) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=F64)


def _gauss_closed_form(lam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    sig2 = np.exp(-2 * lam)[:, None]
    ell = sig2 / (C.numpy() ** 2 + sig2)
    return ell, 2 * ell * (1 - ell) * MU.numpy()


def _gauss_ems(n_levels: int, sigma_min: float = 0.002, sigma_max: float = 80.0) -> EMS:
    lam = np.linspace(-math.log(sigma_max), -math.log(sigma_min), n_levels)
    ell, b = _gauss_closed_form(lam)
    return EMS(lam, ell, np.zeros_like(ell), b)


@pytest.mark.parametrize("schedule", ["logsnr", "karras"])
@pytest.mark.parametrize("n", [3, 5, 8, 12, 20])
def test_reduces_to_dpmpp_multistep(schedule: str, n: int) -> None:
    x = _noise(16, 64) * 80
    sigmas = steps.get(schedule)(n, sigma_min=0.002, sigma_max=80.0)
    for order, ref in ((3, "dpmpp_3m"), (2, "dpmpp_2m")):
        out = V3(M64, x, sigmas, order=order, corrector=False, pseudo=False, solver_type="dpmsolver")
        assert float((out - solvers.get(ref)(M64, x, sigmas)).abs().max()) < 1e-11  # measured ≤ 2.2e-13


def test_degenerate_grid_statistics_match_no_statistics() -> None:
    """l = 1, s = b = 0 on a per-coordinate grid goes through the quadrature; all options, 1e-10."""
    x = _noise(8, 64) * 80
    sigmas = steps.logsnr(6, 0.002, 80.0)
    ems = EMS.degenerate(0.002, 80.0, shape=(64,))
    for options in ({}, {"pseudo": True, "corrector": True}, {"order": 2, "solver_type": "dpmsolver"}):
        a = V3(M64, x, sigmas, statistics=ems, **options)
        assert torch.allclose(a, V3(M64, x, sigmas, **options), rtol=0, atol=1e-10)


def test_cumulative_integrals_closed_form() -> None:
    ems = EMS.degenerate(0.01, 10.0)
    lam = np.linspace(ems.lam[0], ems.lam[-1], 7)
    ems = EMS(lam, np.ones((7, 1)) * 0.5, np.full((7, 1), 0.25), np.full((7, 1), 2.0))
    out = cumulative_integrals(ems)
    u = (lam - lam[0])[:, None]
    np.testing.assert_allclose(out["L"], 0.5 * u, atol=1e-13)
    np.testing.assert_allclose(out["S"], 0.25 * u, atol=1e-13)
    np.testing.assert_allclose(out["B"], 8.0 * (1 - np.exp(-0.25 * u)), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(out["I"], (np.exp(0.75 * u) - 1) / 0.75, rtol=1e-12, atol=1e-13)
    # C = ∫ e^{0.75u} 8(1 − e^{−0.25u}) du = 8[(e^{0.75u} − 1)/0.75 − (e^{0.5u} − 1)/0.5]
    np.testing.assert_allclose(
        out["C"], 8 * ((np.exp(0.75 * u) - 1) / 0.75 - (np.exp(0.5 * u) - 1) / 0.5), rtol=1e-12, atol=1e-12
    )


def test_gaussian_statistics_match_closed_form() -> None:
    x0 = GAUSS.sample(128, generator=torch.Generator().manual_seed(1))
    ems = compute_statistics(GAUSS, x0, n_levels=41)
    ell, b = _gauss_closed_form(ems.lam)
    np.testing.assert_allclose(ems.l, ell, rtol=0, atol=1e-12)  # Rademacher probes: exact for diagonal J
    assert np.all(ems.s == 0)
    # b uses l' from differences on the grid (spacing 0.27, one-sided at the ends): a few % of max |b|
    assert np.abs(ems.b - b).max() < 0.05 * np.abs(b).max()
    assert ems.info["n_samples"] == 128 and ems.info["jvp_per_sample"] == 82
    fd = compute_statistics(GAUSS, x0[:32], n_levels=9, jacobian="fd", fd_step=1e-4)
    np.testing.assert_allclose(fd.l, _gauss_closed_form(fd.lam)[0], rtol=0, atol=1e-7)
    traj = compute_statistics(GAUSS, noise=_noise(32, 4), n_levels=9, ode_substeps=2)
    np.testing.assert_allclose(traj.l, _gauss_closed_form(traj.lam)[0], rtol=0, atol=1e-12)


def test_gaussian_exact_with_closed_form_statistics() -> None:
    """g is constant: first-order v3 at 3 steps is exact up to the Δλ² interpolation error of the grid."""
    z = _noise(8, 4) * 80
    ref = reference_solution(GAUSS, z, 80.0, 0.002)
    sigmas = steps.logsnr(3, 0.002, 80.0, append_zero=False)
    errors = [
        float((V3(GAUSS, z, sigmas, statistics=_gauss_ems(k), order=1) - ref).square().mean().sqrt())
        for k in (101, 401)
    ]
    plain = float((V3(GAUSS, z, sigmas, order=1) - ref).square().mean().sqrt())
    assert errors[1] < 1e-4 < 0.1 < plain
    assert 14 < errors[0] / errors[1] < 18  # 4× finer grid: 16× smaller error
    computed = compute_statistics(GAUSS, GAUSS.sample(64, generator=torch.Generator().manual_seed(2)), n_levels=61)
    out = V3(GAUSS, z, sigmas, statistics=computed)
    assert float((out - ref).square().mean().sqrt()) < 0.03 * plain


def test_convergence_order_on_mixture64() -> None:
    """Third order with statistics (order 3, no pseudo-order, no corrector), σ 10 → 0.05."""
    x0 = M64.sample(64, generator=torch.Generator().manual_seed(5))
    ems = compute_statistics(M64, x0, sigma_min=0.05, sigma_max=10.0, n_levels=13)
    z = _noise(8, 64) * 10
    ref = reference_solution(M64, z, 10.0, 0.05)
    errs = []
    ns = (24, 48, 96)
    for n in ns:
        sigmas = steps.logsnr(n, 0.05, 10.0, append_zero=False)
        out = V3(M64, z, sigmas, statistics=ems, pseudo=False, corrector=False, lower_order_final=False)
        errs.append(float((out - ref).square().mean().sqrt()))
    slope = math.log(errs[1] / errs[2]) / math.log(2)
    assert 2.6 < slope < 3.6, (errs, slope)


def test_save_load_round_trip(tmp_path) -> None:
    ems = compute_statistics(GAUSS, GAUSS.sample(16, generator=torch.Generator().manual_seed(1)), n_levels=5)
    path = tmp_path / "ems.npz"
    ems.save(path)
    back = EMS.load(path)
    for name in ("lam", "l", "s", "b"):
        np.testing.assert_array_equal(getattr(back, name), getattr(ems, name))
    assert back.info == ems.info and back.shape == (4,)
    assert path.stat().st_size < 10_000
    l_mid, _, _ = back.at(0.5 * (back.lam[1] + back.lam[2]))
    np.testing.assert_allclose(l_mid, 0.5 * (back.l[1] + back.l[2]))


def test_clear_errors() -> None:
    z = _noise(2, 4) * 80
    narrow = _gauss_ems(11, sigma_min=0.01, sigma_max=80.0)
    with pytest.raises(SigmaError, match="cover sigma"):
        V3(GAUSS, z, steps.logsnr(4, 0.002, 80.0), statistics=narrow)
    with pytest.raises(ShapeError, match="do not fit"):
        V3(M64, _noise(2, 64), steps.logsnr(4, 0.002, 80.0), statistics=_gauss_ems(11))
    with pytest.raises(ShapeError):
        EMS(np.array([0.0, 1.0, 0.5]), np.ones((3, 1)), np.zeros((3, 1)), np.zeros((3, 1)))
    with pytest.raises(DiffsampleError):
        V3(GAUSS, z, steps.logsnr(4, 0.002, 80.0), order=4)
    with pytest.raises(DiffsampleError):
        V3(GAUSS, z, steps.logsnr(4, 0.002, 80.0), solver_type="bh2")
    with pytest.raises(DiffsampleError, match="exactly one"):
        compute_statistics(GAUSS)
    with pytest.raises(DiffsampleError):
        compute_statistics(GAUSS, z, jacobian="hessian")


def test_step_into_zero_is_denoised_value() -> None:
    calls = []
    z = _noise(3, 4) * 80
    sigmas = steps.logsnr(4, 0.002, 80.0)
    out = V3(GAUSS, z, sigmas, statistics=_gauss_ems(41), callback=calls.append)
    assert len(calls) == 4 and calls[-1]["sigma_next"] == 0
    assert torch.equal(out, calls[-1]["denoised"])
