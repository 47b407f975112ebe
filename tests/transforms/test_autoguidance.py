"""Autoguidance (Karras et al. 2024): exact identities, equality with CFG whose unconditional branch is the weak
model, honest NFE, and exact output laws through an ODE multistep solver and an SDE solver.

Exact bed: a good model that is the exact denoiser of ``N(μ₁, s² I)`` and a weak one of ``N(μ₀, s² I)``.
Their autoguided denoiser ``D₀ + w (D₁ − D₀)`` is exactly the denoiser of ``N(μ₀ + w(μ₁ − μ₀), s² I)``, so
the probability-flow ODE has a closed-form solution and an SDE sampler's law at ``σ`` is
``N(μ₀ + w(μ₁ − μ₀), (s² + σ²) I)``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import diffsample
from diffsample import solvers, steps
from diffsample.denoisers import FunctionDenoiser
from diffsample.errors import DiffsampleError
from diffsample.transforms import Autoguidance, ClassifierFreeGuidance, autoguidance, cfg

DIM = 5
GOOD_MEAN = torch.tensor([1.0, -2.0, 0.5, 3.0, 0.0], dtype=torch.float64)
WEAK_MEAN = torch.tensor([0.6, -1.2, 0.1, 2.0, 0.4], dtype=torch.float64)


def gaussian(mean: torch.Tensor, std: float) -> FunctionDenoiser:
    """The exact denoiser of N(mean, std² I), with its own NFE counter."""

    def fn(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        gain = (std**2 / (std**2 + sigma.to(x.dtype) ** 2)).reshape(-1, 1)
        return mean.to(x.dtype) + gain * (x - mean.to(x.dtype))

    return FunctionDenoiser(fn)


class ClassGaussians:
    """A labelled 'network': class k → N(means[k], stds[k]² I); records the labels it was called with."""

    def __init__(self, means: torch.Tensor, stds: torch.Tensor) -> None:
        self.means, self.stds = means, stds
        self.seen: list[torch.Tensor] = []

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, *, class_labels: torch.Tensor) -> torch.Tensor:
        labels = torch.as_tensor(class_labels).long().expand(x.shape[0])
        self.seen.append(labels.clone())
        mean, std = self.means[labels].to(x.dtype), self.stds[labels].to(x.dtype)
        gain = (std**2 / (std**2 + sigma.to(x.dtype) ** 2))[:, None]
        return mean + gain * (x - mean)


def points(batch: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = 3.0 * torch.randn(batch, DIM, generator=gen, dtype=torch.float64)
    sigma = 0.1 + 5.0 * torch.rand(batch, generator=gen, dtype=torch.float64)
    return x, sigma


def test_weight_one_is_exactly_the_good_model_and_the_weak_one_is_not_called():
    good, weak = gaussian(GOOD_MEAN, 0.7), gaussian(WEAK_MEAN, 1.5)
    guided = autoguidance(good, weak, 1.0)
    x, sigma = points()
    assert torch.equal(guided(x, sigma), gaussian(GOOD_MEAN, 0.7)(x, sigma))
    assert guided.nfe == 1 and weak.nfe == 0 and good.nfe == 1


@pytest.mark.parametrize("scale", [0.0, 0.5, 2.0, 7.5])
def test_a_weak_model_equal_to_the_good_one_gives_the_good_model_for_any_weight(scale):
    good, same = gaussian(GOOD_MEAN, 0.7), gaussian(GOOD_MEAN, 0.7)
    guided = autoguidance(good, same, scale)
    x, sigma = points(seed=1)
    assert torch.equal(guided(x, sigma), gaussian(GOOD_MEAN, 0.7)(x, sigma))
    assert guided.nfe == (1 if scale == 1 else 2)


@pytest.mark.parametrize("scale", [0.0, 1.7, 3.0])
def test_pointwise_formula_against_numpy(scale):
    """``w D₁ + (1 − w) D₀`` (the paper's eq. 1) for a good and a wider weak Gaussian, computed in numpy."""
    s1, s0 = 0.7, 1.5
    guided = autoguidance(gaussian(GOOD_MEAN, s1), gaussian(GOOD_MEAN, s0), scale)
    x, sigma = points(seed=2)
    xn, sn, mu = x.numpy(), sigma.numpy()[:, None], GOOD_MEAN.numpy()
    d1 = mu + s1**2 / (s1**2 + sn**2) * (xn - mu)
    d0 = mu + s0**2 / (s0**2 + sn**2) * (xn - mu)
    np.testing.assert_allclose(guided(x, sigma).numpy(), scale * d1 + (1 - scale) * d0, rtol=0, atol=1e-12)


def test_equals_cfg_whose_unconditional_branch_is_the_weak_model_under_the_same_condition():
    means = torch.stack([GOOD_MEAN, WEAK_MEAN, -GOOD_MEAN])
    good_net = ClassGaussians(means, torch.tensor([0.5, 0.8, 1.1], dtype=torch.float64))
    weak_net = ClassGaussians(means + 0.3, torch.tensor([0.9, 1.2, 1.6], dtype=torch.float64))
    x, sigma = points(seed=3)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    ag = autoguidance(good_net, weak_net, 2.5, cond_kwargs={"class_labels": labels})
    same = {"class_labels": labels}
    ref = cfg(good_net, 2.5, uncond=weak_net, cond_kwargs=same, uncond_kwargs=same)
    assert isinstance(ag, Autoguidance) and isinstance(ag, ClassifierFreeGuidance)
    assert torch.equal(ag(x, sigma), ref(x, sigma))
    # both models saw the same condition (autoguidance is not conditional vs unconditional)
    assert all(torch.equal(seen, labels) for seen in good_net.seen + weak_net.seen)
    # call-time keywords also go to both models
    ag_call = autoguidance(good_net, weak_net, 2.5)
    assert torch.equal(ag_call(x, sigma, class_labels=labels), ref(x, sigma))


def test_weak_kwargs_reach_the_weak_model_only():
    means = torch.stack([GOOD_MEAN, WEAK_MEAN])
    good_net = ClassGaussians(means, torch.tensor([0.5, 0.8], dtype=torch.float64))
    weak_net = ClassGaussians(means, torch.tensor([0.9, 1.2], dtype=torch.float64))
    x, sigma = points(seed=4)
    ag = autoguidance(good_net, weak_net, 2.0, cond_kwargs={"class_labels": 0}, weak_kwargs={"class_labels": 1})
    ref = cfg(good_net, 2.0, uncond=weak_net, cond_kwargs={"class_labels": 0}, uncond_kwargs={"class_labels": 1})
    assert torch.equal(ag(x, sigma), ref(x, sigma))


def exact_pf_ode(x0: torch.Tensor, sigma0: float, sigma1: float, mean: torch.Tensor, std: float) -> torch.Tensor:
    """PF-ODE solution for N(mean, std² I): x(σ) = μ + sqrt(s² + σ²)/sqrt(s² + σ0²) (x0 − μ)."""
    return mean + np.sqrt((std**2 + sigma1**2) / (std**2 + sigma0**2)) * (x0 - mean)


@pytest.mark.parametrize("solver", ["dpmpp_2m", "ipndm"])
def test_ode_multistep_solver_reaches_the_exact_solution_and_counts_two_nfe_per_evaluation(solver):
    scale, std, n = 2.0, 0.7, 60
    good, weak = gaussian(GOOD_MEAN, std), gaussian(WEAK_MEAN, std)
    guided = autoguidance(good, weak, scale)
    sigmas = steps.karras(n, 0.05, 20.0, append_zero=False)
    x0 = diffsample.noise.seeded(0).initial((8, DIM), 20.0, dtype=torch.float64)
    out = diffsample.sample(guided, x0, sigmas, solver=solver)
    target = WEAK_MEAN + scale * (GOOD_MEAN - WEAK_MEAN)
    torch.testing.assert_close(out, exact_pf_ode(x0, 20.0, 0.05, target, std), rtol=0, atol=5e-3)
    evals = solvers.spec(solver).nfe_on(sigmas)
    assert good.nfe == evals and weak.nfe == evals
    assert guided.nfe == 2 * evals and guided.calls == 2 * evals


def test_sde_solver_samples_the_exact_guided_law():
    scale, std, sigma_end, batch = 1.8, 0.7, 0.05, 4000
    guided = autoguidance(gaussian(GOOD_MEAN, std), gaussian(WEAK_MEAN, std), scale)
    sigmas = steps.karras(40, sigma_end, 20.0, append_zero=False)
    target = WEAK_MEAN + scale * (GOOD_MEAN - WEAK_MEAN)
    start = np.sqrt(std**2 + 20.0**2)
    x0 = target + start * diffsample.noise.seeded(1).standard_normal((batch, DIM), dtype=torch.float64)
    out = diffsample.sample(guided, x0, sigmas, solver="dpmpp_2m_sde", noise=diffsample.noise.seeded(2))
    # law N(target, (s² + σ_end²) I): mean within ~4 standard errors (0.011; measured 0.010), std within the
    # sampling error (0.008) plus the solver's discretisation error at 40 steps (measured 0.022 in all)
    torch.testing.assert_close(out.mean(0), target, rtol=0, atol=0.05)
    law_std = torch.full((DIM,), float(np.sqrt(std**2 + sigma_end**2)), dtype=torch.float64)
    torch.testing.assert_close(out.std(0), law_std, rtol=0, atol=0.04)
    assert guided.nfe == 2 * solvers.spec("dpmpp_2m_sde").nfe_on(sigmas)


def test_interval_counts_one_nfe_outside():
    sigmas = steps.karras(10, 0.1, 10.0)
    lo, hi = 0.5, 3.0
    inside = sum(1 for s in sigmas[:-1].tolist() if lo < s <= hi)
    good, weak = gaussian(GOOD_MEAN, 0.7), gaussian(WEAK_MEAN, 1.0)
    guided = autoguidance(good, weak, 2.0, interval=(lo, hi))
    diffsample.sample(guided, diffsample.noise.seeded(1).initial((3, DIM), 10.0), sigmas, solver="euler")
    assert 0 < inside < 10
    assert guided.nfe == 2 * inside + (10 - inside) and weak.nfe == inside and good.nfe == 10


def test_bad_input_is_refused_with_a_clear_error():
    good = gaussian(GOOD_MEAN, 0.7)
    with pytest.raises(DiffsampleError, match="two different denoisers"):
        autoguidance(good, good, 2.0)
    with pytest.raises(DiffsampleError, match="needs a weak denoiser"):
        autoguidance(good, None, 2.0)  # type: ignore[arg-type]
    with pytest.raises(DiffsampleError, match="finite"):
        autoguidance(good, gaussian(WEAK_MEAN, 1.0), float("nan"))
    assert diffsample.autoguidance is autoguidance
