"""DPS and TFG against closed forms on Gaussian beds, with every solver kind, and their costs."""

from __future__ import annotations

import math

import pytest
import torch

import diffsample
from diffsample.denoisers import CallCounter, Cost
from diffsample.errors import DiffsampleError
from diffsample.testbeds import (
    GaussianMixture,
    denoiser_error,
    linear_inverse_problem,
    linear_reward,
    masking_operator,
    tilt,
)
from diffsample.transforms import Axis, beam_search, classifier_guidance, dps, recurrent_sample, tfg

F64 = torch.float64
MU = torch.tensor([0.5, -1.0, 0.3], dtype=F64)
S = torch.tensor([0.8, 0.5, 1.2], dtype=F64)


def _gaussian() -> GaussianMixture:
    return GaussianMixture(MU[None], S[None], [1.0])


def _points(n: int = 12) -> torch.Tensor:
    return 2 * torch.randn(n, 3, dtype=F64, generator=torch.Generator().manual_seed(0))


def test_dps_is_the_closed_form_correction_for_a_gaussian_prior() -> None:
    # D(x) = μ + s²/(s²+σ²)(x − μ), so ∇_x ‖y − A D‖² = 2 diag(s²/(s²+σ²)) Aᵀ(A D − y)
    problem = linear_inverse_problem(_gaussian(), masking_operator([True, False, True]), 0.2, seed=0)
    x = _points()
    for normalize in (True, False):
        guided = dps(_gaussian(), problem.measure, problem.y, 0.7, normalize=normalize)
        for sigma in (0.1, 1.0, 20.0):
            d = _gaussian()(x, sigma)
            resid = problem.measure(d) - problem.y
            shrink = S.square() / (S.square() + sigma**2)
            grad = 2 * shrink * (resid @ problem.operator)
            zeta = 0.7 / resid.norm(dim=1, keepdim=True) if normalize else 0.7
            torch.testing.assert_close(guided(x, sigma), d - zeta * sigma**2 * grad, rtol=1e-10, atol=1e-10)


def test_dps_counts_a_backward_pass_per_call_and_network_measurements() -> None:
    net = torch.nn.Linear(3, 2).double()
    guided = dps(CallCounter(_gaussian()), net, torch.zeros(2, dtype=F64), 0.5)
    guided(_points(), 1.0)
    guided(_points(), 0.5)
    assert guided.cost() == Cost(nfe=2, calls=2, backward_passes=2, auxiliary_calls=2)


def test_tfg_variance_guidance_is_exact_for_a_gaussian_and_a_linear_reward() -> None:
    # for a Gaussian prior log E[exp(aᵀx0/α) | x] = aᵀ D(x)/α + const, so ρ = 1/α is the exact tilted denoiser
    alpha, reward = 0.5, linear_reward([0.4, -0.3, 0.2])
    exact = tilt(_gaussian(), reward, alpha).tilted
    x = _points()
    for gamma in (0.0, 0.3):  # smoothing a linear potential does not change its gradient
        guided = tfg(_gaussian(), reward, rho=1 / alpha, gamma=gamma, n_smooth=3)
        for sigma in (0.05, 1.0, 10.0):
            torch.testing.assert_close(guided(x, sigma), exact(x, sigma), rtol=1e-9, atol=1e-9)


def test_tfg_mean_guidance_steps_along_the_gradient_and_counts() -> None:
    reward = linear_reward([0.4, -0.3, 0.2])
    guided = tfg(CallCounter(_gaussian()), reward, mu=0.25, n_iter=3, gamma=0.1, n_smooth=4)
    x = _points()
    expected = _gaussian()(x, 0.7) + 3 * 0.25 * reward.linear
    torch.testing.assert_close(guided(x, 0.7), expected, rtol=1e-10, atol=1e-10)
    assert guided.cost() == Cost(nfe=1, calls=1, backward_passes=3, auxiliary_calls=12)
    both = tfg(CallCounter(_gaussian()), reward, rho=1.0, mu=0.1, n_iter=2, gamma=0.0)
    both(x, 0.7)
    assert both.cost() == Cost(nfe=1, calls=1, backward_passes=3, auxiliary_calls=3)


SOLVERS = [("dpmpp_2m", {}), ("unipc", {}), ("dpmpp_2m_sde", {}), ("euler_ancestral", {})]


@pytest.mark.parametrize(("solver", "options"), SOLVERS)
def test_guided_walks_equal_walks_of_the_exact_target(solver: str, options: dict) -> None:
    """Each exact guided denoiser, walked by an ODE multistep or an SDE solver, gives the exact target's walk."""
    sigmas = diffsample.steps.karras(8, 0.01, 20.0)
    prior = GaussianMixture(torch.tensor([[-2.0, 0.0], [2.0, 1.0]], dtype=F64), torch.tensor([0.5, 0.7]), [0.6, 0.4])
    t = tilt(prior, linear_reward([0.6, -0.4]), 0.8)
    alpha, reward = 0.5, linear_reward([0.4, -0.3, 0.2])
    cases = [
        (classifier_guidance(prior, t.twist_potential(), 1.0), t.tilted, 2),
        (tfg(_gaussian(), reward, rho=1 / alpha), tilt(_gaussian(), reward, alpha).tilted, 3),
    ]
    for guided, exact, d in cases:
        z = diffsample.noise.seeded(1).initial((6, d), 20.0, dtype=F64)
        a = diffsample.sample(guided, z, sigmas, solver, noise=diffsample.noise.seeded(2), **options)
        b = diffsample.sample(exact, z, sigmas, solver, noise=diffsample.noise.seeded(2), **options)
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-7)


