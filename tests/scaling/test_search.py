"""Best-of-N, zero-order and path search, and SVDD, against order statistics and importance resampling."""

from __future__ import annotations

import math

import pytest
import torch
from beds import sigmas, tilted

from diffsample.errors import DiffsampleError
from diffsample.scaling import (
    AncestralProposal,
    ExactMixtureChain,
    best_of_n,
    path_search,
    svdd,
    tree_sample,
    tree_search,
    zero_order_search,
)

F64 = torch.float64


def _expected_max(bed, n: int) -> float:
    """E[max of n i.i.d. r(x)], x ~ prior: r = aᵀx is a 1-D mixture Σ w_k N(aᵀμ_k, s_k²|a|²); quadrature."""
    a = bed.reward.linear
    loc = bed.prior.means @ a
    scale = bed.prior.stds * a.norm()
    t = torch.linspace(float(loc.min() - 10 * scale.max()), float(loc.max() + 10 * scale.max()), 20001, dtype=F64)
    cdf = (bed.prior.weights[None] * torch.special.ndtr((t[:, None] - loc) / scale)).sum(1)
    pdf_max = torch.gradient(cdf.pow(n), spacing=(t,))[0]
    return float(torch.trapezoid(t * pdf_max, t))


def test_best_of_n_reaches_the_expected_maximum() -> None:
    bed = tilted("linear")
    g, n = 1500, 4
    res = best_of_n(ExactMixtureChain(bed.prior, sigmas(4)), bed.reward, n=n, populations=g, seeds=0)
    se = float(res.rewards.std()) / math.sqrt(g)
    assert abs(float(res.rewards.mean()) - _expected_max(bed, n)) < 4 * se
    assert res.cost.reward_evaluations == g * n and res.cost.network_evaluations == g * n * 4


def test_svdd_greedy_on_one_level_is_best_of_m() -> None:
    """One level from a huge σ: the M candidates are i.i.d. prior draws, so greedy SVDD is best-of-M."""
    bed = tilted("linear")
    g, m = 1500, 4
    res = svdd(ExactMixtureChain(bed.prior, [1e4, 0.0]), bed.reward, candidates=m, samples=g, seeds=1, alpha=0.0)
    se = float(res.rewards.std()) / math.sqrt(g)
    assert abs(float(res.rewards.mean()) - _expected_max(bed, m)) < 4 * se
    assert torch.allclose(res.rewards, bed.reward(res.x))


def test_svdd_soft_selection_is_importance_resampling_towards_the_tilt() -> None:
    """With temperature α the one-level selection is sampling-importance-resampling with weights exp(r/α): the
    kept reward mean tends to the tilted mean E_{p_α}[r] (bias O(1/M))."""
    bed = tilted("linear", alpha=1.0)
    res = svdd(ExactMixtureChain(bed.prior, [1e4, 0.0]), bed.reward, candidates=64, samples=1000, seeds=2, alpha=1.0)
    assert abs(float(res.rewards.mean()) - bed.reward_mean()) < 0.1
    assert bed.reward_mean() - bed.prior_reward_mean() > 1.0


def test_zero_order_search_with_full_steps_is_best_of_all_draws() -> None:
    """Step size 1: neighbours ignore the pivot, so R rounds of n are best-of-(1 + R·n) draws of the chain."""
    bed = tilted("linear")
    prop = AncestralProposal(bed.prior, sigmas(10), (2,), dtype=F64)
    g = 600
    zo = zero_order_search(prop, bed.reward, n=2, rounds=2, step_size=1.0, populations=g, seeds=3)
    bo = best_of_n(prop, bed.reward, n=5, populations=g, seeds=4)
    se = math.hypot(float(zo.rewards.std()), float(bo.rewards.std())) / math.sqrt(g)
    assert abs(float(zo.rewards.mean()) - float(bo.rewards.mean())) < 4 * se
    assert bool((zo.history[:, 1:] >= zo.history[:, :-1]).all())
    assert zo.cost.reward_evaluations == g * 5 and zo.cost.network_evaluations == g * 5 * 10


