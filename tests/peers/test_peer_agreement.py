"""diffsample's solvers against the peer libraries on the same problem: same exact denoiser, same
initial noise, same σ levels. Skipped where a peer is not installed.

Only agreements not checked elsewhere live here (``test_peers.py`` has k-diffusion's euler/heun on
Karras steps into 0, diffusers vs k-diffusion, DDIM = euler on divisor spacings; ``test_multistep.py``
has k-diffusion's lms; ``test_unipc.py`` drives diffusers' UniPC scheduler directly with an x0-model).

Summary (max |ours − peer| over the checked step counts, as measured, and the tolerance used):

=====================================  ==============================  ========  =========
method (ours)                          peer                            max diff  tolerance
=====================================  ==============================  ========  =========
dpmpp_2m (into 0 and to σ_min)         k-diffusion dpmpp_2m            3.4e-15   1e-12
euler, heun (to σ_min > 0)             k-diffusion euler, heun         2.5e-15   1e-12
dpm_fast (NFE 10, 11, 12, 30)          k-diffusion dpm_fast            1.4e-14   1e-12
dpm_adaptive (order 2, 3)              k-diffusion dpm_adaptive        8.3e-11   1e-8
dpmpp_3m with the reference weights    k-diffusion dpmpp_3m_sde, η = 0 2.7e-15   1e-12
dpmpp_2m                               diffusers DPMSolverMultistep    8.8e-7    1e-5
dpm_solver_2m (to σ_min)               diffusers DPMSolverMultistep    1.0e-6    1e-5
dpmpp_2m on a flow model               diffusers DPMSolverMultistep    1.5e-5    5e-5
                                       (use_flow_sigmas, flow pred.)
dpmpp_3m / dpm_solver_3m, ref. weight  diffusers DPMSolverMultistep    1.2e-6    1e-5
unipc order 2, bh2                     diffusers UniPCMultistep        1.1e-6    1e-5
deis order 2 / order 3 (to σ_min)      diffusers DEISMultistep         1.5e-6 /  1e-5 /
                                                                       1.3e-5    5e-5
euler / heun / lms                     diffusers Euler/Heun/LMS-       1.1e-6    1e-5
                                       Discrete
=====================================  ==============================  ========  =========

Where the methods differ by design or the peer is wrong, the tests show which result is closer to the
exact answer (the DOP853 reference solution of the probability-flow ODE over the same span):
DPM-Solver++(3M)'s second-difference weight (ours third order, the reference codes second order),
DEIS order 3 from diffusers' float32 tables, DDIM with a spacing that does not divide 1000, UniPC
bh1 and third-order DPM-Solver with Karras σ ending at σ_min (NaN in diffusers).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from diffsample import solvers, steps
from diffsample.solvers import dpm
from diffsample.solvers._kernel import orders
from diffsample.solvers._kernel.phi import rho_ratios
from diffsample.testbeds import GaussianMixture, reference_solution

peers = pytest.importorskip("benchmarks.peers")

F64 = torch.float64
SIGMA_MAX, SIGMA_MIN = 80.0, 0.05


@pytest.fixture(scope="module")
def diffusers_mod():
    return pytest.importorskip("diffusers")


def bed() -> GaussianMixture:
    """A smooth 2-D mixture (all stds >= 0.3): discretisation errors settle into their asymptotic slopes
    at modest step counts. A fresh instance per walk, so each has its own NFE counter."""
    means = torch.tensor([[-1.0, 0.5], [1.2, -0.3], [0.2, 1.5]], dtype=F64)
    stds = torch.tensor([[0.3, 0.5], [0.45, 0.35], [0.6, 0.4]], dtype=F64)
    return GaussianMixture(means, stds, torch.tensor([0.3, 0.5, 0.2], dtype=F64))


Z = torch.randn(16, 2, generator=torch.Generator().manual_seed(0), dtype=F64)


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.to(F64) - b.to(F64)).abs().max())


def rmse(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.to(F64) - b.to(F64)).square().mean().sqrt())


def slope(ns: list[int], errors: list[float]) -> float:
    """Order of convergence: minus the fitted slope of log error against log steps."""
    return float(-np.polyfit(np.log(ns), np.log(errors), 1)[0])


@contextlib.contextmanager
def float64_default() -> Iterator[None]:
    """k-diffusion's DPM-Solver class builds its λ grid from ``torch.tensor(σ)``, which is float32 under the
    default dtype; with float64 as the default both sides compute every coefficient in float64."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(F64)
    try:
        yield
    finally:
        torch.set_default_dtype(before)


