"""DEIS (tAB and ρAB) against answers known independently of the code.

* The tAB weights ``∫_{σ_i}^{σ_{i+1}} ℓ_j(t(τ)) dτ`` against scipy's adaptive quadrature of the same
  Lagrange polynomials (t = log σ, including the closed form into σ = 0, and a VP time ``t(σ)``);
  invariance of the weights under affine changes of ``t``; ``t = σ`` gives the ρAB weights.
* ρAB is Adams–Bashforth in σ, i.e. LMS; order 1 is Euler/DDIM.
* Convergence orders: the slope of log RMSE against log NFE on the exact Gaussian-mixture bed of
  ``test_multistep`` (σ 80 → 0.05, log-SNR steps), against the exact PF-ODE solution from DOP853.
* Steps into σ = 0 under float32 / float16 / bfloat16 networks: finite, the registry's NFE, no call at
  σ = 0, and the closed-form Gaussian PF-ODE solution at 1000 steps.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.integrate import quad
from test_multistep import (  # the shared bed, references, grids and low-precision network
    NS_BY_ORDER,
    SIGMA_MIN,
    bed,  # noqa: F401  (pytest fixture)
    check_steps_into_zero,
    errors,
    gaussian_case,
    graded_logsnr,
    measured_order,
    problem,  # noqa: F401  (pytest fixture)
    problem10,  # noqa: F401  (pytest fixture)
)

from diffsample import solvers, steps
from diffsample.errors import DiffsampleError
from diffsample.schedules import ContinuousVPLinear
from diffsample.solvers.deis import tab_coefficients
from diffsample.solvers.multistep import adams_bashforth

F64 = torch.float64
BETA_MIN, BETA_MAX = 0.1, 20.0


def vp_time(sigma: torch.Tensor) -> torch.Tensor:
    """Time of the linear VP SDE (Song et al. 2021) at σ-space level σ, solving
    ``−log ᾱ(t) = β_min t + ½(β_max − β_min) t² = log(1 + σ²)``."""
    log_inv_alpha_bar = torch.log1p(sigma**2)
    d = BETA_MAX - BETA_MIN
    return (-BETA_MIN + torch.sqrt(BETA_MIN**2 + 2 * d * log_inv_alpha_bar)) / d


def lagrange(nodes: list[float], j: int, t: float) -> float:
    return math.prod((t - m) / (nodes[j] - m) for i, m in enumerate(nodes) if i != j)


def tab_weights(sigmas: torch.Tensor, i: int, k: int, t_of_sigma=None) -> np.ndarray:
    sig = sigmas.numpy()
    return tab_coefficients(sigmas, t_of_sigma)(sig, np.array([i]), k)[0]


def step_cases(sigmas: torch.Tensor):
    """Every (step, order) a 4th-order walk over ``sigmas`` can take."""
    return [(i, k) for i in range(len(sigmas) - 1) for k in range(1, min(4, i + 1) + 1)]


SCHEDULES = {"logsnr-4": steps.logsnr(4, 0.002, 80.0), "karras-10": steps.karras(10, 0.002, 80.0)}


# ------------------------------------------------------------------------------------------ weights
@pytest.mark.parametrize("schedule", list(SCHEDULES))
def test_log_sigma_weights_match_quadrature(schedule):
    """Default tAB: ∫ ℓ_j(log τ) dτ = ∫ ℓ_j(v) e^v dv over v = log τ (to −∞ on the step into 0)."""
    sigmas = SCHEDULES[schedule]
    s = sigmas.tolist()
    for i, k in step_cases(sigmas):
        nodes = [math.log(s[i - m]) for m in range(k)]
        lower, upper = math.log(s[i]), (math.log(s[i + 1]) if s[i + 1] > 0 else -math.inf)
        expected = [
            -quad(
                lambda v, j=j, nodes=nodes: lagrange(nodes, j, v) * math.exp(v),
                upper,
                lower,
                epsabs=0,
                epsrel=1e-13,
                limit=200,
            )[0]
            for j in range(k)
        ]
        scale = max(abs(w) for w in expected)
        assert tab_weights(sigmas, i, k) == pytest.approx(expected, rel=1e-11, abs=1e-12 * scale), (i, k)


@pytest.mark.parametrize("schedule", list(SCHEDULES))
def test_vp_time_weights_match_quadrature(schedule):
    """tAB in the VP time: ∫ ℓ_j(t(τ)) dτ, with t(τ) smooth down to τ = 0 (t ≈ τ²/β_min)."""
    sigmas = SCHEDULES[schedule]
    s = sigmas.tolist()

    def t(sigma: float) -> float:
        return float(vp_time(torch.tensor(sigma, dtype=F64)))

    for i, k in step_cases(sigmas):
        nodes = [t(s[i - m]) for m in range(k)]
        expected = [
            -quad(
                lambda u, j=j, nodes=nodes: lagrange(nodes, j, t(u)), s[i + 1], s[i], epsabs=0, epsrel=1e-13, limit=200
            )[0]
            for j in range(k)
        ]
        scale = max(abs(w) for w in expected)
        assert tab_weights(sigmas, i, k, vp_time) == pytest.approx(expected, rel=1e-10, abs=1e-11 * scale), (i, k)


def test_weights_depend_on_time_only_up_to_affine_maps_and_sigma_time_is_rhoab():
    sigmas = SCHEDULES["karras-10"]
    sig = sigmas.numpy()
    finite = [(i, k) for i, k in step_cases(sigmas) if sig[i + 1] > 0]
    for i, k in finite:
        affine = tab_weights(sigmas, i, k, lambda s: 2.0 - 3.0 * torch.log(s))
        assert affine == pytest.approx(tab_weights(sigmas, i, k), rel=1e-12, abs=1e-14), (i, k)
    for i, k in step_cases(sigmas):
        rho = adams_bashforth(sig, np.array([i]), k)[0]
        scale = np.abs(rho).max()
        assert tab_weights(sigmas, i, k, lambda s: s) == pytest.approx(rho, rel=1e-11, abs=1e-13 * scale), (i, k)


# ------------------------------------------------------------------------------------- identities
@pytest.mark.parametrize("order", [1, 2, 3, 4])
@pytest.mark.parametrize("lower_order_final", [True, False])
def test_rhoab_is_lms(bed, order, lower_order_final):  # noqa: F811
    x = 80.0 * torch.randn(8, 2, generator=torch.Generator().manual_seed(4), dtype=F64)
    sigmas = steps.karras(9, 0.002, 80.0)
    options = {"order": order, "lower_order_final": lower_order_final}
    assert torch.equal(
        solvers.get("deis")(bed, x, sigmas, variant="rhoab", **options), solvers.get("lms")(bed, x, sigmas, **options)
    )


@pytest.mark.parametrize("options", [{}, {"t_of_sigma": vp_time}, {"variant": "rhoab"}], ids=["tab", "tab-vp", "rhoab"])
@pytest.mark.parametrize("append_zero", [True, False])
def test_order_one_is_euler(bed, options, append_zero):  # noqa: F811
    x = 80.0 * torch.randn(8, 2, generator=torch.Generator().manual_seed(3), dtype=F64)
    sigmas = steps.karras(12, 0.002, 80.0, append_zero=append_zero)
    out = solvers.get("deis")(bed, x, sigmas, order=1, **options)
    assert float((out - solvers.get("euler")(bed, x, sigmas)).abs().max()) <= 1e-12  # measured ≤ 4e-15


def test_time_map_of_the_schedules_module_is_accepted():
    """``ContinuousVPLinear().t_of_sigma_space`` is the documented way to pass a VP model's time."""
    sigmas = steps.logsnr(12, 0.002, 80.0)
    schedule_time = ContinuousVPLinear(BETA_MIN, BETA_MAX).t_of_sigma_space
    assert torch.allclose(schedule_time(sigmas), vp_time(sigmas), rtol=1e-13, atol=0)
    net, x, _ = gaussian_case(F64)
    out = solvers.get("deis")(net, x, sigmas, t_of_sigma=schedule_time)
    assert torch.allclose(out, solvers.get("deis")(net, x, sigmas, t_of_sigma=vp_time), rtol=0, atol=1e-12)


