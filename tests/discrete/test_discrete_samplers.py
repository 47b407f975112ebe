"""Masked samplers against the exact laws of the chain bed, and the noise, budget and caching conventions."""

from __future__ import annotations

import pytest
import torch

from diffsample import discrete
from diffsample.discrete.beds import chain as chains
from diffsample.discrete.beds.laws import exact_law
from diffsample.discrete.beds.metrics import empirical_law, monte_carlo_tv, tv

C = chains.chain3x6()
N = 6000
CASES = [
    ("ancestral", 3, {}),
    ("ancestral", 2, {"draw": "gumbel"}),
    ("random", 3, {}),
    ("confidence", 2, {}),
    ("margin", 4, {}),
    ("entropy", 3, {}),
    ("sampled_confidence", 3, {}),
    ("first_hitting", None, {}),
]


def _run(name: str, steps: int | None, batch: int, **options) -> torch.Tensor:
    return discrete.get(name)(
        C.denoiser(), discrete.all_masked(batch, C.length, C.vocab_size), steps, seed=0, **options
    )


@pytest.mark.parametrize(("name", "steps", "options"), CASES)
def test_sampler_output_law_is_the_enumerated_law(name: str, steps: int | None, options: dict) -> None:
    """The empirical law of N draws sits at the Monte-Carlo floor of the exact law (a wrong kernel would sit far
    above: the laws of different samplers differ by TV 0.1–0.7)."""
    law = exact_law(C, name, steps)
    assert tv(empirical_law(C, _run(name, steps, N, **options)), law) < 1.25 * monte_carlo_tv(law, N)


@pytest.mark.parametrize("name", discrete.available())
def test_sample_i_is_the_same_in_any_batch_and_never_a_mask(name: str) -> None:
    steps = None if discrete.spec(name).own_steps else 3
    big, solo = _run(name, steps, 8), _run(name, steps, 1)
    assert torch.equal(big[:1], solo) and (big < C.vocab_size).all()


def test_caching_reuses_unchanged_rows_of_a_time_free_model() -> None:
    cached, plain = C.denoiser(), C.denoiser()
    z = discrete.all_masked(4, C.length, C.vocab_size)
    a = discrete.ancestral(cached, z, 100, seed=5)
    b = discrete.ancestral(plain, z, 100, seed=5, cache=False)
    assert torch.equal(a, b) and plain.nfe == 100 and plain.rows == 400
    # a call only when some row changed, and only on the changed rows: at most one row evaluation per reveal step
    assert cached.nfe < 100 and cached.rows <= 4 * C.length + 4


def test_time_conditioned_models_see_their_times_and_are_never_cached() -> None:
    seen: list[torch.Tensor] = []

    def model(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        seen.append(t.clone())
        return torch.zeros(*z.shape, 2)

    d = discrete.as_masked_denoiser(model, 2)
    discrete.ancestral(d, discrete.all_masked(2, 4, 2), 4, schedule=discrete.cosine())
    assert d.nfe == 4 and [float(t[0]) for t in seen] == [1.0, 0.75, 0.5, 0.25]
    seen.clear()
    discrete.ordered(d, discrete.all_masked(1, 4, 2), 2, order="random", schedule=discrete.linear())
    assert [float(t[0]) for t in seen] == [1.0, 0.5]  # t = α⁻¹(1 − masked fraction)


def test_first_hitting_reveal_times_follow_the_closed_form() -> None:
    """With ``L`` masked tokens on the linear schedule, the first reveal time is ``u^{1/L}``: mean ``L/(L+1)``."""
    n, length = 4000, 5
    first: list[torch.Tensor] = []

    def record(info: dict) -> None:
        if info["i"] == 0:
            first.append(info["t"])

    d = discrete.as_masked_denoiser(lambda z, t: torch.zeros(*z.shape, 2), 2, time_free=True)
    discrete.first_hitting(d, discrete.all_masked(n, length, 2), seed=1, callback=record)
    s = first[0]
    assert abs(float(s.mean()) - length / (length + 1)) < 4 * float(s.std()) / n**0.5
    assert d.nfe == length


def test_visible_tokens_stay_and_blocks_fill_in_order() -> None:
    v = C.vocab_size
    z = torch.tensor([[2, v, v, v, v, 0]])
    revealed: list[torch.Tensor] = []
    out = discrete.ordered(
        C.denoiser(),
        z,
        4,
        block_length=3,
        seed=0,
        callback=lambda info: revealed.append(torch.nonzero(info["revealed"][0])[:, 0]),
    )
    assert out[0, 0] == 2 and out[0, 5] == 0 and (out < v).all()
    assert all(int(r.max()) < 3 for r in revealed[:2]) and all(int(r.min()) >= 3 for r in revealed[2:] if len(r))


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="order"):
        discrete.ordered(C.denoiser(), discrete.all_masked(1, 6, 3), 3, order="best")
    with pytest.raises(ValueError, match="multiple"):
        discrete.ordered(C.denoiser(), discrete.all_masked(1, 6, 3), 4, block_length=2)
    with pytest.raises(ValueError, match="too few"):
        discrete.first_hitting(C.denoiser(), discrete.all_masked(1, 6, 3), 4)
    with pytest.raises(KeyError, match="valid masked samplers"):
        discrete.get("nope")


