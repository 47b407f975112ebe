"""Classifier-free guidance for masked denoisers against its closed form on two exact chains."""

from __future__ import annotations

import torch

from diffsample import discrete
from diffsample.discrete.beds import chain as chains
from diffsample.discrete.beds.laws import exact_law

COND = chains.chain3x6()
UNCOND = chains.MarkovChain(
    torch.tensor([1 / 3] * 3, dtype=torch.float64),
    torch.tensor([[0.4, 0.3, 0.3], [0.3, 0.4, 0.3], [0.3, 0.3, 0.4]], dtype=torch.float64),
    6,
    "loose",
)


def test_guided_probabilities_are_the_per_position_tilt() -> None:
    v = 3
    z = torch.tensor([[v, v, 0, v, v, 1], [v] * 6])
    w = 1.5
    guided = discrete.masked_cfg(COND.denoiser(), UNCOND.denoiser(), w)
    p = guided(z, 0.5)
    p_c, p_u = COND.denoiser()(z, 0.5), UNCOND.denoiser()(z, 0.5)
    tilt = p_c ** (1 + w) * p_u ** (-w)
    tilt = tilt / tilt.sum(-1, keepdim=True)
    hidden = z == v
    assert torch.allclose(p[hidden], tilt[hidden], atol=1e-14, rtol=0)
    assert guided.nfe == 2 and guided.time_free and torch.equal(p[0, 2], torch.tensor([1.0, 0, 0], dtype=torch.float64))


def test_zero_scale_is_the_conditional_model_and_sampling_it_one_token_per_step_is_exact() -> None:
    z = discrete.all_masked(1, 6, 3)
    guided = discrete.masked_cfg(COND.denoiser(), UNCOND.denoiser(), 0.0)
    assert torch.allclose(guided(z, 1.0), COND.denoiser()(z, 1.0), atol=1e-15, rtol=0)
    x = discrete.ordered(guided, discrete.all_masked(4, 6, 3), 6, order="random", seed=0)
    y = discrete.ordered(COND.denoiser(), discrete.all_masked(4, 6, 3), 6, order="random", seed=0)
    assert torch.equal(x, y)
    assert torch.allclose(exact_law(COND, "random", 6), COND.law(), atol=1e-14, rtol=0)
