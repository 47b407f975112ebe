"""Masked samplers as particle-engine proposals: the samplers' own draws, exact weights on tilted chains."""

from __future__ import annotations

import math

import pytest
import torch

from diffsample import discrete
from diffsample.discrete.beds import (
    chain3x6,
    count_reward,
    empirical_law,
    exact_law,
    monte_carlo_tv,
    tilt_chain,
    tv,
)
from diffsample.discrete.categorical import temperature
from diffsample.discrete.steering import MaskedProposal, exact_soft_value, exact_value
from diffsample.errors import DiffsampleError
from diffsample.scaling.engine import Particles, feynman_kac, run_chain
from diffsample.scaling.search import path_search

SEEDS = [11, 12, 13, 14, 15]


def _tilted():
    chain = chain3x6()
    pairwise = torch.zeros(3, 3, dtype=torch.float64)
    pairwise[0, 2] = 1.5
    return chain, tilt_chain(chain, unary=count_reward([1], 3), pairwise=pairwise, alpha=0.8)


@pytest.mark.parametrize(
    ("sampler", "steps", "run"),
    [
        ("first_hitting", None, lambda d, z, s: discrete.first_hitting(d, z, seed=s)),
        ("ancestral", 4, lambda d, z, s: discrete.ancestral(d, z, 4, seed=s)),
        ("ordered", 3, lambda d, z, s: discrete.ordered(d, z, 3, order="confidence", seed=s)),
    ],
)
def test_an_unweighted_run_is_the_sampler_itself(sampler, steps, run):
    chain = chain3x6()
    proposal = MaskedProposal(chain.denoiser(), chain.length, sampler=sampler, steps=steps)
    last, path = run_chain(proposal, SEEDS)
    reference = chain.denoiser()
    want = run(reference, discrete.all_masked(len(SEEDS), chain.length, 3), SEEDS)
    assert torch.equal(last.x, want)
    assert len(path) == proposal.num_steps + 1
    assert proposal.cost().network_evaluations == reference.rows  # same rows evaluated as the cached sampler


def test_exact_guide_and_exact_value_give_zero_variance_weights():
    chain, tilted = _tilted()
    proposal = MaskedProposal(chain.denoiser(), chain.length, guide=tilted.denoiser())
    out = feynman_kac(
        proposal, tilted.reward, particles=4, populations=3, seeds=0, alpha=tilted.alpha, value=exact_value(tilted)
    )
    assert torch.allclose(out.log_normalizer, torch.full((3,), tilted.log_normalizer(), dtype=torch.float64))
    assert torch.allclose(out.log_weights, out.log_weights[:, :1].expand(-1, 4), atol=1e-10)
    assert torch.allclose(out.ess, torch.full_like(out.ess, 4.0))


def test_fk_steering_estimates_z_without_bias():
    chain, tilted = _tilted()
    proposal = MaskedProposal(chain.denoiser(), chain.length)
    out = feynman_kac(
        proposal, tilted.reward, particles=4, populations=3000, seeds=1, alpha=tilted.alpha, value=exact_value(tilted)
    )
    z_hat = torch.exp(out.log_normalizer)
    stderr = float(z_hat.std()) / math.sqrt(len(z_hat))
    assert abs(float(z_hat.mean()) - math.exp(tilted.log_normalizer())) < 4 * stderr


def test_transition_ratio_makes_ancestral_target_its_own_tilted_law():
    # with a guide, weights carry p/q: Ẑ is unbiased for E_{ancestral law}[exp(r/α)] (the sampler's law, exact)
    chain, tilted = _tilted()
    steps = 3
    law = exact_law(chain, "ancestral", steps)
    want = float((law * torch.exp(tilted.reward(chain.sequences()) / tilted.alpha)).sum())
    proposal = MaskedProposal(chain.denoiser(), chain.length, sampler="ancestral", steps=steps, guide=tilted.denoiser())
    out = feynman_kac(proposal, tilted.reward, particles=2, populations=3000, seeds=2, alpha=tilted.alpha)
    z_hat = torch.exp(out.log_normalizer)
    stderr = float(z_hat.std()) / math.sqrt(len(z_hat))
    assert abs(float(z_hat.mean()) - want) < 4 * stderr
    assert abs(want - math.exp(tilted.log_normalizer())) > 4 * stderr  # the ancestral law is not the chain's