def reference_weights(monkeypatch: pytest.MonkeyPatch, *, exact_warm_up: bool = False) -> None:
    """Make our 3M use the reference codes' coefficients (DPM-Solver's ``multistep_dpm_solver_third_update``,
    diffusers, k-diffusion): ``ρ_2 d_2`` where the Taylor expansion asks for ``2 ρ_2 d_2`` (module docstring of
    :mod:`diffsample.solvers.dpm`). ``exact_warm_up`` also gives the two-point warm-up step k-diffusion's
    ``dpmpp_3m_sde`` form ``m + ρ_1 (m − m_1)/h_1`` (exact φ-weight) instead of 2M's ``m + h/(2h_1) (m − m_1)``."""
    full = dpm.multistep_coeffs

    def coeffs(h: float, past, data: bool) -> list[float]:
        rho1, rho2 = rho_ratios(h, data)
        if len(past) == 1 and exact_warm_up:
            return [1.0 + rho1 / past[0], -rho1 / past[0]]
        if len(past) < 2:
            return full(h, past, data)
        h0, h1 = past
        on_d2 = (rho1 * h0 + rho2) / (h0 + h1)
        alpha, beta = rho1 + on_d2, -on_d2
        return [1.0 + alpha / h0, beta / h1 - alpha / h0, -beta / h1]

    monkeypatch.setattr(dpm, "multistep_coeffs", coeffs)


def ours(name: str, x: torch.Tensor, sigmas: torch.Tensor, **options) -> tuple[torch.Tensor, int]:
    den = bed()
    out = solvers.get(name)(den, x.clone(), sigmas, **options)
    return out, den.nfe


# =============================================================================================== k-diffusion
# Everything runs in float64 on both sides (k-diffusion takes x's dtype), so agreement is to rounding.


@pytest.mark.parametrize(
    "sigmas",
    [
        steps.karras(10, 0.002, SIGMA_MAX),
        steps.karras(20, 0.002, SIGMA_MAX),
        steps.logsnr(12, SIGMA_MIN, SIGMA_MAX, append_zero=False),
    ],
    ids=["karras10-to-0", "karras20-to-0", "logsnr12-to-0.05"],
)
def test_dpmpp_2m_matches_k_diffusion(k_sampling, sigmas):
    """Into σ = 0 our default ``lower_order_final`` only lowers the last step, which both make first order
    there (``x = D``); ending at σ_min, k-diffusion keeps second order to the end (``lower_order_final=False``)."""
    x = SIGMA_MAX * Z
    theirs, nfe_k = peers.kdiffusion_sample("dpmpp_2m", bed(), x.clone(), sigmas)
    mine, nfe = ours("dpmpp_2m", x, sigmas, lower_order_final=float(sigmas[-1]) == 0.0)
    assert nfe == nfe_k == len(sigmas) - 1
    assert max_diff(mine, theirs) < 1e-12


@pytest.mark.parametrize("name", ["euler", "heun"])
def test_euler_and_heun_match_k_diffusion_ending_above_zero(k_sampling, name):
    """Ending at σ_min > 0 Heun's last step is a full trapezoid step (two calls), in both libraries."""
    sigmas = steps.logsnr(12, SIGMA_MIN, SIGMA_MAX, append_zero=False)
    theirs, nfe_k = peers.kdiffusion_sample(name, bed(), (SIGMA_MAX * Z).clone(), sigmas)
    mine, nfe = ours(name, SIGMA_MAX * Z, sigmas)
    assert nfe == nfe_k == solvers.spec(name).nfe(11, ends_at_zero=False)
    assert max_diff(mine, theirs) < 1e-12


@pytest.mark.parametrize("nfe", [10, 11, 12, 30])  # NFE mod 3 = 1, 2, 0, 0: every order plan of fast_orders
def test_dpm_fast_matches_k_diffusion(k_sampling, nfe):
    x = SIGMA_MAX * Z
    with float64_default():
        theirs, nfe_k = peers.kdiffusion_sample(
            "dpm_fast", bed(), x.clone(), torch.tensor([SIGMA_MAX, SIGMA_MIN], dtype=F64), n=nfe
        )
    mine, used = ours("dpm_fast", x, torch.tensor([SIGMA_MAX, SIGMA_MIN], dtype=F64), nfe=nfe)
    assert used == nfe_k == nfe
    assert max_diff(mine, theirs) < 1e-12