def test_path_search_without_branching_is_best_of_n_and_branching_helps() -> None:
    bed = tilted("linear")
    prop = AncestralProposal(bed.prior, sigmas(10), (2,), dtype=F64)
    g, n = 600, 4
    flat = path_search(prop, bed.reward, n=n, checkpoints=[5], branch=1, back=0, populations=g, seeds=5)
    bo = best_of_n(prop, bed.reward, n=n, populations=g, seeds=6)
    se = math.hypot(float(flat.rewards.std()), float(bo.rewards.std())) / math.sqrt(g)
    assert abs(float(flat.rewards.mean()) - float(bo.rewards.mean())) < 4 * se
    deep = path_search(prop, bed.reward, n=n, checkpoints=[3, 6], branch=4, back=2, populations=g, seeds=5)
    assert float(deep.rewards.mean()) > float(bo.rewards.mean())
    assert deep.cost.network_evaluations == g * n * (10 + 3 + 3)  # a re-noise: 1 evaluation, 2 levels again


def test_search_arguments_are_checked() -> None:
    bed = tilted("linear")
    with pytest.raises(DiffsampleError, match="start_from"):
        zero_order_search(ExactMixtureChain(bed.prior, sigmas(3)), bed.reward, n=2, rounds=1, seeds=0)
    with pytest.raises(DiffsampleError, match="branch"):
        path_search(AncestralProposal(bed.prior, sigmas(5), (2,)), bed.reward, n=3, checkpoints=[2], seeds=0)
    with pytest.raises(DiffsampleError, match="greedy"):
        svdd(ExactMixtureChain(bed.prior, sigmas(3)), bed.reward, candidates=2, seeds=0, alpha=-1.0)


def test_dts_on_one_level_is_importance_resampling_and_dts_star_keeps_the_best() -> None:
    """One level from a huge σ with every initial state given the same number of leaves: DTS's Boltzmann descent
    picks a leaf with probability ∝ exp(r/α) among i.i.d. prior draws (SIR), so its reward mean tends to the tilted
    mean; DTS* returns the best leaf it found."""
    bed = tilted("linear", alpha=1.0)
    chain = ExactMixtureChain(bed.prior, [1e4, 0.0])
    b = 6
    g = 120
    dts = tree_sample(chain, bed.reward, rollouts=b * b, branching=b, samples=g, seeds=7, alpha=1.0)
    se = float(dts.rewards.std()) / math.sqrt(g)
    assert abs(float(dts.rewards.mean()) - bed.reward_mean()) < 4 * se + 0.05  # + SIR bias O(1/leaves)
    assert bed.reward_mean() - bed.prior_reward_mean() > 10 * se
    assert dts.cost.reward_evaluations <= g * b * b and dts.cost.network_evaluations == g * b  # leaves revisited: free
    star = tree_search(chain, bed.reward, rollouts=b * b, branching=b, samples=30, seeds=7, alpha=1.0)
    assert torch.allclose(star.rewards, star.history[:, -1])
    assert bool((star.history[:, 1:] >= star.history[:, :-1]).all())
    assert float(star.rewards.mean()) > float(dts.rewards.mean())


def test_svdd_and_search_samples_do_not_depend_on_the_other_samples() -> None:
    bed = tilted("linear")
    prop = AncestralProposal(bed.prior, sigmas(5), (2,), dtype=F64)
    one = svdd(prop, bed.reward, candidates=3, samples=1, seeds=[21], alpha=0.5)
    three = svdd(prop, bed.reward, candidates=3, samples=3, seeds=[21, 22, 23], alpha=0.5)
    assert torch.equal(one.x[0], three.x[0])
    one = path_search(prop, bed.reward, n=4, checkpoints=[2], seeds=[21])
    three = path_search(prop, bed.reward, n=4, checkpoints=[2], seeds=[21, 22, 23], populations=3)
    assert torch.equal(one.x[0], three.x[0])
