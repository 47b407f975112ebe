"""Feynman–Kac steering / SMC against exact tilted targets: exact with the exact twist, corrections, costs."""

from __future__ import annotations

import math

import pytest
import torch
from beds import prior, sigmas, tilted

from diffsample.errors import DiffsampleError
from diffsample.scaling import POTENTIALS, AncestralProposal, ExactMixtureChain, feynman_kac
from diffsample.testbeds.guidance_metrics import posterior_report


def _exact_twist(bed):
    return lambda p: bed.log_twist(p.x, p.time)


@pytest.mark.parametrize("kind", ["linear", "quadratic"])
def test_smc_with_exact_twist_is_exact(kind: str) -> None:
    """Exact chain + exact twist: E[exp(log Ẑ)] = Z and the draws match the tilted law at the sampling floor."""
    bed = tilted(kind)
    g = 200
    res = feynman_kac(
        ExactMixtureChain(bed.prior, sigmas(8)),
        bed.reward,
        particles=16,
        populations=g,
        seeds=0,
        value=_exact_twist(bed),
    )
    z_hat = res.log_normalizer.exp()
    z = math.exp(bed.log_normalizer)
    se = float(z_hat.std()) / math.sqrt(g)
    assert abs(float(z_hat.mean()) - z) < 4 * se + 1e-3 * z
    rep = posterior_report(bed.tilted, res.draw(1), n_floor=3)
    assert rep["sw"] < 1.6 * rep["sw_floor"] and rep["tv"] < 2.0 * rep["tv_floor"] + 0.02, rep


@pytest.mark.parametrize("potential", POTENTIALS)
def test_final_correction_makes_every_potential_target_the_tilt(potential: str) -> None:
    """Without resampling the product of potentials along a path is exp(r(x)/α) for every scheme, and log Ẑ is
    the importance-sampling estimate log mean exp(r/α)."""
    bed = tilted("linear", alpha=0.5)
    res = feynman_kac(
        ExactMixtureChain(bed.prior, sigmas(6)),
        bed.reward,
        particles=8,
        populations=3,
        seeds=4,
        alpha=0.5,
        potential=potential,
        ess_threshold=0.0,
    )
    expected = bed.reward(res.x.reshape(24, 2)).reshape(3, 8) / 0.5
    assert torch.allclose(res.log_weights, expected, atol=1e-9)
    assert torch.allclose(res.log_normalizer, torch.logsumexp(expected, 1) - math.log(8), atol=1e-9)
    assert not bool(res.resampled.any())


def test_costs_are_counted_per_sample() -> None:
    bed = tilted()
    g, k, n = 2, 5, 6
    res = feynman_kac(ExactMixtureChain(bed.prior, sigmas(n)), bed.reward, particles=k, populations=g, seeds=1)
    assert res.cost.network_evaluations == g * k * n  # levels 0 … n−1 have σ > 0
    assert res.cost.reward_evaluations == g * k * n  # n−1 intermediate rewards of x̂0 and the final one
    assert res.cost.total == 2 * g * k * n


def test_populations_are_independent_and_seeded() -> None:
    bed = tilted()
    prop = AncestralProposal(bed.prior, sigmas(6), (2,), dtype=torch.float64)
    alone = feynman_kac(prop, bed.reward, particles=6, populations=1, seeds=[11], ess_threshold=1.0)
    crowd = feynman_kac(prop, bed.reward, particles=6, populations=3, seeds=[11, 12, 13], ess_threshold=1.0)
    assert torch.equal(alone.x[0], crowd.x[0])
    assert torch.equal(alone.log_normalizer[0], crowd.log_normalizer[0])
    assert not torch.equal(crowd.x[0], crowd.x[1])


def test_bad_arguments_name_the_choices() -> None:
    bed = tilted()
    prop = ExactMixtureChain(bed.prior, sigmas(3))
    with pytest.raises(DiffsampleError, match="difference"):
        feynman_kac(prop, bed.reward, particles=2, seeds=0, potential="ratio")
    with pytest.raises(DiffsampleError, match="systematic"):
        feynman_kac(prop, bed.reward, particles=2, seeds=0, resampling="best")
    with pytest.raises(DiffsampleError, match="alpha"):
        feynman_kac(prop, bed.reward, particles=2, seeds=0, alpha=0.0)


def test_prior_helper_is_the_bed() -> None:
    assert prior().num_components == 4


def test_every_weights_and_resamples_only_on_its_levels() -> None:
    bed = tilted()
    res = feynman_kac(
        ExactMixtureChain(bed.prior, sigmas(7)),
        bed.reward,
        particles=4,
        populations=2,
        seeds=2,
        every=3,
        ess_threshold=1.0,
    )
    levels = torch.arange(1, 8)
    assert not bool(res.resampled[levels % 3 != 0].any())
    assert bool(res.resampled[(levels % 3 == 0) & (levels < 7)].all())
    assert res.cost.reward_evaluations == 2 * 4 * 3  # levels 3 and 6, then the final reward
