"""Tilted Markov chains against brute-force enumeration over all V^L sequences."""

from __future__ import annotations

import math

import pytest
import torch

from diffsample.discrete.beds import (
    chain3x6,
    chain4x8,
    count_reward,
    empirical_law,
    enumerated_tilt,
    exact_law,
    monte_carlo_tv,
    tilt_chain,
    tv,
)
from diffsample.errors import DiffsampleError, ShapeError


def _bigram_tilt(alpha: float = 0.7):
    chain = chain3x6()
    gen = torch.Generator().manual_seed(3)
    unary = torch.randn(chain.length, 3, generator=gen, dtype=torch.float64)
    pairwise = torch.randn(chain.length - 1, 3, 3, generator=gen, dtype=torch.float64)
    return chain, tilt_chain(chain, unary=unary, pairwise=pairwise, alpha=alpha)


def _brute(chain, rewards, alpha):
    seqs = chain.sequences()
    logw = chain.log_prob(seqs) + rewards / alpha
    return seqs, logw


def _partial(length: int, vocab: int, batch: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    z = torch.randint(0, vocab, (batch, length), generator=gen)
    hide = torch.rand(batch, length, generator=gen) < 0.6
    z = torch.where(hide, torch.full_like(z, vocab), z)
    z[0] = vocab  # all masked
    return z


def test_normaliser_and_law_equal_enumeration():
    chain, tilted = _bigram_tilt()
    seqs, logw = _brute(chain, tilted.reward(chain.sequences()), tilted.alpha)
    assert tilted.log_normalizer() == pytest.approx(float(torch.logsumexp(logw, 0)), abs=1e-12)
    assert torch.allclose(tilted.law(), torch.softmax(logw, 0), atol=1e-14)
    assert tilted.reward_mean() == pytest.approx(float((torch.softmax(logw, 0) * tilted.reward(seqs)).sum()), abs=1e-12)


def test_reward_is_the_sum_of_tables():
    chain = chain3x6()
    f = torch.tensor([0.0, 1.0, 2.5], dtype=torch.float64)
    g = torch.zeros(3, 3, dtype=torch.float64)
    g[2, 2] = -1.0
    tilted = tilt_chain(chain, unary=f, pairwise=g, alpha=2.0)
    x = torch.tensor([[2, 2, 1, 0, 2, 2]])
    assert float(tilted.reward(x)[0]) == pytest.approx(4 * 2.5 + 1.0 - 2.0)


def test_tilted_denoiser_equals_enumeration():
    chain, tilted = _bigram_tilt()
    z = _partial(chain.length, 3, 12, seed=0)
    got = tilted.denoiser()(z, 0.5)
    law, seqs = tilted.law(), chain.sequences()
    for b in range(z.shape[0]):
        vis = z[b] != 3
        w = law * (seqs[:, vis] == z[b, vis]).all(-1)
        for i in range(chain.length):
            want = torch.zeros(3, dtype=torch.float64).index_add_(0, seqs[:, i], w) / w.sum()
            assert torch.allclose(got[b, i], want, atol=1e-12)


def test_value_equals_enumerated_conditional_expectation():
    chain, tilted = _bigram_tilt()
    z = _partial(chain.length, 3, 10, seed=1)
    seqs, base = chain.sequences(), chain.law()
    ew = torch.exp(tilted.reward(seqs) / tilted.alpha)
    got = tilted.log_value(z)
    for b in range(z.shape[0]):
        vis = z[b] != 3
        fits = (seqs[:, vis] == z[b, vis]).all(-1)
        want = math.log(float((base * fits * ew).sum() / (base * fits).sum()))
        assert float(got[b]) == pytest.approx(want, abs=1e-11)
    assert float(got[0]) == pytest.approx(tilted.log_normalizer(), abs=1e-12)  # all masked: V = Z
    full = seqs[:5]
    assert torch.allclose(tilted.log_value(full), tilted.reward(full) / tilted.alpha, atol=1e-12)


def test_exact_sampling_from_the_tilted_kernels():
    chain = chain3x6()
    tilted = tilt_chain(chain, unary=count_reward([2], 3), alpha=0.5)
    n = 40_000
    got = tv(empirical_law(chain, tilted.sample(n, seed=2)), tilted.law())
    assert got < 2.0 * monte_carlo_tv(tilted.law(), n)


def test_enumerated_tilt_agrees_with_the_additive_one():
    chain, tilted = _bigram_tilt(alpha=1.3)
    enum = enumerated_tilt(chain, tilted.reward, alpha=1.3)
    assert enum.log_normalizer() == pytest.approx(tilted.log_normalizer(), abs=1e-12)
    z = _partial(chain.length, 3, 8, seed=4)
    assert torch.allclose(enum.log_value(z), tilted.log_value(z), atol=1e-11)
    assert torch.allclose(enum.denoiser()(z, 0.3), tilted.denoiser()(z, 0.3), atol=1e-12)


def test_non_additive_reward_by_enumeration():
    chain = chain4x8()

    def at_least_three_twos(x: torch.Tensor) -> torch.Tensor:
        return ((x == 2).sum(-1) >= 3).to(torch.float64) * 2.0

    enum = enumerated_tilt(chain, at_least_three_twos, alpha=0.5)
    seqs, logw = _brute(chain, at_least_three_twos(chain.sequences()), 0.5)
    assert enum.log_normalizer() == pytest.approx(float(torch.logsumexp(logw, 0)), abs=1e-12)
    z = torch.full((1, 8), 4)
    z[0, :2] = torch.tensor([2, 2])
    fits = (seqs[:, :2] == 2).all(-1)
    q = torch.softmax(torch.where(fits, logw, float("-inf")), 0)
    want = torch.zeros(4, dtype=torch.float64).index_add_(0, seqs[:, 5], q)
    assert torch.allclose(enum.denoiser()(z, 0.5)[0, 5], want, atol=1e-12)


def test_first_hitting_with_the_tilted_denoiser_samples_the_tilted_law():
    chain, tilted = _bigram_tilt()
    # exact_law only asks its bed for vocab_size, length and denoiser(): the tilted bed stands in for the chain
    law = exact_law(tilted, "first_hitting", chain.length)
    assert tv(law, tilted.law()) < 1e-12


def test_bad_input_is_named():
    chain = chain3x6()
    with pytest.raises(ShapeError, match="unary"):
        tilt_chain(chain, unary=torch.zeros(4))
    with pytest.raises(DiffsampleError, match="alpha"):
        tilt_chain(chain, alpha=0.0)
    with pytest.raises(ShapeError, match="tokens"):
        count_reward([5], 3)
    with pytest.raises(DiffsampleError, match="one finite value"):
        enumerated_tilt(chain, lambda x: torch.zeros(3))