@pytest.mark.parametrize("order", [2, 3])
@pytest.mark.parametrize(("rtol", "atol"), [(0.05, 0.0078), (1e-4, 1e-5)], ids=["defaults", "tight"])
def test_dpm_adaptive_matches_k_diffusion(k_sampling, order, rtol, atol):
    """Batch size 1 (k-diffusion's error norm is over the whole batch, ours the worst sample: equal for one).

    Same accepted and rejected steps and the same final state; k-diffusion evaluates the model again at
    the start of a step after each rejection (its cache is per trial), we reuse that output, so its NFE
    is ours plus the number of rejections."""
    for i in range(3):
        x = SIGMA_MAX * Z[i : i + 1]
        den_k = bed()
        with float64_default():
            theirs, info_k = k_sampling.sample_dpm_adaptive(
                den_k,
                x.clone(),
                SIGMA_MIN,
                SIGMA_MAX,
                order=order,
                rtol=rtol,
                atol=atol,
                disable=True,
                return_info=True,
            )
        info: dict = {}
        den = bed()
        mine = solvers.get("dpm_adaptive")(
            den,
            x.clone(),
            torch.tensor([SIGMA_MAX, SIGMA_MIN], dtype=F64),
            order=order,
            rtol=rtol,
            atol=atol,
            info=info,
        )
        assert (info["n_accept"], info["n_reject"]) == (info_k["n_accept"], info_k["n_reject"])
        assert info["n_reject"] > 0  # the case where the two counts differ does occur
        assert den_k.nfe == info_k["nfe"] == den.nfe + info["n_reject"] and den.nfe == info["nfe"]
        # the accept/reject decisions are identical, so the only difference is rounding, compounded by the
        # step-size controller feeding each state's rounding into the next step size
        assert max_diff(mine, theirs) < 1e-8


THREE_M_NS = [20, 40, 80, 160]


@pytest.fixture(scope="module")
def three_m_problem() -> tuple[torch.Tensor, torch.Tensor]:
    x = SIGMA_MAX * Z
    return x, reference_solution(bed(), x, SIGMA_MAX, SIGMA_MIN, rtol=1e-13, atol=1e-13, cache=False)


def _three_m_grid(n: int) -> torch.Tensor:
    return steps.logsnr(n + 1, SIGMA_MIN, SIGMA_MAX, append_zero=False)  # n steps 80 → 0.05


def test_dpmpp_3m_is_k_diffusion_3m_sde_up_to_two_coefficients(k_sampling, monkeypatch):
    """k-diffusion's ``dpmpp_3m_sde`` with η = 0 is our DPM-Solver++(3M) but for (1) the reference codes'
    half weight on the second difference and (2) an exact-φ two-point warm-up step: with both put into our
    solver the two agree to rounding, so those are the only differences (the next test weighs them)."""
    x = SIGMA_MAX * Z
    reference_weights(monkeypatch, exact_warm_up=True)
    for n in (3, 12, 40):
        sigmas = _three_m_grid(n)
        theirs, _ = peers.kdiffusion_sample("dpmpp_3m_sde", bed(), x.clone(), sigmas, eta=0.0)
        mine, _ = ours("dpmpp_3m", x, sigmas, lower_order_final=False)
        assert max_diff(mine, theirs) < 1e-12, n


def test_dpmpp_3m_is_third_order_where_k_diffusion_3m_sde_is_second(k_sampling, three_m_problem):
    """Against the exact solution at σ = 0.05 (log-SNR steps from 80): k-diffusion's 3M converges with slope
    ≈ 2 (its ``ρ_2 d_2`` leaves an ``h³ m''/12`` local error), ours with slope ≈ 3, and ours is the more
    accurate from 40 steps on (7.6× at 160 steps)."""
    x, exact = three_m_problem
    errs_k, errs = [], []
    for n in THREE_M_NS:
        sigmas = _three_m_grid(n)
        theirs, _ = peers.kdiffusion_sample("dpmpp_3m_sde", bed(), x.clone(), sigmas, eta=0.0)
        errs_k.append(rmse(theirs, exact))
        errs.append(rmse(ours("dpmpp_3m", x, sigmas, lower_order_final=False)[0], exact))
    assert slope(THREE_M_NS[1:], errs_k[1:]) == pytest.approx(2.0, abs=0.3), errs_k
    assert slope(THREE_M_NS[1:], errs[1:]) == pytest.approx(3.0, abs=0.3), errs
    assert all(e < ek for e, ek in zip(errs[1:], errs_k[1:], strict=True)), (errs, errs_k)
    assert errs[-1] < errs_k[-1] / 5


