"""Sampled orders (``order_temperature > 0``): their exact laws by summing the Plackett–Luce selection, against
closed forms and the sampler."""

from __future__ import annotations

import math

import pytest
import torch

from diffsample import discrete
from diffsample.discrete.beds import chain as chains
from diffsample.discrete.beds.laws import exact_law, plackett_luce_subsets
from diffsample.discrete.beds.metrics import empirical_law, monte_carlo_tv, tv

C6 = chains.chain3x6()
C = chains.MarkovChain(C6.initial, C6.transition, 4, "chain3x4")
N = 5000


def test_plackett_luce_subset_probabilities_by_hand() -> None:
    """Weights ``e^{a}`` = 1, 2, 3 (position 1 not a candidate): ``P({0, 2}) = 1/4 · 3/3 + 3/4 · 1/1`` … over the
    candidates 0, 2, 3 with weights 1, 2, 3 and two picks."""
    a = torch.log(torch.tensor([[1.0, 9.0, 2.0, 3.0]], dtype=torch.float64))
    cand = torch.tensor([[True, False, True, True]])
    rows, reveal, prob = plackett_luce_subsets(a, cand, 2, 1.0)
    got = {tuple(torch.nonzero(r)[:, 0].tolist()): float(p) for r, p in zip(reveal, prob, strict=True)}

    def pair(i: float, j: float, other: float) -> float:  # i then j, or j then i
        total = i + j + other
        return i / total * j / (j + other) + j / total * i / (i + other)

    assert got[(0, 2)] == pytest.approx(pair(1, 2, 3), abs=1e-15)
    assert got[(0, 3)] == pytest.approx(pair(1, 3, 2), abs=1e-15)
    assert got[(2, 3)] == pytest.approx(pair(2, 3, 1), abs=1e-15)
    assert math.isclose(sum(got.values()), 1.0, abs_tol=1e-15) and rows.tolist() == [0, 0, 0]


@pytest.mark.parametrize(("name", "temperature"), [("confidence", 0.2), ("sampled_confidence", 0.5), ("margin", 1.0)])
def test_sampled_orders_match_their_exact_laws(name: str, temperature: float) -> None:
    law = exact_law(C, name, 2, order_temperature=temperature)
    assert law.sum() == pytest.approx(1.0, abs=1e-12)
    assert tv(law, exact_law(C, name, 2)) > 0.005  # the temperature changes the law
    x = discrete.get(name)(
        C.denoiser(), discrete.all_masked(N, C.length, C.vocab_size), 2, seed=0, order_temperature=temperature
    )
    assert tv(empirical_law(C, x), law) < 1.25 * monte_carlo_tv(law, N)


def test_one_token_per_step_sampled_orders_of_visible_tokens_stay_exact_and_sampled_confidence_does_not() -> None:
    target = C.law()
    assert torch.allclose(exact_law(C, "entropy", C.length, order_temperature=0.3), target, atol=1e-14, rtol=0)
    biased = [tv(exact_law(C, "sampled_confidence", C.length, order_temperature=tau), target) for tau in (0.3, 3.0)]
    assert biased[0] > biased[1] > 0.005  # hotter orders select less on the drawn value: less bias


def test_an_infinitely_hot_order_is_the_random_order() -> None:
    hot = exact_law(C, "confidence", 2, order_temperature=1e12)
    assert torch.allclose(hot, exact_law(C, "random", 2), atol=1e-9, rtol=0)
    with pytest.raises(ValueError, match="order_temperature"):
        exact_law(C, "ancestral", 2, order_temperature=0.5)
