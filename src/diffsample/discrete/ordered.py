"""k-tokens-per-step samplers: reveal the best-scored masked positions each step (MaskGIT/LLaDA/Dream style).

Each step draws a token at every candidate position from ``p(x0_i | z)`` (after ``transform``), scores the
positions (:mod:`~diffsample.discrete.orders`) and reveals ``⌈m / steps_left⌉`` of them. ``block_length`` runs
LLaDA's semi-autoregressive blocks: the positions are cut into consecutive blocks, each gets ``steps / blocks``
steps, and only the current block's masked positions are candidates (LLaDA's ``steps / gen_length /
block_length / remasking``: ``remasking="low_confidence"`` is ``order="sampled_confidence"``,
``"random"`` is ``order="random"``; Dream's ``alg`` and ``alg_temp`` are ``order`` and ``order_temperature``).

The model sees the time whose expected masked fraction is the current one, ``t = α⁻¹(1 − m/L)``.

Positions are scored on the distribution the tokens are drawn from unless ``score_transform`` is given: then on
``score_transform(p)``. LLaDA scores its drawn token under the untempered model ``p`` (``score_transform =
lambda p: p``), which is what keeps greedy decoding (``transform`` the argmax) ordered by confidence instead
of by position (a one-hot draw distribution scores every position 1).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..errors import DiffsampleError
from ._walk import Callback, Transform, start_walk
from .categorical import inverse_cdf
from .contracts import MaskedDenoiser, UniformSource
from .orders import ORDERS, order_scores, reveal_counts, select_positions
from .schedules import MaskingSchedule

__all__ = ["blocks_of", "ordered"]


def blocks_of(length: int, steps: int, block_length: int | None) -> tuple[list[tuple[int, int]], int]:
    """The blocks ``[(lo, hi), …]`` and the steps each gets; LLaDA's divisibility rules."""
    block = length if block_length is None else int(block_length)
    if block < 1 or length % block:
        raise DiffsampleError(f"block_length must divide the length {length}, got {block_length}")
    n_blocks = length // block
    if steps < n_blocks or steps % n_blocks:
        raise DiffsampleError(f"steps ({steps}) must be a positive multiple of the number of blocks ({n_blocks})")
    return [(b * block, (b + 1) * block) for b in range(n_blocks)], steps // n_blocks


def ordered(
    denoiser: MaskedDenoiser,
    z: torch.Tensor,
    steps: int,
    *,
    order: str = "confidence",
    order_temperature: float = 0.0,
    block_length: int | None = None,
    schedule: MaskingSchedule | None = None,
    seed: int | Sequence[int] | torch.Tensor | None = None,
    uniforms: UniformSource | None = None,
    transform: Transform | None = None,
    cache: bool = True,
    callback: Callback | None = None,
    score_transform: Transform | None = None,
) -> torch.Tensor:
    """Reveal ``⌈m / steps_left⌉`` positions per step in ``order`` (module docstring); returns the tokens."""
    if order not in ORDERS:
        raise ValueError(f"unknown order {order!r}; valid orders: {', '.join(ORDERS)}")
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
    blocks, per_block = blocks_of(length, int(steps), block_length)
    selection_temperature = order_temperature if order != "random" else 1.0  # random: Gumbel keys alone
    i = 0
    for lo, hi in blocks:
        in_block = torch.zeros(length, dtype=torch.bool)
        in_block[lo:hi] = True
        for j in range(per_block):
            mask = walk.masked(z)
            t = walk.schedule.inverse(1.0 - mask.sum(-1).to(torch.float64) / length)
            p = walk.evaluate(z, t)
            q = walk.draw_distribution(p)
            tokens = inverse_cdf(q, walk.uniforms(batch, length))
            candidates = mask & in_block
            chosen = select_positions(
                order_scores(q if score_transform is None else score_transform(p), order, tokens),
                candidates,
                reveal_counts(candidates, per_block - j),
                selection_temperature,
                walk.uniforms(batch, length),
            )
            z = torch.where(chosen, tokens, z)
            walk.report(i=i, z=z, t=t, probs=p, revealed=chosen)
            i += 1
    return z