def test_tau_leaping_is_ancestral_on_the_linear_schedule_and_its_own_law_on_cosine() -> None:
    assert torch.allclose(exact_law(C, "tau_leaping", 4), exact_law(C, "ancestral", 4), atol=1e-15, rtol=0)
    cos = discrete.cosine()
    law = exact_law(C, "tau_leaping", 3, schedule=cos)
    assert tv(law, exact_law(C, "ancestral", 3, schedule=cos)) > 0.01
    x = discrete.get("tau_leaping")(C.denoiser(), discrete.all_masked(N, 6, 3), 3, seed=0, schedule=cos)
    assert tv(empirical_law(C, x), law) < 1.25 * monte_carlo_tv(law, N)


def test_reveal_rate_by_autograd_matches_the_closed_form() -> None:
    t = torch.tensor([0.2, 0.5, 0.9], dtype=torch.float64)
    rate = discrete.cosine().reveal_rate(t)
    closed = (torch.pi / 2) * torch.cos(torch.pi / 2 * t) / torch.sin(torch.pi / 2 * t)
    assert torch.allclose(rate, closed, rtol=1e-13, atol=0)


def test_entropy_budget_counts_by_hand() -> None:
    from diffsample.discrete.entropy_bounded import entropy_budget_counts

    h1 = -2 * 0.5 * torch.log(torch.tensor(0.5, dtype=torch.float64))  # entropy of a fair coin
    p = torch.tensor([[[1.0, 0.0], [0.5, 0.5], [0.5, 0.5], [0.9, 0.1]]], dtype=torch.float64)
    cand = torch.tensor([[True, True, True, True]])
    scores = -discrete.categorical.entropy(p)
    # sorted by entropy: 0 (H 0), 3 (H 0.325), 1, 2 (ln 2 each); Σ H − max H: 0, 0, 0.325, 0.325 + ln 2
    assert int(entropy_budget_counts(p, cand, scores, 0.0)[0]) == 2
    assert int(entropy_budget_counts(p, cand, scores, 0.33)[0]) == 3
    assert int(entropy_budget_counts(p, cand, scores, 0.33 + float(h1))[0]) == 4
    assert int(entropy_budget_counts(p, torch.zeros_like(cand), scores, 1.0)[0]) == 0


@pytest.mark.parametrize("gamma", [0.0, 0.3, 1.0])
def test_entropy_bounded_matches_its_exact_law_and_is_exact_at_zero_budget(gamma: float) -> None:
    law = exact_law(C, "entropy_bounded", gamma=gamma)
    if gamma == 0.0:
        assert torch.allclose(law, C.law(), atol=1e-14, rtol=0)
    steps = torch.zeros(N)

    def count(info: dict) -> None:
        steps.add_(info["revealed"].any(-1).float())

    x = discrete.entropy_bounded(C.denoiser(), discrete.all_masked(N, 6, 3), gamma=gamma, seed=0, callback=count)
    assert tv(empirical_law(C, x), law) < 1.25 * monte_carlo_tv(law, N)
    if gamma == 0.0:
        assert bool((steps == 6).all())
    if gamma >= 1.0:
        assert float(steps.mean()) < 5  # a budget buys fewer steps per sequence


def test_remdm_without_remasking_is_ancestral() -> None:
    assert torch.allclose(exact_law(C, "remdm", 4, eta=0.0), exact_law(C, "ancestral", 4), atol=1e-15, rtol=0)
    a = discrete.ancestral(C.denoiser(), discrete.all_masked(64, 6, 3), 4, seed=3)
    assert torch.equal(discrete.remdm(C.denoiser(), discrete.all_masked(64, 6, 3), 4, eta=0.0, seed=3), a)


@pytest.mark.parametrize(("strategy", "eta", "window"), [("cap", 0.3, None), ("rescale", 0.8, (0.3, 0.9))])
def test_remdm_matches_its_exact_law(strategy: str, eta: float, window) -> None:
    law = exact_law(C, "remdm", 4, strategy=strategy, eta=eta, window=window)
    assert tv(law, exact_law(C, "ancestral", 4)) > 0.01  # remasking changes the law
    x = discrete.remdm(C.denoiser(), discrete.all_masked(N, 6, 3), 4, strategy=strategy, eta=eta, window=window, seed=0)
    assert tv(empirical_law(C, x), law) < 1.25 * monte_carlo_tv(law, N)


def test_remask_probability_closed_forms() -> None:
    from diffsample.discrete.remdm import remask_probability

    lin = discrete.linear()
    t, s = torch.tensor(0.5, dtype=torch.float64), torch.tensor(0.25, dtype=torch.float64)
    # σ_max = (1 − α_s)/α_t = 0.25/0.5
    assert float(remask_probability(lin, t, s, "rescale", 0.5)) == pytest.approx(0.25)
    assert float(remask_probability(lin, t, s, "cap", 0.1)) == pytest.approx(0.1)
    assert float(remask_probability(lin, t, s, "cap", 0.9, window=(0.6, 1.0))) == 0.0
    assert float(remask_probability(lin, t, torch.tensor(0.0, dtype=torch.float64), "cap", 0.9)) == 0.0