def test_a_tempered_draw_is_corrected_by_its_weights():
    # tokens drawn at temperature 2 (q ≠ p): the weights carry p/q, so Ẑ stays unbiased for Z and the weighted
    # particles target the tilted law of the (exact) first-hitting sampler
    chain, tilted = _tilted()
    proposal = MaskedProposal(chain.denoiser(), chain.length, transform=lambda p: temperature(p, 2.0))
    out = feynman_kac(proposal, tilted.reward, particles=2, populations=3000, seeds=3, alpha=tilted.alpha)
    z_hat = torch.exp(out.log_normalizer)
    stderr = float(z_hat.std()) / math.sqrt(len(z_hat))
    assert abs(float(z_hat.mean()) - math.exp(tilted.log_normalizer())) < 4 * stderr


def test_soft_value_is_alpha_log_value():
    chain, tilted = _tilted()
    parts = MaskedProposal(chain.denoiser(), chain.length).start([0, 1])
    v, soft = exact_value(tilted)(parts), exact_soft_value(tilted)(parts)
    assert torch.allclose(soft, tilted.alpha * v)
    assert torch.allclose(v, torch.full((2,), tilted.log_normalizer(), dtype=torch.float64))


def test_populations_are_batch_invariant():
    chain, tilted = _tilted()

    def run(populations, seeds):
        proposal = MaskedProposal(chain.denoiser(), chain.length, prediction="sample")
        # ESS-triggered resampling: populations resample at different levels, yet each keeps its own uniforms
        return feynman_kac(
            proposal, tilted.reward, particles=5, populations=populations, seeds=seeds, alpha=0.8, ess_threshold=0.5
        )

    alone = run(1, [7])
    together = run(3, [3, 7, 9])
    assert not torch.equal(together.resampled[:, 0], together.resampled[:, 1]) or not torch.equal(
        together.resampled[:, 1], together.resampled[:, 2]
    )
    assert torch.equal(alone.resampled[:, 0], together.resampled[:, 1])
    assert torch.equal(alone.x[0], together.x[1])
    assert torch.allclose(alone.log_weights[0], together.log_weights[1])


def test_prompt_positions_are_kept():
    chain = chain3x6()
    prompt = torch.tensor([2, 3, 3, 0, 3, 3])
    proposal = MaskedProposal(chain.denoiser(), prompt=prompt)
    assert proposal.num_steps == 4
    last, _ = run_chain(proposal, [0, 1, 2])
    assert torch.equal(last.x[:, [0, 3]], torch.tensor([[2, 0]] * 3))


def test_renoising_then_the_exact_reverse_process_keeps_the_chain_law():
    # forward masking of exact draws, then first-hitting with the exact denoiser: the law is the chain's again
    chain, n = chain3x6(), 20_000
    proposal = MaskedProposal(chain.denoiser(), chain.length)
    proposal.start(list(range(n)))
    x = chain.sample(n, seed=4)
    parts = proposal.renoise(Particles(x, x, chain.length, 0.0, {}), 2)
    assert bool(((parts.x != 3).sum(-1) == 2).all())
    while parts.level < proposal.num_steps:
        parts = proposal.step(parts).particles
    assert tv(empirical_law(chain, parts.x), chain.law()) < 1.5 * monte_carlo_tv(chain.law(), n)


def test_ancestral_renoising_masks_at_the_schedules_rate():
    chain, n = chain3x6(), 4000
    proposal = MaskedProposal(chain.denoiser(), chain.length, sampler="ancestral", steps=4)
    proposal.start(list(range(n)))
    x = chain.sample(n, seed=5)
    parts = proposal.renoise(Particles(x, x, 4, 0.0, {}), 1)  # t = 0 -> t = 0.75 (linear): masked w.p. 0.75
    frac = float((parts.x == 3).to(torch.float64).mean())
    assert abs(frac - 0.75) < 4 * math.sqrt(0.75 * 0.25 / (n * chain.length))


def test_path_search_runs_on_masked_proposals():
    chain, tilted = _tilted()
    proposal = MaskedProposal(chain.denoiser(), chain.length)
    out = path_search(proposal, tilted.reward, n=8, branch=2, checkpoints=[2, 4], back=1, seeds=0, populations=4)
    assert torch.allclose(out.rewards, tilted.reward(out.x))
    assert out.cost.network_evaluations > 4 * 8 * chain.length  # the re-noised rows were evaluated again


def test_bad_options_are_named():
    chain = chain3x6()
    with pytest.raises(DiffsampleError, match="valid: first_hitting"):
        MaskedProposal(chain.denoiser(), 6, sampler="euler")
    with pytest.raises(DiffsampleError, match="steps"):
        MaskedProposal(chain.denoiser(), 6, sampler="ancestral")
    with pytest.raises(DiffsampleError, match="no tractable transition density"):
        MaskedProposal(chain.denoiser(), 6, sampler="ordered", steps=3, guide=chain.denoiser())
    with pytest.raises(DiffsampleError, match="one step per masked token"):
        MaskedProposal(chain.denoiser(), 6, steps=3)
