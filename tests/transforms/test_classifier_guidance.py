"""Classifier guidance with the exact noisy classifier of a labelled mixture is the exact conditional denoiser."""

from __future__ import annotations

import torch

from diffsample.testbeds import GaussianMixture
from diffsample.transforms import classifier_guidance


def _mixture() -> tuple[GaussianMixture, GaussianMixture]:
    means = torch.tensor([[-2.0, 0.0], [2.0, 1.0], [0.0, -2.0]], dtype=torch.float64)
    stds = torch.tensor([[0.5, 0.7], [0.6, 0.4], [0.3, 0.5]], dtype=torch.float64)
    weights = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    return GaussianMixture(means, stds, weights), GaussianMixture(means[1:2], stds[1:2], torch.ones(1))


def test_exact_noisy_classifier_gives_the_conditional_denoiser() -> None:
    prior, conditional = _mixture()

    def log_p_class1(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        # Bayes-optimal noisy classifier: log r_1(x, σ) from the mixture's responsibilities
        return torch.log(prior.responsibilities(x, sigma)[:, 1])

    guided = classifier_guidance(prior, log_p_class1, 1.0)
    x = torch.randn(64, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 3
    for sigma in (0.05, 0.7, 4.0):
        s = torch.full((64,), sigma, dtype=torch.float64)
        torch.testing.assert_close(guided(x, s), conditional(x, s), rtol=1e-10, atol=1e-10)
    assert guided.cost().auxiliary_calls == 3 and guided.cost().backward_passes == 3 and guided.nfe == 3


def test_guided_walks_reach_the_class_with_a_multistep_ode_and_an_sde_solver() -> None:
    import diffsample
    from diffsample.noise import seeded

    prior, _ = _mixture()
    guided = classifier_guidance(prior, lambda x, s: torch.log(prior.responsibilities(x, s)[:, 1]), 1.0)
    sigmas = diffsample.steps.karras(30, 0.01, 20.0)
    x = seeded(range(400)).initial((400, 2), 20.0).double()
    for solver, noise in (("dpmpp_2m", None), ("dpmpp_2m_sde", seeded(range(1000, 1400)))):
        out = diffsample.sample(guided, x, sigmas, solver=solver, noise=noise)
        share = prior.responsibilities(out, 0.01)[:, 1].mean().item()
        assert share > 0.97, (solver, share)  # the unguided prior puts 0.3 of its mass there
