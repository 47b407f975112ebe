"""The reference Kneser–Ney n-gram model against closed forms worked by hand on toy corpora."""

from __future__ import annotations

import math

import pytest
import torch

from diffsample.discrete.ngram import fit_kneser_ney, sequence_entropy


def test_bigram_kneser_ney_matches_the_hand_computed_probabilities() -> None:
    """Corpus ``abab`` over {a, b, c}, D = ½. Continuation counts N₁₊(·a) = N₁₊(·b) = 1, N₁₊(·c) = 0, so
    P₁(a) = P₁(b) = (1 − ½)/2 + ½·2/2·⅓ = 5/12 and P₁(c) = 1/6; after ``a`` (c(ab) = 2, one type)
    P₂(b | a) = (2 − ½)/2 + ½·1/2·5/12 = 41/48 and P₂(a | a) = ½·1/2·5/12 = 5/48; ``c`` was never a context,
    so P₂(· | c) = P₁."""
    m = fit_kneser_ney(torch.tensor([0, 1, 0, 1]), 3, order=2, discounts=(0.5, 0.5))
    p = m.log_probs(torch.tensor([[0, 1], [0, 0], [2, 2]])).exp()
    expected = torch.tensor([[5 / 12, 41 / 48], [5 / 12, 5 / 48], [1 / 6, 1 / 6]], dtype=torch.float64)
    assert torch.allclose(p, expected, atol=1e-15)


def test_trigram_backs_off_through_every_order_and_each_level_is_a_distribution() -> None:
    stream = torch.tensor([0, 1, 2, 0, 1, 1, 2, 3, 0, 1, 2, 2])
    m = fit_kneser_ney(stream, 4, order=3)
    for a in range(4):
        for b in range(4):
            x = torch.tensor([[a, b, w] for w in range(4)])
            assert m.log_probs(x)[:, 2].exp().sum().item() == pytest.approx(1.0, abs=1e-12)
    # Ney's discount of the top order: n1 / (n1 + 2 n2) from the trigram counts (012 occurs twice, eight others once)
    assert m.levels[2].discount == pytest.approx(8 / (8 + 2 * 1))


def test_sequence_entropy_of_known_texts() -> None:
    x = torch.tensor([[0, 0, 0, 0], [0, 1, 2, 3], [0, 0, 1, 1]])
    assert torch.allclose(sequence_entropy(x, 5), torch.tensor([0.0, math.log(4), math.log(2)], dtype=torch.float64))
