"""The first-hitting sampler (Zheng et al. 2024, "Masked diffusion models are secretly time-agnostic masked
models and exploit inaccurate categorical sampling", §4).

Given ``m`` masked positions at time ``t``, each one's reveal time ``T`` in the reverse process satisfies
``P(T < s | T < t) = (1 − α_s)/(1 − α_t)``, independently. The first of them is revealed at ``s`` with
``(1 − α_s) = (1 − α_t) · u^{1/m}`` (``u`` uniform), at a position chosen uniformly among the masked ones, with a
token drawn from ``p(x0_i | z_s)`` (``z_s = z_t``: nothing changed in between). One token and one model call per
step, ``m`` steps in all, and the exact reverse process: with an exact denoiser its output law is the target.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ._walk import Callback, Transform, start_walk
from .categorical import inverse_cdf
from .contracts import MaskedDenoiser, UniformSource
from .orders import select_positions
from .schedules import MaskingSchedule

__all__ = ["first_hitting"]


def first_hitting(
    denoiser: MaskedDenoiser,
    z: torch.Tensor,
    steps: int | None = None,
    *,
    schedule: MaskingSchedule | None = None,
    seed: int | Sequence[int] | torch.Tensor | None = None,
    uniforms: UniformSource | None = None,
    transform: Transform | None = None,
    cache: bool = True,
    callback: Callback | None = None,
) -> torch.Tensor:
    """First-hitting sampling (module docstring). ``steps`` is not a knob (one step per masked token); when given
    it must be at least the largest number of masked tokens in a row."""
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
    most = int(walk.masked(z).sum(-1).max())
    if steps is not None and steps < most:
        raise ValueError(f"first_hitting takes one step per masked token ({most}); steps={steps} is too few")
    t = torch.ones(batch, dtype=torch.float64)
    for i in range(most):
        mask = walk.masked(z)
        m = mask.sum(-1)
        u = walk.uniforms(batch, 1)[:, 0]
        exponent = 1.0 / m.clamp(min=1).to(torch.float64)
        s = walk.schedule.inverse(1.0 - (1.0 - walk.schedule.alpha(t)) * u**exponent)
        s = torch.where(m > 0, s, t)
        p = walk.evaluate(z, s)
        tokens = inverse_cdf(walk.draw_distribution(p), walk.uniforms(batch, length))
        chosen = select_positions(
            torch.zeros(batch, length, dtype=torch.float64), mask, (m > 0).long(), 1.0, walk.uniforms(batch, length)
        )
        z = torch.where(chosen, tokens, z)
        t = s
        walk.report(i=i, z=z, t=s, probs=p, revealed=chosen)
    return z
