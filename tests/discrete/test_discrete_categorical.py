"""Categorical primitives against values computed by hand, and the draws against their exact laws."""

from __future__ import annotations

import math

import pytest
import torch

from diffsample.discrete import categorical as cat
from diffsample.discrete.random import SeededUniforms

P = torch.tensor([0.5, 0.2, 0.2, 0.1], dtype=torch.float64)


def _kept(q: torch.Tensor) -> list[int]:
    return torch.nonzero(q > 0)[:, 0].tolist()


def test_truncations_keep_the_sets_their_rules_name() -> None:
    assert _kept(cat.top_k(P, 2)) == [0, 1]  # tie between ids 1 and 2 goes to the lower id
    assert _kept(cat.top_p(P, 0.7)) == [0, 1]  # 0.5 + 0.2 reaches 0.7
    assert _kept(cat.top_p(P, 0.71)) == [0, 1, 2]
    assert _kept(cat.min_p(P, 0.4)) == [0, 1, 2]  # 0.4 · 0.5 = 0.2
    assert _kept(cat.epsilon_cutoff(P, 0.15)) == [0, 1, 2]
    assert _kept(cat.epsilon_cutoff(P, 0.9)) == [0]  # the argmax always stays
    h = -(0.5 * math.log(0.5) + 0.4 * math.log(0.2) + 0.1 * math.log(0.1))
    assert float(cat.entropy(P)) == pytest.approx(h, rel=1e-15)
    # η cut-off: min(0.3, √0.3 e^{−H}) ≈ 0.1617 keeps the three largest
    assert 0.1 < min(0.3, math.sqrt(0.3) * math.exp(-h)) < 0.2 and _kept(cat.eta_cutoff(P, 0.3)) == [0, 1, 2]
    # typical: |−log p − H| = 0.527, 0.389, 0.389, 1.082; mass 0.5 needs ids 1, 2 then 0
    assert _kept(cat.typical(P, 0.5)) == [0, 1, 2] and _kept(cat.typical(P, 0.3)) == [1, 2]
    kept = cat.top_k(P, 3)
    assert torch.allclose(kept, torch.tensor([5, 2, 2, 0], dtype=torch.float64) / 9, atol=0)


def test_top_h_keeps_the_greedy_prefix_within_the_entropy_bound() -> None:
    # prefix entropies: {0}: 0, {0,1}: H(5/7, 2/7) = 0.598, {0,1,2}: 0.965, all: H(P) = 1.221
    h2 = -(5 / 7 * math.log(5 / 7) + 2 / 7 * math.log(2 / 7))
    alpha = (h2 + 0.01) / float(cat.entropy(P))
    assert _kept(cat.top_h(P, alpha)) == [0, 1]
    assert _kept(cat.top_h(P, (h2 - 0.01) / float(cat.entropy(P)))) == [0]
    assert _kept(cat.top_h(P, 1.0)) == [0, 1, 2, 3]


def test_temperature_closed_form() -> None:
    q = cat.temperature(P, 0.5)
    assert torch.allclose(q, P**2 / (P**2).sum(), rtol=1e-14, atol=0)
    assert torch.equal(cat.temperature(P, 0.0), torch.tensor([1.0, 0, 0, 0], dtype=torch.float64))
    assert torch.allclose(cat.temperature(P, 1.0), P, rtol=1e-14, atol=0)


def test_inverse_cdf_on_a_uniform_grid_gives_the_exact_law() -> None:
    n = 10_000
    u = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    p = torch.tensor([0.3, 0.0, 0.45, 0.25], dtype=torch.float64)
    counts = torch.bincount(cat.inverse_cdf(p.expand(n, -1), u), minlength=4)
    assert counts.tolist() == [3000, 0, 4500, 2500]
    # rounding at the top end never lands on a trailing zero-probability category
    assert int(cat.inverse_cdf(torch.tensor([0.5, 0.5, 0.0], dtype=torch.float64), torch.tensor(1.0))) == 1


def test_gumbel_max_draws_the_law_and_never_a_zero() -> None:
    n = 40_000
    p = torch.tensor([0.6, 0.0, 0.3, 0.1], dtype=torch.float64)
    x = cat.gumbel_max(p.expand(n, -1), SeededUniforms(3)(n, 4))
    freq = torch.bincount(x, minlength=4).double() / n
    assert freq[1] == 0 and torch.allclose(freq, p, atol=4 * math.sqrt(0.25 / n))


def test_float32_gumbel_cannot_draw_weights_below_its_grid() -> None:
    """The published float32 draw: a category of weight 1e-9 against one of weight ≈ 1 needs ``−log u < 1e-9·E``,
    below the smallest positive value (≈ 6e-8) on torch.rand's 2⁻²⁴ grid, so it never wins unless the other
    exponential exceeds 60 (impossible: at most −log(1e-10) ≈ 23). float64 draws it at its rate."""
    w = torch.tensor([1 - 1e-9, 1e-9], dtype=torch.float64)
    u = torch.tensor([[0.5, 1 - 2.0**-24]], dtype=torch.float64)  # the best float32 case for category 1
    assert int(cat.gumbel_max(w, u, "float32")) == 0
    u64 = torch.tensor([[0.5, 1 - 1e-12]], dtype=torch.float64)
    assert int(cat.gumbel_max(w, u64, "float64")) == 1
    with pytest.raises(ValueError, match="precision"):
        cat.gumbel_max(w, u, "float16")


@pytest.mark.slow
def test_the_enumerated_float32_law_is_the_law_of_the_float32_draw() -> None:
    """The benchmark's exact float32 law (2²⁴ grid values) against 400 000 float32 draws, at weights where the
    draws resolve it."""
    from benchmarks.suites.discrete import _float32_exponentials, float32_step_law

    vocab, r, n = 8, 0.3, 400_000
    p_mask, p_common, p_rare = float32_step_law(vocab, r, _float32_exponentials())
    w = torch.tensor([0.5 * r] + [0.5 * r / (vocab - 1)] * (vocab - 1) + [1 - r], dtype=torch.float64)
    freq = (
        torch.bincount(
            cat.gumbel_max(w.expand(n, -1), SeededUniforms(1)(n, vocab + 1), "float32"), minlength=vocab + 1
        ).double()
        / n
    )
    tol = 4 * math.sqrt(0.25 / n)
    assert abs(float(freq[vocab]) - p_mask) < tol and abs(float(freq[0]) - p_common) < tol
    assert abs(float(freq[1:vocab].sum()) - p_rare) < tol
