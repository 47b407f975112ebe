"""DPM-Solver / DPM-Solver++ against answers known independently of the code.

* Convergence orders: the slope of log RMSE against log NFE on an exact Gaussian-mixture bed, with
  the exact probability-flow ODE solution from DOP853 (``reference_solution``) as the answer.
* DPM-Solver-1 is DDIM, i.e. Euler in σ-space (Lu et al. 2022, §3.3).
* Steps into σ = 0 under float32 / float16 / bfloat16 networks: finite results, the registry's NFE,
  and the closed-form PF-ODE solution of a Gaussian ``N(μ, s²)``,
  ``x(σ) = μ + sqrt(s² + σ²)/sqrt(s² + σ0²) (x0 − μ)``.
* Dynamic thresholding against numpy's quantile (Saharia et al. 2022, §2.3).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from diffsample import sample, solvers, steps
from diffsample.denoisers import Denoiser, FunctionDenoiser
from diffsample.errors import DiffsampleError
from diffsample.solvers import dpm
from diffsample.solvers._kernel.phi import rho_ratios
from diffsample.testbeds import GaussianMixture, reference_solution

F64 = torch.float64
SIGMA_MAX, SIGMA_MIN = 80.0, 0.05

FIXED_STEP = [
    "dpm_solver_1",
    "dpm_solver_2s",
    "dpm_solver_3s",
    "dpm_solver_2m",
    "dpm_solver_3m",
    "dpm_fast",
    "dpmpp_2s",
    "dpmpp_2m",
    "dpmpp_3m",
]


@pytest.fixture(scope="module")
def bed() -> GaussianMixture:
    """A smooth 2-D mixture (all stds >= 0.3): the asymptotic regime starts at modest NFE."""
    means = torch.tensor([[-1.0, 0.5], [1.0, -0.5], [0.3, 1.2]], dtype=F64)
    return GaussianMixture(means, torch.tensor([0.4, 0.3, 0.5], dtype=F64), torch.tensor([0.3, 0.5, 0.2], dtype=F64))


@pytest.fixture(scope="module")
def problem(bed) -> tuple[torch.Tensor, torch.Tensor]:
    x = SIGMA_MAX * torch.randn(8, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    return x, reference_solution(bed, x, SIGMA_MAX, SIGMA_MIN, cache=False)


def _errors(bed, problem, name: str, ns, **options) -> tuple[list[int], list[float]]:
    x, ref = problem
    nfes, errs = [], []
    for n in ns:
        bed.reset_counter()
        out = solvers.get(name)(bed, x.clone(), steps.logsnr(n + 1, SIGMA_MIN, SIGMA_MAX, append_zero=False), **options)
        nfes.append(bed.nfe)
        errs.append(float((out - ref).square().mean().sqrt()))
    return nfes, errs


def _order(nfes, errs) -> float:
    """Minus the least-squares slope of log error against log NFE."""
    return -float(np.polyfit(np.log(nfes), np.log(errs), 1)[0])


# Step counts in the asymptotic regime of each method on the bed above, σ 80 → 0.05 (log-SNR steps).
# σ_max = 80 (EDM's) rather than ~10: a multistep warm-up's first-order step has an O(h²·|dD/dλ|)
# local error with |dD/dλ| ~ 1/σ_max there, which at σ_max = 10 already bends the 3M curves past n ≈ 100.
CONVERGENCE = [
    ("dpm_solver_1", 1, (40, 80, 160)),
    ("dpm_solver_2s", 2, (20, 40, 80)),
    ("dpmpp_2s", 2, (20, 40, 80)),
    ("dpm_solver_2m", 2, (40, 80, 160)),
    ("dpmpp_2m", 2, (40, 80, 160)),
    ("dpm_solver_3s", 3, (15, 30, 60)),
    ("dpm_solver_3m", 3, (40, 80, 160)),
    ("dpmpp_3m", 3, (40, 80, 160)),
    ("dpm_fast", 3, (32, 62, 122)),  # NFE ≡ 2 (mod 3): the plan ends with an order-2 step
]


@pytest.mark.parametrize(("name", "order", "ns"), CONVERGENCE, ids=[c[0] for c in CONVERGENCE])
def test_convergence_order(bed, problem, name, order, ns):
    nfes, errs = _errors(bed, problem, name, ns, **({"lower_order_final": False} if name[-1] == "m" else {}))
    assert nfes == [solvers.spec(name).nfe(n, ends_at_zero=False) for n in ns]
    assert abs(_order(nfes, errs) - order) <= 0.3, (name, nfes, errs)
    assert solvers.spec(name).order == order


def test_dpm_fast_with_final_first_order_step_is_second_order(bed, problem):
    """With 3 | NFE the plan (k-diffusion's) ends with a first-order step: globally second order."""
    nfes, errs = _errors(bed, problem, "dpm_fast", (30, 60, 120))
    assert nfes == [30, 60, 120]
    assert abs(_order(nfes, errs) - 2) <= 0.3


def test_3m_half_weight_of_reference_codes_is_second_order(bed, problem, monkeypatch):
    """The D2 weighting of DPM-Solver's / k-diffusion's 3M (``ρ_2 d_2`` for ``2 ρ_2 d_2``) loses an order."""

    def half_weight(h, past, data):
        if len(past) < 2:
            return full(h, past, data)
        h0, h1 = past
        rho1, rho2 = rho_ratios(h, data)
        on_d2 = (rho1 * h0 + rho2) / (h0 + h1)
        alpha, beta = rho1 + on_d2, -on_d2
        return [1.0 + alpha / h0, beta / h1 - alpha / h0, -beta / h1]

    full = dpm.multistep_coeffs
    monkeypatch.setattr(dpm, "multistep_coeffs", half_weight)
    nfes, errs = _errors(bed, problem, "dpmpp_3m", (40, 80, 160), lower_order_final=False)
    assert abs(_order(nfes, errs) - 2) <= 0.3


def test_rho_matches_taylor_series():
    """ρ_1, ρ_2 against their series.

    Noise: ``h/2 − h²/12``, ``h²/6 − h³/24``; data: ``h/2 + h²/12``, ``h²/6 + h³/24``.
    """
    for h in (1e-3, 1e-2):
        n1, n2 = rho_ratios(h, False)
        d1, d2 = rho_ratios(h, True)
        assert n1 == pytest.approx(h / 2 - h * h / 12, rel=1e-6)
        assert n2 == pytest.approx(h * h / 6 - h**3 / 24, rel=1e-5)
        assert d1 == pytest.approx(h / 2 + h * h / 12, rel=1e-6)
        assert d2 == pytest.approx(h * h / 6 + h**3 / 24, rel=1e-5)
    assert rho_ratios(2000.0, False) == (1.0, 1.0)  # no overflow for huge steps


def test_dpm_solver_1_is_euler():
    mu, s = 0.3, 0.7
    den = FunctionDenoiser(lambda x, sig: mu + s * s / (s * s + sig[:, None] ** 2) * (x - mu))
    x = 10 * torch.randn(5, 3, generator=torch.Generator().manual_seed(1), dtype=F64)
    for sigmas in (steps.karras(12, 0.01, 10.0), steps.logsnr(7, 0.05, 10.0, append_zero=False)):
        a = solvers.get("dpm_solver_1")(den, x.clone(), sigmas)
        b = solvers.get("euler")(den, x.clone(), sigmas)
        assert float((a - b).abs().max()) <= 1e-12  # the same step in other words (measured ≤ 4e-15)


# ------------------------------------------------------------------------------ steps into σ = 0


class CastGaussian(Denoiser):
    """The exact denoiser of ``N(μ, s² I)`` run as a low-precision "network": input and output cast to ``dtype``."""

    def __init__(self, mu: torch.Tensor, s: float, dtype: torch.dtype) -> None:
        super().__init__()
        self.mu, self.s, self.dtype = mu, s, dtype

    def denoise(self, x, sigma, **kwargs):
        xc, sig = x.to(self.dtype), sigma.to(self.dtype)[:, None]
        s2 = self.s**2
        return (self.mu.to(self.dtype) + s2 / (s2 + sig * sig) * (xc - self.mu.to(self.dtype))).to(x.dtype)


def _gaussian_case(dtype: torch.dtype):
    g = torch.Generator().manual_seed(2)
    mu = torch.rand(64, generator=g) * 2 - 1
    x = 80.0 * torch.randn(4, 64, generator=g)
    return CastGaussian(mu, 0.5, dtype), mu, x


def _exact_at_zero(mu: torch.Tensor, x: torch.Tensor, s: float, sigma0: float) -> torch.Tensor:
    return mu + s / math.sqrt(s * s + sigma0 * sigma0) * (x - mu)


@pytest.mark.parametrize("name", FIXED_STEP)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_steps_into_zero_finite_and_nfe(name, dtype):
    den, mu, x = _gaussian_case(dtype)
    exact = _exact_at_zero(mu, x, 0.5, 80.0)
    for schedule in (steps.karras, steps.logsnr):
        for n in (1, 2, 3, 5, 10, 100):
            den.reset_counter()
            out = sample(den, x, schedule(n, 0.002, 80.0), solver=name)
            assert out.dtype == torch.float32 and torch.isfinite(out).all()
            assert den.nfe == solvers.spec(name).nfe(n), (name, schedule.__name__, n)
            if n == 100:  # accurate up to the method's order and the network's precision
                tol = (
                    0.1
                    if solvers.spec(name).order == 1
                    else {torch.float32: 5e-3, torch.float16: 1e-2, torch.bfloat16: 5e-2}[dtype]
                )
                assert (out - exact).abs().max() < tol, (name, schedule.__name__)


@pytest.mark.parametrize("name", FIXED_STEP)
def test_thousand_steps_into_zero(name):
    den, mu, x = _gaussian_case(torch.float16)
    sigmas = steps.karras(1000, 0.002, 80.0) if "3" in name else steps.logsnr(1000, 0.002, 80.0)
    out = sample(den, x, sigmas, solver=name)
    assert torch.isfinite(out).all()
    assert den.nfe == solvers.spec(name).nfe(1000)
    assert (out - _exact_at_zero(mu, x, 0.5, 80.0)).abs().max() < 1e-2


@pytest.mark.parametrize("name", FIXED_STEP)
def test_step_into_zero_returns_the_denoised_value(name):
    """The σ = 0 limit of every update is ``x = D(x, σ_min)``, the last reported x̂0, bit for bit."""
    den, _, x = _gaussian_case(torch.float32)
    seen = []
    out = sample(den, x, steps.karras(20, 0.002, 80.0), solver=name, callback=seen.append)
    assert seen[-1]["sigma_next"] == 0 and torch.equal(out, seen[-1]["denoised"])


def test_lower_order_final():
    """Two steps with lower_order_final: a warm-up Euler step and a first-order last step, i.e. DDIM."""
    den, _, x = _gaussian_case(torch.float32)
    sigmas = steps.logsnr(3, 0.5, 80.0, append_zero=False)
    euler = sample(den, x, sigmas, solver="euler")
    for name in ("dpmpp_2m", "dpmpp_3m", "dpm_solver_2m", "dpm_solver_3m"):
        assert torch.allclose(sample(den, x, sigmas, solver=name), euler, rtol=1e-5, atol=1e-5)
        assert not torch.allclose(
            sample(den, x, sigmas, solver=name, lower_order_final=False), euler, rtol=1e-5, atol=1e-5
        )


# --------------------------------------------------------------------------------------- adaptive


@pytest.mark.parametrize("order", [2, 3])
def test_adaptive_reaches_tolerance_and_reports_nfe(bed, problem, order):
    x, ref = problem
    sigmas = torch.tensor([SIGMA_MAX, 1.0, SIGMA_MIN], dtype=F64)  # the interior level is ignored
    errs = []
    for rtol in (1e-3, 1e-4):
        info: dict = {}
        bed.reset_counter()
        out = solvers.get("dpm_adaptive")(bed, x.clone(), sigmas, order=order, rtol=rtol, atol=rtol / 10, info=info)
        errs.append(float((out - ref).abs().max()))
        assert info["nfe"] == bed.nfe and info["steps"] == info["n_accept"] + info["n_reject"]
        assert bed.nfe == info["n_accept"] + (order - 1) * info["steps"]  # start-of-step output reused
        assert errs[-1] < 10 * rtol
    assert errs[1] < errs[0]


def test_adaptive_to_zero_takes_final_denoising_step(bed, problem):
    """sigmas ending in 0: adapt down to σ_min, then ``x = D(x, σ_min)``; compared with D of the exact state there."""
    x, ref = problem
    info: dict = {}
    seen = []
    sigmas = torch.tensor([SIGMA_MAX, SIGMA_MIN, 0.0], dtype=F64)
    out = sample(bed, x, sigmas, solver="dpm_adaptive", rtol=1e-4, atol=1e-5, info=info, callback=seen.append)
    assert seen[-1]["sigma"] == SIGMA_MIN and seen[-1]["sigma_next"] == 0 and torch.equal(out, seen[-1]["denoised"])
    assert info["nfe"] == info["n_accept"] + 2 * info["steps"] + 1
    assert (out - bed.denoise(ref, torch.full((len(x),), SIGMA_MIN, dtype=F64))).abs().max() < 1e-3
    # that last interval 0.05 → 0 is one Euler step, O(σ_min²/s²) from the exact flow on this bed
    assert (out - reference_solution(bed, x, SIGMA_MAX, 0.0, cache=False)).abs().max() < 3e-2
    assert solvers.spec("dpm_adaptive").adaptive


def test_adaptive_rejects_bad_options(bed, problem):
    x, _ = problem
    sigmas = torch.tensor([SIGMA_MAX, SIGMA_MIN], dtype=F64)
    with pytest.raises(DiffsampleError):
        solvers.get("dpm_adaptive")(bed, x, sigmas, order=4)
    with pytest.raises(DiffsampleError):
        solvers.get("dpm_adaptive")(bed, x, sigmas, atol=0.0)


# ----------------------------------------------------------------------------------- thresholding


def test_dynamic_threshold_matches_numpy_quantile():
    x0 = 3 * torch.randn(6, 3, 4, 4, generator=torch.Generator().manual_seed(3), dtype=F64)
    x0[0] *= 0.1  # this sample stays inside [−1, 1]: s = max_value, unchanged
    out = dpm.dynamic_threshold(x0, 0.9, 1.0)
    a = x0.reshape(6, -1).numpy()
    s = np.maximum(np.quantile(np.abs(a), 0.9, axis=1), 1.0)[:, None]
    np.testing.assert_allclose(out.reshape(6, -1).numpy(), np.clip(a, -s, s) / s, rtol=1e-12, atol=1e-14)
    assert torch.equal(out[0], x0[0])
    assert dpm.dynamic_threshold(x0, 0.9, 2.0).abs().max() <= 2.0


def test_thresholding_option_bounds_the_data_prediction():
    """With thresholding every x̂0 the solver uses lies in [−max_value, max_value]; the final step returns one."""
    den = FunctionDenoiser(lambda x, sig: 5.0 * torch.tanh(x))  # a network that overshoots the data range
    x = 80.0 * torch.randn(3, 16, generator=torch.Generator().manual_seed(4))
    for name in ("dpmpp_2s", "dpmpp_2m", "dpmpp_3m"):
        seen = []
        out = sample(
            den, x, steps.karras(8, 0.002, 80.0), solver=name, thresholding=True, max_value=1.0, callback=seen.append
        )
        assert all(float(c["denoised"].abs().max()) <= 1.0 + 1e-6 for c in seen)
        assert out.abs().max() <= 1.0 + 1e-6
        with pytest.raises(DiffsampleError):
            sample(den, x, steps.karras(8, 0.002, 80.0), solver=name, thresholding=True, threshold_ratio=1.5)


def test_registry_entries():
    for name in FIXED_STEP + ["dpm_adaptive"]:
        assert name in solvers.available()
    assert solvers.spec("dpm_solver_3s").nfe(10) == 28 and solvers.spec("dpmpp_2s").nfe(10) == 19
    assert dpm.fast_orders(9) == [3, 3, 2, 1] and dpm.fast_orders(10) == [3, 3, 3, 1]
    assert dpm.fast_orders(11) == [3, 3, 3, 2] and dpm.fast_orders(1) == [1] and dpm.fast_orders(2) == [2]


def test_order_plan_caps_sudden_step_growth_only():
    """Smooth grids keep full order to the end from 15 steps on; a step 5–6× longer in λ than the one
    before (KL-optimal's last finite step) is taken at order 2."""
    for name in ("karras", "logsnr", "exponential"):
        s = steps.get(name)(19, 0.002, 80.0).tolist()
        assert dpm.planned_orders(s, 3, True) == [1, 2] + [3] * 16 + [1]  # 19 steps, the last into σ = 0
    s = steps.kl_optimal(19, 0.002, 80.0).tolist()
    orders = dpm.planned_orders(s, 3, True)
    assert orders[-2] == 2 and orders[:-2] == [1, 2] + [3] * 15
    assert dpm.planned_orders(s, 3, False)[-2:] == [3, 1]  # into σ = 0 first order whatever the option


def test_dpmpp_3m_error_has_no_jump_at_the_lower_order_final_threshold():
    """Against the exact ODE solution: from 15 to 16 KL-optimal steps (where the run-length rule of
    lower_order_final stops) the error falls, as more steps should; it used to double on this bed."""
    from diffsample.testbeds import ring2d

    bed = ring2d()
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 80.0
    ref = reference_solution(bed, x, 80.0, 0.0)
    err = {
        n: float((sample(bed, x, steps.kl_optimal(n - 1, 0.002, 80.0), "dpmpp_3m") - ref).square().mean().sqrt())
        for n in (15, 16, 20)
    }
    assert err[16] < err[15] and err[20] < err[16]
