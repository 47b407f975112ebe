"""Stochastic samplers and Brownian-tree noise, against answers known independently of the code.

* The papers' own update rules written in VP coordinates in the test (Ho et al. 2020, Algorithm 2;
  Song et al. 2021, DDIM eqs. 12 and 16), run on the same noise as the σ-space samplers.
* Convergence in distribution: on an exact 1-D Gaussian mixture started from the exact noised
  marginal, the 1-Wasserstein distance of every sampler's output to the true law falls with NFE at a
  measured slope.
* Brownian motion: ``Cov(W(s), W(t)) = min(s, t)``, unit-variance independent increments, additivity
  and refinement consistency; sample ``i`` is the same in a batch of 1 or 64.
* The closed-form stationary variance of the discretised Langevin chain on a Gaussian,
  ``v/(1 − ε/(2v))``, for the corrector; the contraction of a wrong distribution by restarts.
* k-diffusion's samplers on the same noise (skipped when the peer is missing).
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch

import diffsample
from diffsample import noise, solvers, steps
from diffsample.errors import BudgetError, DiffsampleError
from diffsample.noise import derive_seed
from diffsample.noise_tree import BrownianTree, brownian
from diffsample.parameterization import ModelDenoiser
from diffsample.schedules import RectifiedFlow
from diffsample.solvers.ancestral import ancestral_split
from diffsample.solvers.predictor_corrector import langevin_correct, langevin_step_size
from diffsample.solvers.restart import restart_nfe, restart_plan
from diffsample.solvers.sde_dpmpp import sde_weights
from diffsample.testbeds import GaussianMixture, get_bed, ring2d
from diffsample.testbeds.distribution import sliced_wasserstein_to_truth, wasserstein_1d_to_truth

F64 = torch.float64
STOCHASTIC = ["ddpm", "ddim", "euler_ancestral", "edm", "dpmpp_2m_sde", "dpmpp_3m_sde", "restart", "pc"]


class Replay:
    """A noise source that hands out pre-drawn tensors in order (the same noise for two implementations)."""

    def __init__(self, draws: list[torch.Tensor]) -> None:
        self.draws, self.used = draws, 0

    def __call__(self, x: torch.Tensor, sigma: float | None = None, sigma_next: float | None = None) -> torch.Tensor:
        z = self.draws[self.used]
        self.used += 1
        return z.to(x.dtype)


class FastNoise:
    """One generator for the whole batch: fine where batch independence is not what is tested."""

    def __init__(self, seed: int) -> None:
        self.g = torch.Generator().manual_seed(seed)

    def __call__(self, x: torch.Tensor, sigma: float | None = None, sigma_next: float | None = None) -> torch.Tensor:
        return torch.randn(x.shape, generator=self.g, dtype=x.dtype)


@pytest.fixture(scope="module")
def bed1d() -> GaussianMixture:
    return GaussianMixture(
        torch.tensor([[-1.0], [0.8]], dtype=F64),
        torch.tensor([0.25, 0.4], dtype=F64),
        torch.tensor([0.3, 0.7], dtype=F64),
    )


@pytest.fixture(scope="module")
def bed2d() -> GaussianMixture:
    means = torch.tensor([[-1.0, 0.5], [1.0, -0.5], [0.3, 1.2]], dtype=F64)
    return GaussianMixture(means, torch.tensor([0.4, 0.3, 0.5], dtype=F64), torch.tensor([0.3, 0.5, 0.2], dtype=F64))


# ------------------------------------------------------------------------------------------ contracts

CASES = [
    ("ddpm", {}, "seeded"),
    ("ddpm", {"variance": "large"}, "seeded"),
    ("ddim", {"eta": 0.7}, "seeded"),
    ("euler_ancestral", {"eta": 0.8, "s_noise": 1.1}, "brownian"),
    ("edm", {"s_tmin": 0.0, "s_tmax": 100.0}, "seeded"),
    ("dpmpp_2m_sde", {}, "seeded"),
    ("dpmpp_2m_sde", {"solver_type": "heun"}, "brownian"),
    ("dpmpp_3m_sde", {"eta": 0.5}, "brownian"),
    ("restart", {"intervals": [(0.06, 0.3, 2, 2), (0.5, 2.0, 1, 1)]}, "seeded"),
    ("pc", {}, "seeded"),
    ("pc", {"predictor": "ddpm", "step_rule": "sigma"}, "seeded"),
]


@pytest.mark.parametrize(("name", "options", "kind"), CASES)
def test_sample_i_is_the_same_in_a_batch_of_1_and_64(name, options, kind):
    bed = ring2d()
    sigmas = steps.karras(8, 0.002, 80.0)
    z = torch.randn(64, 2, generator=torch.Generator().manual_seed(5), dtype=F64)
    make = noise.seeded if kind == "seeded" else brownian
    full = diffsample.sample(bed, 80.0 * z, sigmas, name, noise=make(11), **options)
    assert torch.isfinite(full).all()
    for i in (0, 37):
        one = diffsample.sample(bed, 80.0 * z[i : i + 1], sigmas, name, noise=make([derive_seed(11, i)]), **options)
        torch.testing.assert_close(one[0], full[i], rtol=1e-9, atol=1e-9)
    other = diffsample.sample(bed, 80.0 * z, sigmas, name, noise=make(12), **options)
    assert (other - full).abs().max() > 1e-3  # the noise matters


@pytest.mark.parametrize("name", STOCHASTIC)
def test_a_missing_noise_source_is_an_error(name):
    bed = ring2d()
    with pytest.raises(DiffsampleError, match="noise source"):
        diffsample.sample(
            bed,
            torch.zeros(2, 2, dtype=F64),
            steps.karras(8, 0.002, 80.0),
            name,
            **({"eta": 1.0} if name == "ddim" else {}),
        )


@pytest.mark.parametrize(
    ("name", "options", "deterministic"),
    [
        ("ddim", {}, "euler"),
        ("euler_ancestral", {"eta": 0.0}, "euler"),
        ("edm", {"s_churn": 0.0}, "heun"),
        ("restart", {"intervals": ()}, "heun"),
        ("pc", {"corrector_steps": 0}, "euler"),
    ],
)
def test_noise_free_settings_need_no_source_and_are_their_ode_solver(name, options, deterministic):
    """Without noise each sampler is its deterministic walk on the same levels, bit for bit: DDIM η = 0 and
    ancestral η = 0 are Euler (Song et al. 2021, eq. 13), EDM with S_churn = 0 is Heun (Karras et al. 2022,
    Algorithm 2), Restart without intervals is its Heun main walk, PC without corrections is its predictor."""
    x = 80.0 * torch.randn(8, 2, generator=torch.Generator().manual_seed(3), dtype=F64)
    for sigmas in (
        steps.karras(4, 0.002, 80.0),
        steps.karras(9, 0.002, 80.0),
        steps.karras(6, 0.1, 80.0, append_zero=False),
    ):
        out = diffsample.sample(ring2d(), x, sigmas, name, **options)
        assert torch.equal(out, diffsample.sample(ring2d(), x, sigmas, deterministic)), sigmas


@pytest.mark.parametrize(("name", "options"), [("edm", {}), ("restart", {}), ("pc", {})])
def test_fresh_noise_samplers_refuse_a_brownian_tree(name, options):
    with pytest.raises(DiffsampleError, match="fresh noise"):
        diffsample.sample(
            ring2d(), torch.ones(2, 2, dtype=F64), steps.karras(6, 0.002, 80.0), name, noise=brownian(0), **options
        )


COST_CASES = [
    ("ddpm", {}),
    ("euler_ancestral", {}),
    ("edm", {}),
    ("dpmpp_2m_sde", {}),
    ("dpmpp_3m_sde", {}),
    ("restart", {}),
    ("restart", {"intervals": [(0.06, 0.3, 2, 3), (0.5, 2.0, 1, 1)], "ode": "dpmpp_2m"}),
    ("restart", {"intervals": [(1e-5, 1e-4, 3, 2)]}),
    ("pc", {}),
    ("pc", {"corrector_steps": 3, "predictor": "heun"}),
    ("pc", {"predictor": "dpmpp_2m_sde"}),
]
COST_GRIDS = {
    "karras": lambda n: steps.karras(n, 0.002, 80.0),
    "logsnr": lambda n: steps.logsnr(n, 0.002, 80.0),
    "high": lambda n: steps.karras(n + 1, 0.5, 80.0, append_zero=False),  # ends above every default restart
    "flat": lambda n: torch.linspace(80.0, 0.0, n + 1, dtype=F64),
}  # no level near σ_lo = 0.06


@pytest.mark.parametrize(("name", "options"), COST_CASES)
def test_registry_cost_is_the_count_of_model_calls(name, options):
    """``spec.nfe_on(sigmas, **options)`` equals the calls the bed counted, on schedules where restarts apply
    and where they do not; ``spec.nfe(n, **options)`` bounds it for every schedule of n steps, so
    ``steps_for_nfe`` never overshoots a budget (the robustness grid's NFE check, for restart and pc)."""
    bed, spec = ring2d(), solvers.spec(name)
    for grid in COST_GRIDS.values():
        for n in (1, 2, 3, 7):
            sigmas = grid(n)
            bed.reset_counter()
            diffsample.sample(bed, 80.0 * torch.ones(3, 2, dtype=F64), sigmas, name, noise=noise.seeded(0), **options)
            assert bed.nfe == spec.nfe_on(sigmas, **options), (n, sigmas)
            assert bed.nfe <= spec.nfe(n, ends_at_zero=float(sigmas[-1]) == 0, **options)
    for budget in (4, 9, 16, 25):
        try:
            n = spec.steps_for_nfe(budget, **options)
        except BudgetError:
            continue
        assert spec.nfe_on(steps.karras(n, 0.002, 80.0), **options) <= budget


def test_restart_cost_is_exact_on_a_typical_schedule_and_counts_its_intervals():
    """On a Karras schedule over [0.002, 80] every interval finds its level: the bound is the exact count,
    Heun main walk 2N − 1 plus 2·K·n per interval (Xu et al.'s Algorithm 1 with Heun)."""
    spec = solvers.spec("restart")
    for n in (2, 5, 18):
        assert spec.nfe(n) == spec.nfe_on(steps.karras(n, 0.002, 80.0)) == 2 * n - 1 + 2 * 2 * 2
    assert spec.nfe(1) == 1  # a one-step walk to 0 has no level to restart from
    assert spec.nfe(6, intervals=[(0.06, 0.3, 3, 1), (0.5, 2.0, 1, 2)]) == 11 + 6 + 4
    assert spec.steps_for_nfe(20) == 6 and spec.steps_for_nfe(20, intervals=()) == 10


def test_robustness_grid_counts_restart_and_pc_right():
    from benchmarks.robustness import GridConfig, run_grid

    report = run_grid(
        GridConfig(
            beds=("ring2d",), solvers=("restart", "pc"), schedules=("karras", "time_uniform"), steps=(1, 2, 3, 10)
        )
    )
    assert len(report.results) == 2 * 2 * 4 * 4 and not report.failures, report.failures[:3]


# ------------------------------------------------------------------------------------------ the papers' updates


def _vp_walk(
    bed, x: torch.Tensor, sigmas: list[float], draws: list[torch.Tensor], rule: str, eta: float = 1.0
) -> torch.Tensor:
    """Ho et al. 2020 Algorithm 2 / Song et al. 2021 eq. 12, in VP coordinates ``x_t = x/sqrt(1 + σ²)``,
    ``ᾱ = 1/(1 + σ²)``, with an ε-prediction ``ε̂ = (x − D)/σ`` from the exact σ-space denoiser."""
    xt = x / math.sqrt(1 + sigmas[0] ** 2)
    for i in range(len(sigmas) - 1):
        s, s_next = sigmas[i], sigmas[i + 1]
        a_t, a_prev = 1 / (1 + s * s), 1 / (1 + s_next * s_next)
        xs = xt / math.sqrt(a_t)
        eps = (xs - bed(xs, s)) / s
        if s_next == 0:
            xt = (xt - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t)
            continue
        alpha, beta = a_t / a_prev, 1 - a_t / a_prev
        if rule == "ddim":
            x0 = (xt - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t)
            sig_eta = eta * math.sqrt((1 - a_prev) / (1 - a_t)) * math.sqrt(1 - a_t / a_prev)  # eq. 16
            xt = math.sqrt(a_prev) * x0 + math.sqrt(1 - a_prev - sig_eta**2) * eps + sig_eta * draws[i]
        else:
            var = beta * (1 - a_prev) / (1 - a_t) if rule == "ddpm_small" else beta
            xt = (xt - beta / math.sqrt(1 - a_t) * eps) / math.sqrt(alpha) + math.sqrt(var) * draws[i]
    return xt * math.sqrt(1 + sigmas[-1] ** 2)


@pytest.mark.parametrize(
    ("name", "options", "rule", "eta"),
    [
        ("ddpm", {}, "ddpm_small", 1.0),
        ("ddpm", {"variance": "large"}, "ddpm_large", 1.0),
        ("ddim", {"eta": 0.5}, "ddim", 0.5),
        ("ddim", {"eta": 1.0}, "ddim", 1.0),
        ("euler_ancestral", {}, "ddim", 1.0),
    ],
)
def test_ddpm_and_ddim_match_the_papers_vp_updates(bed2d, name, options, rule, eta):
    sigmas = steps.karras(12, 0.01, 40.0)
    x = 40.0 * torch.randn(16, 2, generator=torch.Generator().manual_seed(1), dtype=F64)
    draws = [torch.randn(16, 2, generator=torch.Generator().manual_seed(100 + i), dtype=F64) for i in range(12)]
    ours = diffsample.sample(bed2d, x, sigmas, name, noise=Replay(draws), **options)
    ref = _vp_walk(bed2d, x, sigmas.tolist(), draws, rule, eta)
    torch.testing.assert_close(ours, ref, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize(
    ("name", "options", "deterministic"),
    [
        ("ddim", {"eta": 0.0}, "euler"),
        ("edm", {"s_churn": 0.0}, "heun"),
        ("edm", {"s_churn": 0.0, "s_noise": 1.5}, "heun"),
    ],
)
def test_noise_free_ddim_and_edm_are_euler_and_heun(bed2d, name, options, deterministic):
    """DDIM with η = 0 is the Euler step of the PF-ODE (Song et al. 2021, eq. 13; Karras et al. 2022, §3) and
    EDM's stochastic sampler with S_churn = 0 adds no noise (γ_i = 0, Algorithm 2) and is Heun: equal bit for bit
    on the same levels, also given a noise source (which it must not draw from)."""
    for sigmas in (steps.karras(9, 0.002, 80.0), steps.logsnr(7, 0.01, 40.0, append_zero=False)):
        x = float(sigmas[0]) * torch.randn(32, 2, generator=torch.Generator().manual_seed(2), dtype=F64)
        out = diffsample.sample(bed2d, x, sigmas, name, noise=Replay([]), **options)
        assert torch.equal(out, diffsample.sample(bed2d, x, sigmas, deterministic))


@pytest.mark.parametrize(("sde", "ode"), [("dpmpp_2m_sde", "dpmpp_2m"), ("dpmpp_3m_sde", "dpmpp_3m")])
@pytest.mark.parametrize("lower_order_final", [True, False])
def test_sde_dpm_solvers_at_eta0_are_the_ode_solvers(bed2d, sde, ode, lower_order_final):
    sigmas = steps.logsnr(11, 0.002, 80.0)
    x = 80.0 * torch.randn(32, 2, generator=torch.Generator().manual_seed(3), dtype=F64)
    a = diffsample.sample(bed2d, x, sigmas, sde, eta=0.0, lower_order_final=lower_order_final)
    b = diffsample.sample(bed2d, x, sigmas, ode, lower_order_final=lower_order_final)
    assert float((a - b).abs().max()) <= 1e-12  # the same update, rounded in another order (measured 4e-15)


@pytest.mark.parametrize("h", [1e-6, 3e-4, 0.05, 0.7, 3.0])
@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_sde_weights_are_the_exponential_integrals(h, eta):
    """``w_j = ∫_0^h κ e^{−κ(h−u)} u^j/j! du`` (κ = 1 + η), by Gauss–Legendre quadrature."""
    kappa = 1 + eta
    nodes, weights = np.polynomial.legendre.leggauss(40)
    u = 0.5 * h * (nodes + 1)
    kernel = kappa * np.exp(-kappa * (h - u)) * 0.5 * h * weights
    decay, w0, w1, w2 = sde_weights(h, eta)
    assert decay == pytest.approx(math.exp(-kappa * h), rel=1e-14)
    assert w0 == pytest.approx(kernel.sum(), rel=1e-12)
    assert w1 == pytest.approx((kernel * u).sum(), rel=1e-9)
    assert w2 == pytest.approx((kernel * u * u / 2).sum(), rel=1e-8)


def test_ancestral_split_has_no_cancellation_near_the_top_of_a_flow_span():
    """σ_up = σ' sqrt(1 − σ'²/σ²) against exact rational arithmetic at σ = 1000 (flow matching, t ≈ 0.999)."""
    for sigma, sigma_next, eta in ((1000.0, 999.9999, 1.0), (1000.0, 600.0, 0.3), (1e4, 9999.0, 1.0)):
        down, up = ancestral_split(sigma, sigma_next, eta)
        s, t = Fraction(sigma), Fraction(sigma_next)
        exact_up2 = Fraction(eta) ** 2 * t * t * (s * s - t * t) / (s * s)
        assert up == pytest.approx(math.sqrt(exact_up2), rel=1e-12)
        assert down == pytest.approx(math.sqrt(t * t - exact_up2), rel=1e-12)


# ------------------------------------------------------------------------------------------ convergence

CONVERGENCE = [
    ("ddpm", {}, (8, 16, 32), -0.8),
    ("ddim", {"eta": 0.5}, (8, 16, 32), -0.8),
    ("euler_ancestral", {"eta": 0.8}, (8, 16, 32), -0.8),
    pytest.param("edm", {}, (16, 32, 64), -1.0, marks=pytest.mark.slow),  # the largest budgets: -m slow
    ("dpmpp_2m_sde", {}, (8, 16, 32), -1.4),
    pytest.param("dpmpp_3m_sde", {}, (12, 24, 48), -1.4, marks=pytest.mark.slow),
    pytest.param("restart", {}, (16, 32, 64), -1.0, marks=pytest.mark.slow),
    ("pc", {"step_rule": "sigma"}, (8, 16, 32), -0.8),
]


@pytest.mark.parametrize(("name", "options", "budgets", "max_slope"), CONVERGENCE)
def test_samplers_converge_in_distribution_with_the_exact_denoiser(bed1d, name, options, budgets, max_slope):
    """W1 to the true 1-D law from the exact marginal at σ = 20; measured slopes (20 000 samples): DDPM,
    DDIM(η=0.5), PC ≈ −1; dpmpp_2m_sde ≈ −1.9; the Heun-based EDM and Restart −2 … −1.2 (unstable below 16 NFE)."""
    n = 20000
    x = bed1d.sample(n, generator=torch.Generator().manual_seed(9)) + 20.0 * torch.randn(
        n, 1, generator=torch.Generator().manual_seed(0), dtype=F64
    )
    errors = []
    for budget in budgets:
        sigmas = steps.karras(solvers.spec(name).steps_for_nfe(budget), 0.01, 20.0)
        out = diffsample.sample(bed1d, x, sigmas, name, noise=FastNoise(1), **options)
        errors.append(wasserstein_1d_to_truth(bed1d, out))
    assert errors[0] > errors[1] > errors[2]
    slope = math.log(errors[2] / errors[0]) / math.log(budgets[2] / budgets[0])
    assert slope < max_slope, (errors, slope)
    assert errors[2] < 0.07


def test_restarts_contract_accumulated_error(bed1d):
    """Xu et al. 2023, §3: a restart (forward jump to σ_hi, accurate ODE back) contracts the error
    accumulated before it. One coarse Heun step 3 → 0.1 from the exact marginal leaves a large error;
    restarting K times from 0.1 up to 3 with 15 Heun steps back takes W1 down towards the sampling floor
    (measured with 10 000 samples: 0.65, 0.082, 0.022 for K = 0, 1, 3; floor ≈ 0.01)."""
    n = 10000
    x = bed1d.sample(n, generator=torch.Generator().manual_seed(4)) + 3.0 * torch.randn(
        n, 1, generator=torch.Generator().manual_seed(5), dtype=F64
    )
    sigmas = torch.tensor([3.0, 0.1, 0.0], dtype=F64)
    errors = []
    for k in (0, 1, 3):
        out = diffsample.sample(bed1d, x, sigmas, "restart", noise=FastNoise(2), intervals=[(0.1, 3.0, k, 15)])
        errors.append(wasserstein_1d_to_truth(bed1d, out))
    assert errors[0] > 0.3 and errors[1] < 0.3 * errors[0] and errors[2] < 0.5 * errors[1] and errors[2] < 0.04


def test_restart_plan_and_nfe(bed2d):
    sigmas = steps.karras(10, 0.002, 80.0)
    plan = restart_plan(sigmas, [(0.06, 0.3, 2, 3), (0.5, 1000.0, 1, 2), (1e-4, 0.01, 0, 2)])
    assert [seg.sigma for seg in plan] == sorted((seg.sigma for seg in plan), reverse=True)
    near = min((float(s) for s in sigmas[1:-1]), key=lambda s: abs(math.log(s / 0.06)))
    assert plan[-1].sigma == near and plan[-1].sigma_hi == 0.3 and len(plan[-1].grid) == 4
    assert plan[0].sigma_hi == 80.0  # capped at the span's top; K = 0 dropped
    for solver in ("heun", "dpmpp_2m"):
        bed2d.reset_counter()
        diffsample.sample(
            bed2d,
            80.0 * torch.ones(2, 2, dtype=F64),
            sigmas,
            "restart",
            noise=noise.seeded(0),
            intervals=[(0.06, 0.3, 2, 3)],
            ode=solver,
        )
        assert bed2d.nfe == restart_nfe(sigmas, [(0.06, 0.3, 2, 3)], ode=solver)
    x = 80.0 * torch.randn(8, 2, generator=torch.Generator().manual_seed(6), dtype=F64)
    torch.testing.assert_close(
        diffsample.sample(bed2d, x, sigmas, "restart", intervals=()),
        diffsample.sample(bed2d, x, sigmas, "heun"),
        rtol=0,
        atol=0,
    )
    for bad in ([(0.3, 0.06, 1, 1)], [(0.06, 0.3, -1, 1)], [(0.06, 0.3, 1, 0)], [(0.06, 0.3)]):
        with pytest.raises(DiffsampleError):
            restart_plan(sigmas, bad)
    with pytest.raises(DiffsampleError, match="deterministic"):
        diffsample.sample(bed2d, x, sigmas, "restart", noise=noise.seeded(0), ode="ddpm")


# ------------------------------------------------------------------------------------------ Langevin corrector


def test_langevin_corrector_reaches_the_discretised_chains_stationary_variance():
    """On ``p_σ = N(μ, v)``, ``v = s² + σ²``, the chain ``x' = x + ε s(x) + sqrt(2ε) z`` has the stationary
    variance ``2ε/(1 − (1 − ε/v)²) = v/(1 − ε/(2v))``; with ``step_rule="sigma"``, ``ε = 2 snr² σ²``."""
    mu, s, sigma, snr = 0.7, 0.3, 0.5, 0.3
    bed = GaussianMixture(torch.tensor([[mu]], dtype=F64), torch.tensor([s], dtype=F64))
    v, eps = s * s + sigma * sigma, 2 * snr * snr * sigma * sigma
    x = mu + 2.0 * math.sqrt(v) * torch.randn(100000, 1, generator=torch.Generator().manual_seed(7), dtype=F64)
    out = langevin_correct(bed, x, sigma, FastNoise(3), snr=snr, steps=60, step_rule="sigma")
    assert float(out.var()) == pytest.approx(v / (1 - eps / (2 * v)), rel=0.015)
    assert float(out.var()) > v * 1.02  # the chain's bias is visible, and it is the predicted one
    assert float(out.mean()) == pytest.approx(mu, abs=0.01)


def test_langevin_corrector_per_sample_rule_in_high_dimension():
    """The paper's rule ``ε = 2 (snr ‖z‖/‖s‖)²`` per sample on a 512-D Gaussian ``N(0, v I)``: with
    ``‖s‖² ≈ d v_x/v²`` and ``‖z‖² ≈ d`` the step is ``ε ≈ 2 snr² v²/v_x``, and the chain's stationary
    variance ``v_x = v/(1 − ε/(2v))`` solves to ``v_x = v (1 + snr²)`` (up to O(1/d) fluctuations of the norms).
    From twice the variance the chain settles there."""
    d, s, sigma, snr = 512, 0.4, 0.3, 0.16
    bed = GaussianMixture(torch.zeros(1, d, dtype=F64), torch.tensor([s], dtype=F64))
    v = s * s + sigma * sigma
    x = math.sqrt(2 * v) * torch.randn(200, d, generator=torch.Generator().manual_seed(8), dtype=F64)
    out = langevin_correct(bed, x, sigma, FastNoise(4), snr=snr, steps=80)
    assert float(out.var()) == pytest.approx(v * (1 + snr * snr), rel=0.015)


def test_per_sample_step_ratio_is_f_distributed_with_an_infinite_mean_in_two_dimensions():
    """Why the paper's per-sample rule fails in 2-D: for ``x ~ N(0, vI)`` (d = 2) the score is ``−x/v`` and
    ``ε/(2 snr² v) = ‖z‖²/(‖x‖²/v)`` is ``F(2, 2)``-distributed, ``P(F > t) = 1/(1 + t)``: mean infinite.
    ``"auto"`` takes ``ε = 2 snr² σ²`` there and the paper's rule from 64 dimensions on."""
    v, snr, sigma, n = 0.3, 0.16, 0.5, 200000
    gen = torch.Generator().manual_seed(12)
    x = math.sqrt(v) * torch.randn(n, 2, generator=gen, dtype=F64)
    z = torch.randn(n, 2, generator=gen, dtype=F64)
    ratio = langevin_step_size(-x / v, z, sigma, snr, "sample") / (2 * snr * snr * v)
    for t in (1.0, 10.0, 100.0):
        p = 1 / (1 + t)
        assert float((ratio > t).double().mean()) == pytest.approx(p, abs=4 * math.sqrt(p * (1 - p) / n))
    auto = langevin_step_size(-x / v, z, sigma, snr, "auto")
    assert torch.equal(auto, torch.full((n,), 2 * snr * snr * sigma * sigma, dtype=F64))
    x64, z64 = torch.randn(8, 64, generator=gen, dtype=F64), torch.randn(8, 64, generator=gen, dtype=F64)
    assert torch.equal(
        langevin_step_size(-x64, z64, sigma, snr, "auto"), langevin_step_size(-x64, z64, sigma, snr, "sample")
    )
    with pytest.raises(DiffsampleError, match="step_rule"):
        langevin_step_size(-x64, z64, sigma, snr, "nope")


def test_pc_per_sample_rule_throws_2d_samples_away_and_the_default_does_not():
    """ring2d noised to σ = 0.5 has ``E|x|² = 1.005 + 2σ² = 1.505``: the default PC lands there, the paper's
    per-sample rule does not (measured E|x|² ≈ 12.6 with 1024 samples: some steps are huge)."""
    bed, z = ring2d(), torch.randn(1024, 2, generator=torch.Generator().manual_seed(5), dtype=F64)
    sigmas = steps.karras(40, 0.5, 80.0, append_zero=False)
    moments = {
        rule: float(
            diffsample.sample(bed, 80.0 * z, sigmas, "pc", noise=FastNoise(3), step_rule=rule).square().sum(1).mean()
        )
        for rule in ("auto", "sample")
    }
    assert moments["auto"] == pytest.approx(1.505, abs=0.15) and moments["sample"] > 3.0, moments


@pytest.mark.parametrize(
    ("bed_name", "n_samples"), [("ring2d", 8000), pytest.param("mixture64", 1500, marks=pytest.mark.slow)]
)
def test_pc_corrector_improves_the_distribution_on_exact_beds(bed_name, n_samples):
    """Euler on 8 Karras steps, with and without 4 Langevin corrections per level (default ``"auto"`` rule:
    ``ε = 2 snr² σ²`` on the 2-D ring, the paper's per-sample rule on the 64-D mixture): the corrections pull
    each level's law towards ``p_σ`` and SW1 to the true law falls (measured ring2d 0.065 → 0.047, floor 0.014;
    mixture64 0.072 → 0.051 with 1000 samples, floor 0.027)."""
    bed = get_bed(bed_name)
    z = torch.randn(n_samples, bed.dim, generator=torch.Generator().manual_seed(1), dtype=F64)
    sigmas = steps.karras(8, 0.002, 80.0)
    sw = [
        sliced_wasserstein_to_truth(
            bed, diffsample.sample(bed, 80.0 * z, sigmas, "pc", noise=noise.seeded(4), corrector_steps=c), p=1.0
        )
        for c in (0, 4)
    ]
    assert sw[1] < 0.8 * sw[0], sw


# ------------------------------------------------------------------------------------------ Brownian tree


def test_brownian_covariance_is_min_of_times():
    """``Cov(W(s), W(t)) = min(s, t)`` on one side, 0 across the two sides of the two-sided motion."""
    tree = BrownianTree(3, transform="sigma")
    times = [-2.5, -0.3, 0.004, 0.37, 1.0, 1.000001, 5.3, 90.0]
    n = 6000
    w = torch.stack([tree.value(t, (n, 1))[:, 0] for t in times])
    cov = (w @ w.T / n).numpy()
    for i, a in enumerate(times):
        for j, b in enumerate(times):
            exact = min(abs(a), abs(b)) if a * b > 0 else 0.0
            assert abs(cov[i, j] - exact) < 5 * math.sqrt((abs(a) * abs(b) + exact**2) / n) + 1e-12, (a, b)


def test_brownian_increments_are_standard_and_independent():
    tree = brownian(4)
    x = torch.zeros(8000, 1, dtype=F64)
    levels = [80.0, 7.0, 1.3, 1.0, 0.98, 0.2, 0.0021]  # across octaves, across τ = log σ = 0, a short one
    z = torch.stack([tree(x, a, b)[:, 0] for a, b in zip(levels[:-1], levels[1:], strict=True)])
    assert (z.var(dim=1) - 1).abs().max() < 0.08
    assert z.mean(dim=1).abs().max() < 0.06
    corr = torch.corrcoef(z)
    assert (corr - torch.eye(len(z), dtype=F64)).abs().max() < 0.06


def test_brownian_tree_is_a_fixed_path():
    """Increments add up exactly, a refined query leaves coarse values unchanged, and the cache and the
    query order do not matter: W is a function of (seed, time) only."""
    x = torch.zeros(5, 3, dtype=F64)
    direct = BrownianTree(9)(x, 10.0, 0.1)
    refined = BrownianTree(9, cache_size=1)
    mid = refined(x, 10.0, 1.0) * math.sqrt(math.log(10.0)) + refined(x, 1.0, 0.1) * math.sqrt(math.log(10.0))
    torch.testing.assert_close(mid / math.sqrt(2 * math.log(10.0)), direct, rtol=1e-12, atol=1e-12)
    assert torch.equal(refined(x, 10.0, 0.1), direct)
    fresh = BrownianTree(9)
    values = {t: fresh.value(t, x.shape) for t in (0.3, -1.7, 2.2)}
    for t in (2.2, -1.7, 0.3):
        assert torch.equal(BrownianTree(9, cache_size=2).value(t, x.shape), values[t])
    assert not torch.equal(BrownianTree(10)(x, 10.0, 0.1), direct)


def test_brownian_sample_i_independent_of_batch():
    tree = brownian(21)
    x = torch.zeros(64, 4, dtype=F64)
    full = tree(x, 3.0, 2.0)
    for i in (0, 50):
        torch.testing.assert_close(brownian([derive_seed(21, i)])(x[:1], 3.0, 2.0)[0], full[i], rtol=0, atol=0)


def test_brownian_noise_makes_sde_results_stable_under_refinement(bed2d):
    """The same Brownian path at 20 and 40 steps gives close samples; fresh noise gives unrelated ones."""
    z = torch.randn(200, 2, generator=torch.Generator().manual_seed(1), dtype=F64)
    runs = {}
    for label, make in (("tree", lambda: brownian(5)), ("fresh", lambda: noise.seeded(5))):
        runs[label] = [
            diffsample.sample(bed2d, 80.0 * z, steps.karras(n, 0.002, 80.0), "dpmpp_2m_sde", noise=make())
            for n in (20, 40)
        ]
    gap = {k: float((a - b).square().sum(1).mean().sqrt()) for k, (a, b) in runs.items()}
    assert gap["tree"] < 0.4 * gap["fresh"], gap


def test_brownian_tree_errors():
    with pytest.raises(DiffsampleError, match="unknown time transform"):
        BrownianTree(0, transform="nope")
    with pytest.raises(DiffsampleError):
        BrownianTree(0)(torch.zeros(1, 1), 1.0, 0.0)  # log 0
    with pytest.raises(DiffsampleError):
        BrownianTree(0)(torch.zeros(1, 1), 1.0, 1.0)
    with pytest.raises(DiffsampleError):
        BrownianTree(0)(torch.zeros(1, 1))


# ------------------------------------------------------------------------------------------ flow matching


def test_stochastic_samplers_on_a_rectified_flow_span():
    """A flow-velocity network ``u = ε − x0`` on ``x_t = (1 − t) x0 + t ε`` made from the exact ring2d
    denoiser, wrapped for σ-space, sampled from σ = 1000 (t ≈ 0.999) in float32: no NaN, and the samples
    land on the true distribution: SW1 within the metric's floor (exact draws against exact draws, 1500
    samples: 0.015–0.032 over 5 seeds; measured for the samplers 0.019–0.034, the ODE dpmpp_2m 0.034)."""
    bed = ring2d()

    def velocity(xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t64 = t.to(F64).reshape(-1, 1)
        x = xt.to(F64) / (1 - t64)
        sigma = (t64 / (1 - t64)).reshape(-1)
        d = bed.denoise(x, sigma)
        return ((x - d) / sigma[:, None] - d).to(xt.dtype)

    den = ModelDenoiser(velocity, RectifiedFlow(), "flow")
    sigmas = steps.karras(40, 0.002, 1000.0)
    z = torch.randn(1500, 2, generator=torch.Generator().manual_seed(2))
    for name, options in (
        ("euler_ancestral", {}),
        ("ddpm", {}),
        ("ddim", {"eta": 1.0}),
        ("dpmpp_2m_sde", {}),
        ("dpmpp_3m_sde", {}),
        ("edm", {}),
        ("restart", {}),
        ("pc", {}),
    ):
        out = diffsample.sample(den, 1000.0 * z, sigmas, name, noise=FastNoise(6), **options)
        assert out.dtype == torch.float32 and torch.isfinite(out).all(), name
        assert sliced_wasserstein_to_truth(bed, out, p=1.0) < 0.045, name


# ------------------------------------------------------------------------------------------ k-diffusion


def _k_sampling():
    from benchmarks import peers

    if not peers.peers_available().get("k-diffusion"):
        pytest.skip("k-diffusion is not installed")
    return peers.load_k_sampling()


@pytest.mark.parametrize(
    ("ours", "theirs", "options", "k_options"),
    [
        ("euler_ancestral", "euler_ancestral", {}, {}),
        ("euler_ancestral", "euler_ancestral", {"eta": 0.5, "s_noise": 0.8}, {"eta": 0.5, "s_noise": 0.8}),
        ("ddpm", "euler_ancestral", {}, {"eta": 1.0}),
        ("dpmpp_2m_sde", "dpmpp_2m_sde", {}, {}),
        ("dpmpp_2m_sde", "dpmpp_2m_sde", {"eta": 0.6, "solver_type": "heun"}, {"eta": 0.6, "solver_type": "heun"}),
    ],
)
def test_matches_k_diffusion_on_the_same_noise(bed2d, ours, theirs, options, k_options):
    ks = _k_sampling()
    sigmas = steps.karras(10, 0.002, 80.0)
    x = 80.0 * torch.randn(16, 2, generator=torch.Generator().manual_seed(3), dtype=F64)
    ref_tree, our_tree = brownian(8), brownian(8)
    k_out = getattr(ks, f"sample_{theirs}")(
        bed2d, x.clone(), sigmas, disable=True, noise_sampler=lambda s, t: ref_tree(x, float(s), float(t)), **k_options
    )
    out = diffsample.sample(bed2d, x, sigmas, ours, noise=our_tree, **options)
    torch.testing.assert_close(out, k_out, rtol=1e-9, atol=1e-9)


def test_edm_matches_k_diffusion_heun_with_churn(bed2d):
    ks = _k_sampling()
    sigmas = steps.karras(8, 0.002, 80.0)
    x = 80.0 * torch.randn(16, 2, generator=torch.Generator().manual_seed(4), dtype=F64)
    torch.manual_seed(1234)
    draws = [torch.randn_like(x) for _ in range(8)]
    torch.manual_seed(1234)  # k-diffusion draws torch.randn_like(x) once per step from the global RNG
    k_out = ks.sample_heun(
        bed2d, x.clone(), sigmas, disable=True, s_churn=5.0, s_tmin=0.0, s_tmax=float("inf"), s_noise=1.003
    )
    out = diffsample.sample(
        bed2d, x, sigmas, "edm", noise=Replay(draws), s_churn=5.0, s_tmin=0.0, s_tmax=float("inf"), s_noise=1.003
    )
    torch.testing.assert_close(out, k_out, rtol=1e-9, atol=1e-9)


# ------------------------------------------------------------------------------------------ the convergence bench


def test_convergence_slope_fit_recovers_a_known_power_law():
    """Rows with ``SW1 = floor + 3·NFE^-1.5`` give slope −1.5 exactly; rows at the floor or with a one-step walk
    are left out of the fit."""
    from benchmarks.stochastic_bench import ConvergenceRow, convergence_slopes, format_convergence_table

    rows = [ConvergenceRow("ring2d", "m", b, b, b, 0.01 + 3.0 * b**-1.5, 0.01, 0.0001) for b in (8, 16, 32, 64)]
    rows += [
        ConvergenceRow("ring2d", "m", 4000, 4000, 4000, 0.0101, 0.01, 0.0001),  # at the floor
        ConvergenceRow("ring2d", "m", 3, 1, 1, 5.0, 0.01, 0.0001),
    ]  # a one-step fallback
    assert convergence_slopes(rows)[("ring2d", "m")] == pytest.approx(-1.5, abs=1e-12)
    assert "-1.50 (4 pts)" in format_convergence_table(rows)


def test_sde_convergence_bench_runs_within_its_budgets():
    from benchmarks.stochastic_bench import format_convergence_table, run_sde_convergence

    samplers = (("ddpm", "ddpm", {}), ("restart", "restart", {}), ("pc", "pc", {"corrector_steps": 2}))
    rows = run_sde_convergence(["ring2d"], nfes=(6, 16), n_samples=300, samplers=samplers)
    # restart's default intervals need 11 NFE: at budget 6 it has no row (the budget is refused)
    assert len(rows) == 5 and all(r.nfe <= r.budget and r.floor > 0 for r in rows)
    assert {(r.method, r.budget) for r in rows if r.method == "restart"} == {("restart", 16)}
    assert {r.nfe for r in rows if r.method == "ddpm"} == {6, 16}
    assert "| ring2d | pc |" in format_convergence_table(rows)


def test_restart_budget_too_small_for_its_intervals_is_refused():
    """A budget that buys one step (no level to restart from) is an error naming the least budget, not a
    one-call walk; with the default intervals two steps cost 11."""
    from diffsample.errors import BudgetError

    spec = solvers.spec("restart")
    with pytest.raises(BudgetError, match="at least 11"):
        spec.steps_for_nfe(10)
    assert spec.steps_for_nfe(11) == 2 and spec.nfe(2) == 11