# ================================================================================================= diffusers
# diffusers' walk runs in float32 on the VP table (peers.diffusers_sample); ours runs in float64 on its σ grid
# (peers.diffusers_sigmas) from the same σ-space start. The grids used have integer timesteps, where the network
# sees exactly the σ the scheduler's update uses.
#
# Tolerance 1e-5 (the data have unit scale): diffusers' state is float32 (unit roundoff 6e-8), of size |z| <= 3
# as a VP sample; each step rounds it and the model output, and its data prediction x̂0 = (x_t − σ_t ε̂)/α_t
# amplifies those roundings by 1/α_t ≈ 157 at the first steps (they enter with the small weight 1 − σ'/σ and are
# contracted by the flow afterwards). Measured: at most 1.5e-6 over 8–49 steps. A difference in the method itself
# is >= 1e-3 on these runs (the 3M weight: 1e-2; DEIS's capped final orders: 0.3; DDIM's wrong level: 2e-2).
# DEIS order 3: 5e-5. Its 3rd-order coefficients are built from float32 σ and log σ tables; differences of
# neighbouring entries lose digits (measured 1.3e-5 at 8–20 steps; it grows with the step count, see below).

DIFFUSERS_CASES = [
    # (scheduler, config, budgets, our solver, our options, tolerance)
    (
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "dpmsolver++", "solver_order": 2},
        (10, 20),
        "dpmpp_2m",
        {},
        1e-5,
    ),
    (
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "dpmsolver", "solver_order": 2, "final_sigmas_type": "sigma_min"},
        (10, 20),
        "dpm_solver_2m",
        {},
        1e-5,
    ),
    ("UniPCMultistepScheduler", {"solver_type": "bh2", "solver_order": 2}, (10, 20), "unipc", {"order": 2}, 1e-5),
    # diffusers' DEIS lowers the last two orders below 15 steps (ours only before a step into 0): compared at 20
    # steps and, with lower_order_final off, at 8
    ("DEISMultistepScheduler", {"solver_order": 2}, (20,), "deis", {"order": 2}, 1e-5),
    ("DEISMultistepScheduler", {"solver_order": 2, "lower_order_final": False}, (8,), "deis", {"order": 2}, 1e-5),
    ("DEISMultistepScheduler", {"solver_order": 3}, (20,), "deis", {"order": 3}, 5e-5),
    ("DEISMultistepScheduler", {"solver_order": 3, "lower_order_final": False}, (8,), "deis", {"order": 3}, 5e-5),
    # σ-space schedulers: 'linspace' timesteps linspace(0, 999, 10) are integers; 'trailing' with 1000/25 = 40
    ("EulerDiscreteScheduler", {}, (10,), "euler", {}, 1e-5),
    ("EulerDiscreteScheduler", {"timestep_spacing": "trailing"}, (25,), "euler", {}, 1e-5),
    ("HeunDiscreteScheduler", {}, (19,), "heun", {}, 1e-5),  # 10 steps: 2·10 − 1 calls
    ("HeunDiscreteScheduler", {"timestep_spacing": "trailing"}, (49,), "heun", {}, 1e-5),
    # diffusers' LMS keeps order 4 on the step into 0 (quadrature of the Lagrange polynomial there)
    ("LMSDiscreteScheduler", {}, (10,), "lms", {"lower_order_final": False}, 1e-5),
    ("LMSDiscreteScheduler", {"timestep_spacing": "trailing"}, (25,), "lms", {"lower_order_final": False}, 1e-5),
]


def diffusers_and_ours(
    scheduler: str, config: dict, nfe: int, solver: str, options: dict
) -> tuple[peers.PeerRun, torch.Tensor, int, torch.Tensor]:
    """diffusers' walk, ours on its σ grid from the same start, and that grid."""
    den = bed()
    x, used, s0, s1 = peers.diffusers_sample(scheduler, den, Z, nfe, **config)
    assert used == den.nfe
    sigmas = peers.diffusers_sigmas(scheduler, nfe, **config)
    assert (float(sigmas[0]), float(sigmas[-1])) == pytest.approx((s0, s1), rel=1e-7)
    mine, our_nfe = ours(solver, Z * float(sigmas[0]), sigmas, **options)
    return peers.PeerRun(x, used, s0, s1), mine, our_nfe, sigmas


