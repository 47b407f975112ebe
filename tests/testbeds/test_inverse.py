"""Linear inverse problems with a mixture prior: the exact posterior against Bayes' rule and its limits."""

from __future__ import annotations

import math

import pytest
import torch

from diffsample.testbeds import (
    FullCovarianceMixture,
    GaussianMixture,
    blur_operator,
    component_weight_tv,
    downsample_operator,
    linear_inverse_problem,
    masking_operator,
)

F64 = torch.float64


def _prior(d: int = 6) -> GaussianMixture:
    g = torch.Generator().manual_seed(4)
    means = 1.5 * torch.randn(3, d, dtype=F64, generator=g)
    stds = 0.3 + 0.4 * torch.rand(3, d, dtype=F64, generator=g)
    return GaussianMixture(means, stds, [0.5, 0.3, 0.2])


OPERATORS = {
    "mask": masking_operator([True, False, True, False, False, True]),
    "downsample": downsample_operator(6, 2),
    "blur": blur_operator(6, 1.0),
}


@pytest.mark.parametrize("name", list(OPERATORS))
def test_posterior_density_is_prior_times_likelihood_over_evidence(name: str) -> None:
    prior = _prior()
    problem = linear_inverse_problem(prior, OPERATORS[name], 0.4, seed=1)
    x = prior.sample(30, torch.Generator().manual_seed(2))
    m = problem.operator.shape[0]
    log_lik = problem.log_likelihood(x) - 0.5 * m * math.log(2 * math.pi * 0.4**2)
    expected = prior.log_prob(x, 0.0) + log_lik - problem.log_evidence
    torch.testing.assert_close(problem.posterior.log_prob(x, 0.0), expected, rtol=1e-9, atol=1e-9)


def test_posterior_denoiser_limits() -> None:
    problem = linear_inverse_problem(_prior(), OPERATORS["blur"], 0.3, seed=5)
    post = problem.posterior
    mean = (post.weights[:, None] * post.means).sum(0)
    x = torch.randn(8, 6, dtype=F64, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(post(x, 1e7), mean.expand(8, 6), rtol=0, atol=1e-8)
    torch.testing.assert_close(post(x, 1e-7), x, rtol=0, atol=1e-8)


def test_full_covariance_mixture_with_diagonal_covariances_is_the_diagonal_mixture() -> None:
    prior = _prior()
    full = FullCovarianceMixture(prior.means, torch.diag_embed(prior.stds.square()), prior.weights)
    x = 2 * torch.randn(16, 6, dtype=F64, generator=torch.Generator().manual_seed(1))
    for sigma in (0.05, 0.5, 3.0):
        torch.testing.assert_close(full(x, sigma), prior(x, sigma), rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(full.log_prob(x, sigma), prior.log_prob(x, sigma), rtol=1e-10, atol=1e-10)


def test_operators_and_weight_tv() -> None:
    torch.testing.assert_close(downsample_operator(6, 3).sum(1), torch.ones(2, dtype=F64))
    torch.testing.assert_close(blur_operator(6, 0.7).sum(1), torch.ones(6, dtype=F64))
    assert masking_operator([False, True, True]).tolist() == [[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    post = linear_inverse_problem(_prior(), OPERATORS["mask"], 1.0, seed=2).posterior
    x = post.sample(20_000, torch.Generator().manual_seed(3))
    assert component_weight_tv(post, x) < 0.03  # exact draws: only the assignment overlap and sampling noise
