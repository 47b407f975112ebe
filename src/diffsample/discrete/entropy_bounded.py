"""The entropy-bounded sampler (Ben-Hamu et al. 2025, "Accelerated sampling from masked diffusion models via
entropy bounded unmasking"): a variable number of tokens per step.

Each step sorts the masked positions by ``order`` (lowest entropy first by default) and reveals the longest
prefix ``U`` with ``Σ_{i∈U} H(p_i) − max_{i∈U} H(p_i) ≤ γ``, at least one position. The left side bounds the
error of drawing the prefix independently instead of from its joint law (a sum of entropies bounds the mutual
information the draw ignores), so ``γ`` trades calls for accuracy: ``γ = 0`` reveals one position per step
plus any whose token is certain, which is exact with an exact denoiser.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ._walk import Callback, Transform, start_walk
from .categorical import entropy, inverse_cdf
from .contracts import MaskedDenoiser, UniformSource
from .orders import ORDERS, order_scores, select_positions
from .schedules import MaskingSchedule

__all__ = ["entropy_bounded", "entropy_budget_counts"]


def entropy_budget_counts(
    p: torch.Tensor, candidates: torch.Tensor, scores: torch.Tensor, gamma: float
) -> torch.Tensor:
    """``(B,)``: the length of the longest prefix (candidates sorted by descending ``scores``, ties to the lower
    position) with ``Σ H − max H ≤ γ``; at least 1 where a row has a candidate."""
    key = torch.where(candidates, scores.to(torch.float64), torch.full_like(scores, -torch.inf, dtype=torch.float64))
    order = torch.sort(key, dim=-1, descending=True, stable=True).indices
    valid = candidates.gather(-1, order)
    h = torch.where(valid, entropy(p).gather(-1, order), torch.zeros(order.shape, dtype=torch.float64))
    within = (h.cumsum(-1) - h.cummax(-1).values <= gamma) & valid
    counts = within.int().cumprod(-1).sum(-1)
    return torch.where(candidates.any(-1), counts.clamp(min=1), counts)


def entropy_bounded(
    denoiser: MaskedDenoiser,
    z: torch.Tensor,
    steps: int | None = None,
    *,
    gamma: float = 0.1,
    order: str = "entropy",
    schedule: MaskingSchedule | None = None,
    seed: int | Sequence[int] | torch.Tensor | None = None,
    uniforms: UniformSource | None = None,
    transform: Transform | None = None,
    cache: bool = True,
    callback: Callback | None = None,
) -> torch.Tensor:
    """Entropy-bounded unmasking (module docstring). ``steps`` is not a knob (the sampler chooses how many
    positions each step reveals); the model sees ``t = α⁻¹(1 − m/L)``."""
    if order not in ORDERS:
        raise ValueError(f"unknown order {order!r}; valid orders: {', '.join(ORDERS)}")
    if gamma < 0:
        raise ValueError(f"gamma must be >= 0, got {gamma}")
    walk = start_walk(
        denoiser,
        z,
        schedule=schedule,
        seed=seed,
        uniforms=uniforms,
        transform=transform,
        cache=cache,
        callback=callback,
    )
    z = walk.z
    batch, length = z.shape
    i = 0
    while walk.masked(z).any():
        mask = walk.masked(z)
        t = walk.schedule.inverse(1.0 - mask.sum(-1).to(torch.float64) / length)
        p = walk.evaluate(z, t)
        q = walk.draw_distribution(p)
        tokens = inverse_cdf(q, walk.uniforms(batch, length))
        scores = order_scores(q, order, tokens)
        chosen = select_positions(scores, mask, entropy_budget_counts(q, mask, scores, gamma))
        z = torch.where(chosen, tokens, z)
        walk.report(i=i, z=z, t=t, probs=p, revealed=chosen)
        i += 1
    return z