@pytest.mark.parametrize(
    ("scheduler", "config", "budgets", "solver", "options", "tol"),
    DIFFUSERS_CASES,
    ids=[f"{c[0].removesuffix('Scheduler')}-{'-'.join(f'{k}={v}' for k, v in c[1].items())}" for c in DIFFUSERS_CASES],
)
def test_matches_diffusers_on_its_grid(diffusers_mod, scheduler, config, budgets, solver, options, tol):
    for nfe in budgets:
        run, mine, our_nfe, _ = diffusers_and_ours(scheduler, config, nfe, solver, options)
        assert our_nfe == run.nfe == nfe
        assert max_diff(mine, run.x) < tol, nfe


@pytest.mark.parametrize(
    ("algorithm", "solver", "extra"),
    [("dpmsolver++", "dpmpp_3m", {}), ("dpmsolver", "dpm_solver_3m", {"final_sigmas_type": "sigma_min"})],
)
def test_third_order_dpm_solver_is_diffusers_up_to_the_second_difference_weight(
    diffusers_mod, monkeypatch, algorithm, solver, extra
):
    """diffusers' third-order multistep DPM-Solver(++) carries the reference codes' ``ρ_2 d_2``: ours differs
    from it by 2e-2 (++) and 0.1 at 20 steps, and with that one weight put into ours they agree to float32
    rounding. (Which weight is the more accurate is measured above against k-diffusion's identical formula.)
    diffusers has no step-growth cap (``orders.STEP_GROWTH_LIMIT``; its ``sigma_min``-ending grid has a last
    finite step more than 1 + √2 times longer in λ, where the cap lowers our error, 0.075 → 0.059 at 20
    steps), so it is off here."""
    monkeypatch.setattr(orders, "STEP_GROWTH_LIMIT", math.inf)
    config = {"algorithm_type": algorithm, "solver_order": 3, **extra}
    run, mine, _, sigmas = diffusers_and_ours("DPMSolverMultistepScheduler", config, 20, solver, {})
    assert max_diff(mine, run.x) > 1e-3
    reference_weights(monkeypatch)
    for nfe in (10, 20):
        run, mine, our_nfe, _ = diffusers_and_ours("DPMSolverMultistepScheduler", config, nfe, solver, {})
        assert our_nfe == run.nfe == nfe
        assert max_diff(mine, run.x) < 1e-5, nfe


def _errors_against_exact(scheduler: str, config: dict, nfe: int, solver: str, options: dict) -> tuple[float, float]:
    run, mine, _, _ = diffusers_and_ours(scheduler, config, nfe, solver, options)
    exact = reference_solution(bed(), Z * run.sigma_start, run.sigma_start, run.sigma_end, cache=False)
    return rmse(run.x, exact), rmse(mine, exact)


@pytest.mark.slow
def test_deis_order_3_float32_tables_stall_where_ours_converge(diffusers_mod):
    """diffusers' DEIS-3 computes its coefficients from float32 tables: its error stops falling and then grows
    (RMSE 5.9e-4 at 200 steps, 2.7e-2 at 400), while ours on the same grid keeps converging (2.1e-4, 3.9e-5)."""
    errs, errs_d = [], []
    for nfe in (200, 400):
        err_d, err = _errors_against_exact("DEISMultistepScheduler", {"solver_order": 3}, nfe, "deis", {"order": 3})
        errs_d.append(err_d)
        errs.append(err)
    assert errs[1] < errs[0] / 3 and errs[1] < 1e-4, errs
    assert errs_d[1] > errs_d[0] and errs_d[1] > 100 * errs[1], (errs_d, errs)


@pytest.mark.slow
def test_ddim_with_spacing_not_dividing_1000_converges_to_a_wrong_answer(diffusers_mod):
    """diffusers' DDIM steps from t to t − 1000//n, not to the next listed timestep (``linspace`` spacing,
    999/(n−1) apart): the next step then starts from the wrong level. Its RMSE against the exact solution
    stays at 0.062 from 150 to 300 steps, while Euler (= DDIM) on the listed levels converges at first order
    (0.0093, 0.0047)."""
    errs, errs_d = [], []
    for nfe in (150, 300):
        err_d, err = _errors_against_exact("DDIMScheduler", {"timestep_spacing": "linspace"}, nfe, "euler", {})
        errs_d.append(err_d)
        errs.append(err)
    assert errs[1] == pytest.approx(errs[0] / 2, rel=0.25) and errs[1] < 0.02, errs
    assert min(errs_d) > 0.04 and errs_d[1] > 0.9 * errs_d[0] and errs_d[1] > 10 * errs[1], (errs_d, errs)


