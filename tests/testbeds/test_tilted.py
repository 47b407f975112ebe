"""Reward-tilted mixtures and labelled mixtures against closed forms, Bayes identities and quadrature."""

from __future__ import annotations

import math

import pytest
import torch

from diffsample.errors import DiffsampleError
from diffsample.testbeds import (
    GaussianMixture,
    QuadraticReward,
    class_conditional,
    linear_reward,
    noisy_class_log_prob,
    noisy_classifier,
    quadratic_reward,
    tilt,
)
from diffsample.transforms import classifier_guidance

F64 = torch.float64


def _prior() -> GaussianMixture:
    means = torch.tensor([[-2.0, 0.0], [2.0, 1.0], [0.0, -2.0], [1.0, 2.0]], dtype=F64)
    stds = torch.tensor([[0.5, 0.7], [0.6, 0.4], [0.3, 0.5], [0.4, 0.4]], dtype=F64)
    return GaussianMixture(means, stds, torch.tensor([0.4, 0.3, 0.2, 0.1], dtype=F64))


REWARDS = {
    "linear": linear_reward([1.0, -0.5]),
    "quadratic": quadratic_reward([1.0, 1.0], [0.5, 2.0]),
    "both": QuadraticReward(
        torch.tensor([0.3, 0.2], dtype=F64), torch.tensor([1.0, -1.0], dtype=F64), torch.tensor([1.0, 0.2], dtype=F64)
    ),
}


def _points(n: int = 40, seed: int = 0) -> torch.Tensor:
    return 2.5 * torch.randn(n, 2, dtype=F64, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", list(REWARDS))
def test_tilted_density_is_prior_times_exp_reward_over_z(name: str) -> None:
    prior, reward, alpha = _prior(), REWARDS[name], 0.7
    t = tilt(prior, reward, alpha)
    x = _points()
    expected = prior.log_prob(x, 0.0) + reward(x) / alpha - t.log_normalizer
    torch.testing.assert_close(t.tilted.log_prob(x, 0.0), expected, rtol=1e-10, atol=1e-10)


def test_log_normalizer_and_reward_mean_match_quadrature_in_1d() -> None:
    prior = GaussianMixture(torch.tensor([[-1.5], [1.0]], dtype=F64), torch.tensor([0.4, 0.8], dtype=F64), [0.6, 0.4])
    reward = QuadraticReward(*(torch.tensor([v], dtype=F64) for v in (0.7, 0.5, 1.3)))
    t = tilt(prior, reward, 0.5)
    grid = torch.linspace(-12, 12, 200_001, dtype=F64)[:, None]
    density = prior.log_prob(grid, 0.0).exp() * torch.exp(reward(grid) / 0.5)
    z = torch.trapezoid(density, grid[:, 0])
    assert math.isclose(t.log_normalizer, float(z.log()), rel_tol=1e-9, abs_tol=1e-9)
    mean = torch.trapezoid(density * reward(grid), grid[:, 0]) / z
    assert math.isclose(t.reward_mean(), float(mean), rel_tol=1e-8, abs_tol=1e-9)
    assert t.reward_mean() > t.prior_reward_mean()


@pytest.mark.parametrize("name", list(REWARDS))
def test_guidance_by_the_exact_twist_is_the_tilted_denoiser_at_every_sigma(name: str) -> None:
    prior = _prior()
    t = tilt(prior, REWARDS[name], 0.7)
    guided = classifier_guidance(prior, t.twist_potential(), 1.0)
    x = _points(seed=1)
    for sigma in (0.01, 0.3, 1.0, 5.0, 40.0):
        s = torch.full((x.shape[0],), sigma, dtype=F64)
        torch.testing.assert_close(guided(x, s), t.tilted(x, s), rtol=1e-9, atol=1e-9)


def test_twist_limits_are_the_reward_and_the_normalizer() -> None:
    prior = _prior()
    t = tilt(prior, REWARDS["both"], 0.7)
    x = _points(seed=2)
    torch.testing.assert_close(t.log_twist(x, 1e-5), REWARDS["both"](x) / 0.7, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(t.log_twist(x, 1e5), torch.full((40,), t.log_normalizer, dtype=F64), atol=1e-6, rtol=0)


def test_point_masses_tilt_by_their_reward() -> None:
    atoms = torch.tensor([[0.0, 0.0], [1.0, 2.0], [-1.0, 0.5]], dtype=F64)
    prior = GaussianMixture(atoms, torch.zeros(3, dtype=F64), [0.2, 0.5, 0.3])
    reward = REWARDS["both"]
    t = tilt(prior, reward, 2.0)
    expected = torch.softmax(prior.weights.log() + reward(atoms) / 2.0, 0)
    torch.testing.assert_close(t.tilted.weights, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(t.tilted.means, atoms)


def test_bad_tilts_are_refused() -> None:
    with pytest.raises(DiffsampleError, match="curvature"):
        quadratic_reward([0.0, 0.0], -1.0)
    with pytest.raises(DiffsampleError, match="alpha"):
        tilt(_prior(), REWARDS["linear"], 0.0)


def test_noisy_classifier_is_bayes_and_guides_to_the_class_conditional() -> None:
    prior, labels = _prior(), [0, 1, 0, 1]
    x = _points(seed=3)
    total = torch.logsumexp(torch.stack([noisy_class_log_prob(prior, labels, x, 0.8, y) for y in (0, 1)]), 0)
    torch.testing.assert_close(total, torch.zeros(40, dtype=F64), atol=1e-12, rtol=0)
    cond = class_conditional(prior, labels, 1)
    guided = classifier_guidance(prior, noisy_classifier(prior, labels, 1), 1.0)
    for sigma in (0.05, 0.7, 4.0):
        s = torch.full((40,), sigma, dtype=F64)
        torch.testing.assert_close(guided(x, s), cond(x, s), rtol=1e-9, atol=1e-9)
    with pytest.raises(DiffsampleError, match="not all among the labels"):
        noisy_class_log_prob(prior, labels, x, 0.8, 2)
