"""SVDD: soft value-based decoding (Li et al. 2024, "Derivative-Free Guidance in Continuous and Discrete Diffusion
Models with Soft Value-Based Decoding", Alg. 1).

At every level each sample draws ``M`` candidates from the model's transition, ``x^m_{i+1} ~ p(· | x_i)``, scores
them with a soft value ``v(x^m_{i+1})`` (default the reward of the clean prediction, ``r(x̂0)``: SVDD-PM; or a given
value function) and keeps one with probability ``∝ exp(v/α)`` (eq. 6 with the importance weights of the model's own
proposal). ``α → 0`` keeps the argmax (the greedy version used in practice; ``alpha=0`` here). The last level is
scored with the reward of the sample itself.

Each sample is a population of ``M`` slots (:mod:`.engine`): the candidates are the slots, the kept one is copied
into every slot, and each slot draws its next candidate from its own stream; selection uniforms come from the
population's stream. So the ``G`` samples are independent and seeded. Cost per sample: ``M`` network evaluations
and ``M`` value (reward) evaluations per level.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

import torch

from ..errors import DiffsampleError
from .engine import (
    RESAMPLING_STREAM,
    CountedReward,
    Proposal,
    ScalingCost,
    ValueFunction,
    draw_uniforms,
    population_seeds,
    slot_seeds,
    uniform_streams,
)
from .search import SearchResult

__all__ = ["svdd"]


def svdd(
    proposal: Proposal,
    reward: Callable[[torch.Tensor], torch.Tensor],
    *,
    candidates: int,
    seeds: int | Sequence[int],
    samples: int = 1,
    alpha: float = 0.0,
    value: ValueFunction | None = None,
) -> SearchResult:
    """``samples`` SVDD samples with ``candidates`` (``M``) candidates per level and selection temperature ``alpha``
    (``0`` = greedy argmax). ``history`` holds the kept value after every level."""
    if candidates < 1 or samples < 1:
        raise DiffsampleError(f"candidates and samples must be >= 1, got {candidates} and {samples}")
    if not (math.isfinite(alpha) and alpha >= 0):
        raise DiffsampleError(f"alpha must be finite and >= 0 (0 = greedy), got {alpha}")
    began = time.perf_counter()
    g, m = samples, candidates
    pops = population_seeds(seeds, g)
    counted = CountedReward(reward)
    extra = 0
    streams = uniform_streams(pops, RESAMPLING_STREAM)
    parts = proposal.start(slot_seeds(pops, m))
    parts = parts.select(torch.arange(g).repeat_interleave(m) * m)  # one starting state per sample, in every slot
    n = proposal.num_steps
    history = []
    kept = torch.zeros(g, dtype=torch.float64)
    for i in range(n):
        parts = proposal.step(parts).particles
        if i == n - 1:
            v = counted(parts.x.detach())
        elif value is None:
            v = counted(parts.x0_hat.detach())
        else:
            v = value(parts).detach().to(torch.float64).reshape(-1)
            extra += int(v.shape[0])
        v = v.reshape(g, m)
        if alpha == 0.0:
            pick = v.argmax(1)
        else:
            u = draw_uniforms(streams, g, 1)
            cdf = torch.cumsum(torch.softmax(v / alpha, dim=1), dim=1)
            pick = torch.searchsorted(cdf, u, right=True).clamp_max(m - 1)[:, 0]
        kept = v[torch.arange(g), pick]
        history.append(kept)
        rows = torch.arange(g) * m + pick
        parts = parts.select(rows.repeat_interleave(m))
    spent = proposal.cost()
    cost = ScalingCost(
        spent.network_evaluations,
        spent.backward_passes,
        counted.calls,
        counted.evaluations,
        extra + spent.auxiliary_evaluations,
        time.perf_counter() - began,
    )
    x = parts.x.detach()[torch.arange(g) * m]
    return SearchResult(x, kept, torch.stack(history, 1), cost)