def _nan_on_0_42_1(diffusers_mod, x: torch.Tensor) -> None:
    if diffusers_mod.__version__ == "0.42.1":
        assert bool(torch.isnan(x).any())


def test_unipc_bh1_into_zero_is_finite_and_accurate_where_diffusers_is_nan(diffusers_mod):
    """diffusers' bh1 divides by B(h) = −h = −∞ on the step into σ = 0 (NaN); ours takes that step's exact
    first-order limit and lands as close to the exact solution as bh2 does (within 1.5×)."""
    config = {"solver_type": "bh1", "solver_order": 2}
    run, mine, our_nfe, _ = diffusers_and_ours(
        "UniPCMultistepScheduler", config, 20, "unipc", {"order": 2, "variant": "bh1"}
    )
    _nan_on_0_42_1(diffusers_mod, run.x)
    exact = reference_solution(bed(), Z * run.sigma_start, run.sigma_start, 0.0, cache=False)
    bh2, _ = ours(
        "unipc", Z * run.sigma_start, peers.diffusers_sigmas("UniPCMultistepScheduler", 20, **config), order=2
    )
    assert our_nfe == 20 and bool(torch.isfinite(mine).all())
    assert rmse(mine, exact) < 1.5 * rmse(bh2, exact) and rmse(mine, exact) < 0.1


def test_third_order_dpm_solver_with_karras_sigmas_is_finite_where_diffusers_is_nan(diffusers_mod):
    """With Karras σ and ``final_sigmas_type='sigma_min'`` diffusers' last step goes from σ_min to σ_min (h = 0)
    and its third-order coefficients divide by it. Its σ list without that repeat is a valid schedule one step
    shorter, on which ours is finite and as accurate as second order on the same grid."""
    config = {
        "algorithm_type": "dpmsolver",
        "solver_order": 3,
        "final_sigmas_type": "sigma_min",
        "use_karras_sigmas": True,
    }
    run, mine, our_nfe, sigmas = diffusers_and_ours("DPMSolverMultistepScheduler", config, 20, "dpm_solver_3m", {})
    _nan_on_0_42_1(diffusers_mod, run.x)
    assert our_nfe == len(sigmas) - 1 == 19 and bool(torch.isfinite(mine).all())
    exact = reference_solution(bed(), Z * run.sigma_start, run.sigma_start, run.sigma_end, cache=False)
    second, _ = ours("dpm_solver_2m", Z * run.sigma_start, sigmas)
    assert rmse(mine, exact) < 1.2 * rmse(second, exact) and math.isfinite(rmse(mine, exact))


@pytest.mark.parametrize("shift", [1.0, 3.0])
@pytest.mark.parametrize("nfe", [5, 12])
def test_dpmpp_2m_matches_diffusers_flow_matching_set_up_on_its_flow_sigmas(diffusers_mod, shift, nfe):
    """diffusers' DPM-Solver++(2M) with ``use_flow_sigmas`` and ``prediction_type="flow_prediction"`` (the peer of
    the flow units in ``python -m benchmarks defaults``) is our ``dpmpp_2m`` on its levels ``σ = t/(1 − t)``."""
    from benchmarks.peers.diffusers import diffusers_flow_sample
    from diffsample import sample
    from diffsample.testbeds import get_bed

    bed = get_bed("mixture64")
    z = torch.randn(16, *bed.shape, generator=torch.Generator().manual_seed(0))
    x, used, sigma_start = diffusers_flow_sample("dpm++2m-flow", bed, z, nfe, shift)
    sched = diffusers_mod.DPMSolverMultistepScheduler(
        num_train_timesteps=1000, use_flow_sigmas=True, prediction_type="flow_prediction", flow_shift=shift
    )
    sched.set_timesteps(nfe)
    t = sched.sigmas.to(torch.float64)
    sigmas = torch.cat([t[:-1] / (1 - t[:-1]), t.new_zeros(1)])
    ours = sample(bed, z.to(torch.float64) * sigmas[0], sigmas, solver="dpmpp_2m")
    assert used == nfe and sigma_start == pytest.approx(float(sigmas[0]))
    assert sigma_start == pytest.approx(999.0 * shift, rel=1e-4)  # the span of RectifiedFlow(shift)
    assert float((x.to(torch.float64) - ours).abs().max()) < 5e-5