@pytest.mark.parametrize("solver", ["dpmpp_2m", "dpmpp_2m_sde"])
def test_dps_walks_equal_walks_of_its_closed_form(solver: str) -> None:
    problem = linear_inverse_problem(_gaussian(), masking_operator([True, False, True]), 0.2, seed=0)

    def closed_form(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        s2 = sigma[:, None].square()
        d = MU + S.square() / (S.square() + s2) * (x - MU)
        resid = problem.measure(d) - problem.y
        return d - 0.5 / resid.norm(dim=1, keepdim=True) * s2 * 2 * S.square() / (S.square() + s2) * (
            resid @ problem.operator
        )

    sigmas = diffsample.steps.karras(8, 0.01, 20.0)
    z = diffsample.noise.seeded(3).initial((5, 3), 20.0, dtype=F64)
    a = diffsample.sample(
        dps(_gaussian(), problem.measure, problem.y, 0.5), z, sigmas, solver, diffsample.noise.seeded(4)
    )
    b = diffsample.sample(closed_form, z, sigmas, solver, diffsample.noise.seeded(4))
    torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-7)


def test_recurrence_repeats_each_interval_and_one_round_is_plain_sampling() -> None:
    sigmas = diffsample.steps.karras(5, 0.01, 10.0)
    z = diffsample.noise.seeded(0).initial((4, 3), 10.0, dtype=F64)
    once = recurrent_sample(_gaussian(), z, sigmas, "heun", n_recur=1)
    torch.testing.assert_close(once, diffsample.sample(_gaussian(), z, sigmas, "heun"))
    counted = CallCounter(_gaussian())
    out = recurrent_sample(counted, z, sigmas, "euler", n_recur=3, noise=diffsample.noise.seeded(1))
    assert counted.nfe == 3 * 5 and out.shape == z.shape
    with pytest.raises(DiffsampleError, match="noise source"):
        recurrent_sample(_gaussian(), z, sigmas, "euler", n_recur=2)


def test_recurrence_keeps_the_law_of_a_gaussian() -> None:
    # re-noising σ_{i+1} → σ_i after an ancestral step with the exact denoiser returns to the σ_i marginal up to
    # the step's own discretisation error, so three rounds reach the law one round reaches
    sigmas = diffsample.steps.karras(30, 0.01, 10.0)
    z = diffsample.noise.seeded(0).initial((4000, 3), 1.0, dtype=F64) * (S.square() + 100).sqrt() + MU
    laws = []
    for n_recur in (1, 3):
        x = recurrent_sample(
            _gaussian(), z, sigmas, "euler_ancestral", n_recur=n_recur, noise=diffsample.noise.seeded(1)
        )
        laws.append((x.mean(0), x.std(0) / S))
    assert float((laws[1][0] - MU).abs().max()) < 0.06
    assert float((laws[1][1] - laws[0][1]).abs().max()) < 0.04
    assert float((laws[1][1] - 1).abs().max()) < 0.15  # euler_ancestral's own bias at 30 steps is about 0.1


def test_beam_search_finds_the_optimum_of_a_known_score() -> None:
    calls = []

    def score(p: dict[str, float]) -> float:
        calls.append(p)
        return -((math.log2(p["rho"]) - 1) ** 2) - (math.log2(p["mu"]) - 2) ** 2

    space = {"rho": Axis(0.25, 2.0, 8.0), "mu": Axis(0.25, 2.0, 8.0)}
    result = beam_search(score, space, beam=2, rounds=8)
    assert result.best == {"rho": 2.0, "mu": 4.0} and result.best_score == 0.0
    assert result.evaluations == len(calls) == len({tuple(sorted(c.items())) for c in calls})
    with pytest.raises(DiffsampleError, match="factor > 1"):
        Axis(1.0, 1.0, 2.0)


def test_tfg_clip_caps_each_gradient_norm() -> None:
    reward = linear_reward([3.0, -4.0, 0.0])  # gradient norm 5
    guided = tfg(_gaussian(), reward, mu=1.0, n_iter=1, clip=2.0)
    x = _points()
    torch.testing.assert_close(guided(x, 0.5), _gaussian()(x, 0.5) + 2.0 * reward.linear / 5.0, rtol=1e-10, atol=1e-10)
    with pytest.raises(DiffsampleError, match="clip"):
        tfg(_gaussian(), reward, clip=0.0)


def test_pointwise_error_separates_the_exact_twist_from_the_x0_approximation() -> None:
    prior = GaussianMixture(torch.tensor([[-2.0, 0.0], [2.0, 1.0]], dtype=F64), torch.tensor([0.5, 0.7]), [0.6, 0.4])
    reward = linear_reward([0.6, -0.4])
    t = tilt(prior, reward, 0.5)
    probe = 3 * torch.randn(64, 2, dtype=F64, generator=torch.Generator().manual_seed(0))
    sigmas = (0.1, 1.0, 5.0)
    assert denoiser_error(classifier_guidance(prior, t.twist_potential(), 1.0), t.tilted, probe, sigmas) < 1e-9
    assert denoiser_error(tfg(prior, reward, rho=2.0), t.tilted, probe, sigmas) > 1e-2  # log h ≠ r(x̂0)/α for a mixture
