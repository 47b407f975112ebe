"""The chain fitted to the stdlib corpus: a valid chain, its closed-form entropy rate and forward–backward against
enumeration, and its sample metrics at the Monte-Carlo floor for an exact sampler."""

from __future__ import annotations

import pytest
import torch

from diffsample import discrete
from diffsample.discrete.beds import chain as chains
from diffsample.discrete.beds.fitted import exact_entropy_rate, fitted_text_chain, marginals, sample_metrics
from diffsample.discrete.corpus import VOCAB_SIZE

SHORT = fitted_text_chain(length=3)


def test_the_fitted_chain_is_a_positive_stochastic_matrix_registered_as_text128() -> None:
    c = chains.get_chain("text128")
    assert (c.name, c.length, c.vocab_size) == ("text128", 128, VOCAB_SIZE)
    assert torch.allclose(c.transition.sum(-1), torch.ones(VOCAB_SIZE, dtype=torch.float64), atol=1e-14, rtol=0)
    assert float(c.initial.sum()) == pytest.approx(1.0, abs=1e-14)
    assert bool((c.transition > 0).all()) and bool((c.initial > 0).all())
    assert torch.equal(c.transition, SHORT.transition)
    # a letter is far more likely after "q" to be "u" than anything else: the fit reflects the corpus
    assert int(c.transition[ord("q") - ord("a")].argmax()) == ord("u") - ord("a")
    with pytest.raises(ValueError, match="smoothing"):
        fitted_text_chain(smoothing=0.0)


def test_exact_entropy_rate_equals_enumeration() -> None:
    law = SHORT.law()
    assert float(law.sum()) == pytest.approx(1.0, abs=1e-12)
    brute = float(-(law * law.log()).sum()) / SHORT.length
    assert exact_entropy_rate(SHORT) == pytest.approx(brute, rel=1e-12)


def test_forward_backward_equals_enumerated_posterior() -> None:
    v = SHORT.vocab_size
    z = torch.tensor([[v, v, v], [v, 0, v], [4, v, v], [v, v, 36], [19, v, 4]])
    exact = chains.enumerated_posterior(SHORT, z)
    assert torch.allclose(SHORT.denoiser()(z, 0.5), exact, atol=1e-13, rtol=0)
    assert torch.allclose(exact[0], marginals(SHORT), atol=1e-13, rtol=0)


def test_one_token_per_step_sits_at_the_monte_carlo_floor() -> None:
    c = fitted_text_chain(length=32)
    n = 256
    direct = sample_metrics(c, c.sample(n, seed=1))
    x = discrete.get("random")(c.denoiser(), discrete.all_masked(n, c.length, c.vocab_size), c.length, seed=1)
    walked = sample_metrics(c, x)
    # the plug-in transition KL-rate of exact draws is its positive Monte-Carlo bias, not zero
    assert direct["transition_kl_rate"] > 0
    assert walked["transition_kl_rate"] == pytest.approx(direct["transition_kl_rate"], rel=0.15)
    assert walked["nll"] == pytest.approx(exact_entropy_rate(c), rel=0.03)
    # two tokens at once from the exact marginals ignore their dependence: clearly above the floor
    coarse = discrete.get("random")(c.denoiser(), discrete.all_masked(n, c.length, c.vocab_size), 2, seed=1)
    assert sample_metrics(c, coarse)["transition_kl_rate"] > 2 * direct["transition_kl_rate"]


def test_the_benchmark_table_names_the_best_sampler_per_budget() -> None:
    from benchmarks.suites.discrete import fitted_table

    table = fitted_table(["random", "ancestral"], n=16, budgets=[4, 8], seed=0)
    assert "(exact draws)" in table and "NFE ≤ 4:" in table and "NFE ≤ 8:" in table