# -------------------------------------------------------------------------------- convergence order
# ρAB is LMS (test_rhoab_is_lms), whose orders test_multistep measures.
@pytest.mark.parametrize("order", [2, 3, 4])
def test_tab_convergence_order(bed, problem, order):  # noqa: F811
    # tAB-4's error falls faster than h⁴ (≈ h^4.4) up to n ≈ 256 on this bed before settling.
    ns = (256, 512, 1024) if order == 4 else NS_BY_ORDER[order]
    nfes, errs = errors(bed, problem, "deis", [graded_logsnr(n) for n in ns], order=order)
    assert nfes == list(ns)
    assert measured_order(nfes, errs) == pytest.approx(order, abs=0.3), errs


def test_tab_in_vp_time_is_third_order(bed, problem):  # noqa: F811
    ns = NS_BY_ORDER[3]
    nfes, errs = errors(bed, problem, "deis", [graded_logsnr(n) for n in ns], t_of_sigma=vp_time)
    assert measured_order(nfes, errs) == pytest.approx(3, abs=0.3), errs


def test_warm_up_limits_plain_grids_to_second_order(bed, problem10):  # noqa: F811
    """Any warm-started multistep run is second order in the end: the first (Euler) step's O(h_0²) error.

    On plain log-SNR steps from σ = 10 the same tAB-4 that is fourth order on the graded grid shows
    it clearly; from σ = 80 the term is ~8× smaller (trajectories are straighter up there) and hides
    behind the order-4 term until n ≈ 300.
    """
    ns = (128, 256, 512)
    grids = [steps.logsnr(n + 1, SIGMA_MIN, 10.0, append_zero=False) for n in ns]
    nfes, errs = errors(bed, problem10, "deis", grids, order=4)
    assert measured_order(nfes, errs) == pytest.approx(2, abs=0.3), errs


