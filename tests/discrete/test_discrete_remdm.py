"""ReMDM (Wang et al. 2025) on the enumerable chain: the confidence strategy and ReMDM-loop against their exact
laws, the kernel's marginal property with the exact joint posterior, and the loop's invariance defect."""

from __future__ import annotations

import pytest
import torch

from diffsample import discrete
from diffsample.discrete.beds import chain as chains
from diffsample.discrete.beds.laws import exact_law, law_of_states, masked_law, remdm_step_law
from diffsample.discrete.beds.metrics import empirical_law, monte_carlo_tv, tv
from diffsample.discrete.remdm import confidence_remask_weights, loop_schedule

C6 = chains.chain3x6()
C = chains.MarkovChain(C6.initial, C6.transition, 4, "chain3x4")  # small: the confidence law carries histories
N = 5000
LOOP = (0.55, 0.05, 0.5)


def _remdm(steps: int, **options) -> tuple[torch.Tensor, discrete.MaskedDenoiser]:
    d = C.denoiser()
    return discrete.remdm(d, discrete.all_masked(N, C.length, C.vocab_size), steps, seed=0, **options), d


@pytest.mark.parametrize(
    ("steps", "options"),
    [(3, {"strategy": "confidence"}), (8, {"loop": LOOP, "eta": 0.3}), (8, {"loop": LOOP, "strategy": "rescale"})],
)
def test_remdm_strategies_match_their_exact_laws_with_counted_nfe(steps: int, options: dict) -> None:
    law = exact_law(C, "remdm", steps, **options)
    assert law.sum() == pytest.approx(1.0, abs=1e-12)
    assert tv(law, exact_law(C, "ancestral", steps)) > 0.01  # remasking changes the law
    x, d = _remdm(steps, cache=False, **options)
    assert tv(empirical_law(C, x), law) < 1.25 * monte_carlo_tv(law, N)
    assert d.nfe == steps and d.rows == N * steps  # one counted call per step without the cache


def test_confidence_weights_are_a_softmax_of_minus_the_confidence_over_revealed_tokens() -> None:
    psi = torch.tensor([[0.9, torch.inf, 0.2, 0.5], [torch.inf] * 4], dtype=torch.float64)
    w = confidence_remask_weights(psi)
    e = torch.exp(-torch.tensor([0.9, 0.2, 0.5], dtype=torch.float64))
    assert torch.allclose(w[0, [0, 2, 3]], e / e.sum(), atol=1e-15, rtol=0) and w[0, 1] == 0
    assert torch.equal(w[1], torch.zeros(4, dtype=torch.float64))


def test_loop_schedule_is_the_authors_piecewise_linear_alpha() -> None:
    t_on, t_off, a_on = 0.55, 0.05, 0.9
    t = torch.linspace(0, 1, 201, dtype=torch.float64)
    a = loop_schedule(discrete.linear(), t_on, t_off, a_on).alpha(t)
    expected = torch.where(
        t > t_on, a_on * (1 - t) / (1 - t_on), torch.where(t < t_off, 1 - t * (1 - a_on) / t_off, a_on)
    )
    assert torch.allclose(a, expected, atol=1e-12, rtol=0)
    with pytest.raises(ValueError, match="t_off < t_on"):
        loop_schedule(discrete.linear(), 0.1, 0.5, 0.9)


@pytest.mark.parametrize(("t", "s", "options"), [(0.6, 0.3, {"eta": 0.3}), (0.9, 0.5, {"strategy": "rescale"})])
def test_the_kernel_with_the_joint_posterior_maps_q_t_to_q_s_exactly(t: float, s: float, options: dict) -> None:
    """Wang et al. 2025: ``q_σ(z_s | z_t, x0)`` has the forward marginals ``q(z_s | x0)`` for any ``σ ≤ σ_max``, so
    with ``x0`` from the exact joint posterior the masked law ``q_{α_t}`` goes to ``q_{α_s}``; the sampler's
    per-position draws do not (they factorise the joint)."""
    z, w = masked_law(C, 1 - t)
    target = law_of_states(*masked_law(C, 1 - s), C.vocab_size)
    joint = law_of_states(*remdm_step_law(C, z, w, t, s, joint=True, **options), C.vocab_size)
    factorised = law_of_states(*remdm_step_law(C, z, w, t, s, **options), C.vocab_size)
    assert tv(joint, target) < 1e-13 and tv(factorised, target) > 1e-3


def test_the_loop_kernel_keeps_q_alpha_up_to_second_order() -> None:
    """Inside the loop (α fixed) the single-position moves satisfy detailed balance for ``q_α`` (reveal/remask
    ratio ``α/(1 − α)``, tokens from the exact conditional); only steps that change two positions at once break
    it, so the defect is ``O(σ²)``: halving ``σ`` divides it by about 4. The joint kernel keeps ``q_α`` exactly."""
    schedule = loop_schedule(discrete.linear(), *LOOP)
    z, w = masked_law(C, LOOP[2])
    q = law_of_states(z, w, C.vocab_size)

    def defect(eta: float, joint: bool = False) -> float:
        out = remdm_step_law(C, z, w, 0.3, 0.29, schedule=schedule, eta=eta, joint=joint)
        return tv(law_of_states(*out, C.vocab_size), q)

    assert defect(0.2, joint=True) < 1e-13
    ratio = defect(0.1) / defect(0.05)
    assert 3.5 < ratio < 4.5, ratio
