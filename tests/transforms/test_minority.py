"""Minority guidance (Um et al. 2024) and self-guided minority generation (Um & Ye 2024) against closed forms."""

from __future__ import annotations

import pytest
import torch

from diffsample import sample, steps
from diffsample.errors import DiffsampleError
from diffsample.noise import seeded
from diffsample.testbeds import GaussianMixture, level_log_probs, rarity_groups
from diffsample.transforms import (
    KeyedNormals,
    assign_levels,
    minority_guidance,
    minority_levels,
    minority_score,
    self_guided_minority,
)

F64 = torch.float64


def _unequal_mixture() -> GaussianMixture:
    means = torch.tensor([[-2.0, 0.0], [2.0, 1.0], [0.0, -2.5], [0.5, 2.5]], dtype=F64)
    stds = torch.tensor([0.5, 0.6, 0.4, 0.45], dtype=F64)
    weights = torch.tensor([0.6, 0.25, 0.1, 0.05], dtype=F64)
    return GaussianMixture(means, stds, weights)


def _points(n: int = 48, seed: int = 0) -> torch.Tensor:
    return 3 * torch.randn(n, 2, dtype=F64, generator=torch.Generator().manual_seed(seed))


def test_rarity_groups_sort_components_by_weight() -> None:
    assert rarity_groups(_unequal_mixture(), 2) == [[0, 1], [2, 3]]
    assert rarity_groups(_unequal_mixture(), 4) == [[0], [1], [2], [3]]
    with pytest.raises(DiffsampleError, match="num_levels"):
        rarity_groups(_unequal_mixture(), 5)


def test_exact_level_classifier_guidance_is_the_restricted_mixture() -> None:
    mix = _unequal_mixture()
    groups = rarity_groups(mix, 2)
    rare = GaussianMixture(mix.means[groups[1]], mix.stds[groups[1]], mix.weights[groups[1]])
    guided = minority_guidance(mix, lambda x, s: level_log_probs(mix, groups, x, s), target_level=1, scale=1.0)
    x = _points()
    for sigma in (0.05, 0.8, 5.0):
        s = torch.full((x.shape[0],), sigma, dtype=F64)
        torch.testing.assert_close(guided(x, s), rare(x, s), rtol=1e-9, atol=1e-9)
    cost = guided.cost()
    assert (cost.nfe, cost.auxiliary_calls, cost.backward_passes) == (3, 3, 3)


def test_minority_score_is_the_tweedie_reconstruction_loss() -> None:
    mu, s, sigma = torch.tensor([0.5, -1.0], dtype=F64), 0.7, 1.3
    gauss = GaussianMixture(mu[None], torch.tensor([s], dtype=F64))
    x0 = _points(16, 1)
    got = minority_score(gauss, x0, sigma, seeds=7, draws=2, distance="squared_l2")
    noise = seeded(7)
    a = s**2 / (s**2 + sigma**2)
    want = torch.zeros(16, dtype=F64)
    for _ in range(2):  # D(x0 + σε) = μ + a(x0 + σε − μ): error (1 − a)(x0 − μ) − aσε
        eps = noise.standard_normal(x0.shape, dtype=F64)
        want += ((1 - a) * (x0 - mu) - a * sigma * eps).square().sum(1)
    torch.testing.assert_close(got, want / 2, rtol=1e-12, atol=1e-12)
    # sample i's score does not depend on the batch
    torch.testing.assert_close(minority_score(gauss, x0[:5], sigma, seeds=7, draws=2, distance="squared_l2"), got[:5])
    with pytest.raises(DiffsampleError, match="distance"):
        minority_score(gauss, x0, sigma, distance="lpips")


def test_minority_score_ranks_rare_component_data_higher() -> None:
    mix = _unequal_mixture()
    data = mix.sample(4000, torch.Generator().manual_seed(3))
    scores = minority_score(mix, data, 1.0, seeds=1, draws=4)
    comp = mix.component(data)
    common, rarest = scores[comp == 0].mean(), scores[comp == 3].mean()
    assert rarest > 1.5 * common


