"""The exact chain beds: forward–backward against enumeration, metrics and exact sampler laws against closed
forms."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from diffsample.discrete.beds import chain as chains
from diffsample.discrete.beds.laws import exact_law
from diffsample.discrete.beds.metrics import chain_metrics, empirical_law, monte_carlo_tv

C = chains.chain3x6()


def _marginals(c: chains.MarkovChain) -> torch.Tensor:
    rows = [c.initial]
    for _ in range(c.length - 1):
        rows.append(rows[-1] @ c.transition)
    return torch.stack(rows)


def test_forward_backward_equals_enumeration() -> None:
    v = C.vocab_size
    z = torch.tensor([[v] * 6, [v, v, 0, v, v, 1], [2, v, v, v, v, 0], [1, 0, v, 2, 2, v]])
    assert torch.allclose(C.denoiser()(z, 0.3), chains.enumerated_posterior(C, z), atol=1e-14, rtol=0)
    assert torch.allclose(C.denoiser()(z[:1], 0.9)[0], _marginals(C), atol=1e-14, rtol=0)


def test_the_target_scores_zero_and_its_entropy_rate() -> None:
    m = chain_metrics(C, C.law())
    h = -(C.initial * C.initial.log()).sum()
    row_h = -(C.transition * C.transition.log()).sum(-1)
    h = h + sum(float(_marginals(C)[i] @ row_h) for i in range(C.length - 1))
    assert m["tv"] == 0 and abs(m["kl"]) < 1e-14 and m["transition_kl_rate"] < 1e-14 and m["unigram_error"] < 1e-15
    assert m["entropy_rate"] == pytest.approx(float(h) / C.length, rel=1e-12)
    assert m["nll"] == pytest.approx(m["entropy_rate"], rel=1e-12)


def test_metrics_of_the_product_of_marginals() -> None:
    """Independent positions with the chain's marginals: the same unigrams, the entropy of the marginals, KL
    by its definition, and the transition KL-rate from the product's bigrams ``Σ_i marg_i ⊗ marg_{i+1}``."""
    marg = _marginals(C)
    seqs = C.sequences()
    q = torch.stack([marg[i, seqs[:, i]] for i in range(C.length)]).prod(0)
    m = chain_metrics(C, q)
    h_prod = -float((marg * marg.log()).sum())
    assert m["entropy_rate"] == pytest.approx(h_prod / C.length, rel=1e-12)
    assert m["unigram_error"] < 1e-15
    kl = float((q * (q.log() - C.law().log())).sum())
    assert m["kl"] == pytest.approx(kl, rel=1e-12)
    pooled = sum(torch.outer(marg[i], marg[i + 1]) for i in range(C.length - 1))
    fitted = pooled / pooled.sum(-1, keepdim=True)
    rate = float((pooled.sum(-1) * (fitted * (fitted / C.transition).log()).sum(-1)).sum()) / (C.length - 1)
    assert m["transition_kl_rate"] == pytest.approx(rate, rel=1e-12)


def test_one_step_ancestral_is_the_product_of_marginals() -> None:
    marg = _marginals(C)
    seqs = C.sequences()
    q = torch.stack([marg[i, seqs[:, i]] for i in range(C.length)]).prod(0)
    assert torch.allclose(exact_law(C, "ancestral", 1), q, atol=1e-15, rtol=0)


@pytest.mark.parametrize("sampler", ["random", "confidence", "margin", "entropy", "first_hitting"])
def test_one_token_per_step_orders_that_read_only_visible_tokens_are_exact(sampler: str) -> None:
    assert torch.allclose(exact_law(C, sampler, C.length), C.law(), atol=1e-14, rtol=0)


def test_semi_autoregressive_blocks_with_one_token_per_step_are_exact() -> None:
    assert torch.allclose(exact_law(C, "confidence", 6, block_length=3), C.law(), atol=1e-14, rtol=0)


def test_two_step_random_order_law_in_closed_form() -> None:
    """A chain of length 2: one step reveals both positions independently (the product of the marginals), two
    steps reveal one, then the other given it (the chain itself)."""
    c = chains.MarkovChain(C.initial, C.transition, 2, "pair")
    marg = _marginals(c)
    q = torch.tensor(
        [float(marg[0, a] * marg[1, b]) for a, b in itertools.product(range(3), repeat=2)], dtype=torch.float64
    )
    assert torch.allclose(exact_law(c, "random", 1), q, atol=1e-15, rtol=0)
    assert torch.allclose(exact_law(c, "random", 2), c.law(), atol=1e-15, rtol=0)


def test_sampled_confidence_order_is_biased_even_one_token_per_step() -> None:
    assert chain_metrics(C, exact_law(C, "sampled_confidence", C.length))["tv"] > 0.5


def test_chain_sampling_and_the_monte_carlo_floor() -> None:
    n = 20_000
    law = C.law()
    tv = float(0.5 * (empirical_law(C, C.sample(n, seed=1)) - law).abs().sum())
    floor = monte_carlo_tv(law, n)
    assert 0.8 * floor < tv < 1.2 * floor
    # de Moivre's closed form against the binomial sum it replaces
    q = torch.tensor([0.3, 0.05, 0.65], dtype=torch.float64)
    direct = sum(math.comb(20, k) * p**k * (1 - p) ** (20 - k) * abs(k - 20 * p) for p in q.tolist() for k in range(21))
    assert monte_carlo_tv(q, 20) == pytest.approx(0.5 * direct / 20, rel=1e-12)