# ------------------------------------------------------------------ steps into σ = 0, low precision
# ρAB is LMS (test_rhoab_is_lms), which test_multistep runs here.
CONFIGS = [("deis", {}), ("deis", {"order": 4, "lower_order_final": False}), ("deis", {"t_of_sigma": vp_time})]
CONFIG_IDS = ["tab", "tab4-full-final", "tab-vp"]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("schedule", [steps.karras, steps.logsnr], ids=["karras", "logsnr"])
@pytest.mark.parametrize("name, options", CONFIGS, ids=CONFIG_IDS)
def test_steps_into_zero_finite_nfe_and_exact(name, options, dtype, schedule):
    check_steps_into_zero(name, options, dtype, schedule)


def test_step_into_zero_returns_the_denoised_value_unless_asked_otherwise():
    net, x, _ = gaussian_case(F64)
    seen = []
    sigmas = steps.karras(8, 0.002, 80.0)
    out = solvers.get("deis")(net, x, sigmas, callback=lambda info: seen.append(info["denoised"]))
    assert torch.equal(out, seen[-1])
    full = solvers.get("deis")(net, x, sigmas, lower_order_final=False)
    assert not torch.equal(full, seen[-1]) and bool(torch.isfinite(full).all())


# ---------------------------------------------------------------------------------------- options
@pytest.mark.parametrize(
    "options, pattern",
    [
        ({"variant": "tAB"}, "variant must be 'tab' or 'rhoab'"),
        ({"variant": "rhoab", "t_of_sigma": vp_time}, "t_of_sigma only applies to variant='tab'"),
        ({"order": 5}, "order must be an integer from 1 to 4"),
        ({"t_of_sigma": lambda s: torch.full_like(s, math.nan)}, "finite times"),
        ({"t_of_sigma": lambda s: s[:1]}, "of the same shape"),
        ({"t_of_sigma": lambda s: (s - 1.0) ** 2}, "strictly monotone"),
    ],
)
def test_bad_options_are_refused(options, pattern):
    net, x, _ = gaussian_case(F64)
    with pytest.raises(DiffsampleError, match=pattern):
        solvers.get("deis")(net, x, steps.karras(6, 0.002, 80.0), **options)


def test_registry_entry():
    spec = solvers.spec("deis")
    assert (spec.order, spec.evals_per_step, spec.saves_last_eval, spec.stochastic) == (3, 1, False, False)
    assert spec.nfe(10) == 10