def test_minority_levels_cut_equal_counts() -> None:
    scores = torch.arange(100, dtype=F64).flip(0)
    levels, thresholds = minority_levels(scores, 4)
    assert torch.bincount(levels).tolist() == [25, 25, 25, 25]
    assert levels[0] == 3 and levels[-1] == 0  # the highest score is the most minority level
    torch.testing.assert_close(assign_levels(torch.tensor([-1.0, 30.0, 1e9]), thresholds), torch.tensor([0, 1, 3]))


def test_self_guided_gradient_matches_the_closed_form() -> None:
    mu, s, sigma, sp, w = torch.tensor([0.5, -1.0], dtype=F64), 0.8, 2.0, 0.6, 0.7
    gauss = GaussianMixture(mu[None], torch.tensor([s], dtype=F64))
    guided = self_guided_minority(gauss, w, sp, seeds=11)
    x = _points(12, 2)
    sig = torch.full((12,), sigma, dtype=F64)
    a, ap = s**2 / (s**2 + sigma**2), s**2 / (s**2 + sp**2)
    x0 = mu + a * (x - mu)
    eps = KeyedNormals(11)(sig, x.shape, F64, x.device)
    rec = mu + ap * (x0 + sp * eps - mu)
    diff = x0 - rec
    grad = a * diff / diff.norm(dim=1, keepdim=True)  # ∇_x ‖x̂0(x) − sg(rec)‖ through x̂0 only
    torch.testing.assert_close(guided(x, sig), x0 + w * sigma**2 * grad, rtol=1e-10, atol=1e-10)
    cost = guided.cost()
    assert (cost.nfe, cost.backward_passes, cost.auxiliary_calls) == (2, 1, 0)
    normed = self_guided_minority(gauss, w, sp, seeds=11, normalize=True)  # the paper's per-sample max-normalisation
    peak = grad.abs().amax(dim=1, keepdim=True)
    torch.testing.assert_close(normed(x, sig), x0 + w * sigma**2 * grad / peak, rtol=1e-10, atol=1e-10)
    # outside the interval: the plain denoiser, one evaluation
    windowed = self_guided_minority(gauss, w, sp, seeds=11, interval=(5.0, 100.0))
    windowed.reset_counter()  # read-through counters: the shared bed's
    torch.testing.assert_close(windowed(x, sig), x0)
    assert windowed.cost().nfe == 1 and windowed.cost().backward_passes == 0


@pytest.mark.parametrize("solver", ["dpmpp_2m", "dpmpp_2m_sde"])
def test_minority_methods_run_unchanged_with_multistep_ode_and_sde_solvers(solver: str) -> None:
    mix = _unequal_mixture()
    groups = rarity_groups(mix, 2)
    sigmas = steps.karras(12, 0.02, 20.0)
    n = 400
    x = sigmas[0] * seeded(5).standard_normal((n, 2), dtype=F64)
    rare_share = {}
    methods = {
        "plain": mix,
        "classifier": minority_guidance(mix, lambda x, s: level_log_probs(mix, groups, x, s), 1, scale=1.0),
        "self": self_guided_minority(mix, 1.0, 0.5, seeds=3),
    }
    for name, den in methods.items():
        den.reset_counter()
        out = sample(den, x.clone(), sigmas, solver=solver, noise=seeded(9))
        assert torch.isfinite(out).all()
        rare_share[name] = float(torch.isin(mix.component(out), torch.tensor(groups[1])).double().mean())
        if name == "classifier":
            cost = den.cost()
            assert cost.auxiliary_calls == cost.backward_passes == cost.nfe == 12
        if name == "self":
            assert den.cost().nfe == 24 and den.cost().backward_passes == 12
    assert rare_share["classifier"] > 0.95  # exact level classifier at w = 1: p(x | rarest level)
    assert rare_share["plain"] < 0.2  # the rarest level holds 15 % of the data
    assert rare_share["self"] > 1.5 * rare_share["plain"]
