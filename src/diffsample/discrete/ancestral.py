"""MDLM ancestral sampling (Sahoo et al. 2024; Shi et al. 2024, MD4; Austin et al. 2021, D3PM) and τ-leaping.

On the grid ``1 = t_0 > … > t_N = 0`` each step ``t → s`` reveals every masked position independently with
probability ``r = (α_s − α_t)/(1 − α_t)`` and draws its token from ``p(x0_i | z_t)``. The last step has
``α_0 = 1``, so everything is revealed. Positions revealed in the same step are drawn independently, which is
where the error against the target law comes from (it vanishes as ``O(1/N)`` with an exact denoiser).

``draw="inverse_cdf"`` uses one uniform for "reveal?" and one for the token (float64, exact). ``draw="gumbel"``
makes MDLM's joint draw over ``V + 1`` categories (tokens with weight ``r · p_i(v)``, "stay masked" with
``1 − r``) by Gumbel-max; ``precision="float32"`` reproduces the published float32 draw and its lowered entropy
(:func:`~diffsample.discrete.categorical.gumbel_max`). A time-free model is only called on rows that changed.

``reveal="exact"`` is the analytic step above, which for absorbing diffusion is also SEDD's "Tweedie τ-leaping"
(Lou et al. 2024). ``reveal="euler"`` is plain τ-leaping (Campbell et al. 2022): the reveal probability is the
rate times the step, ``min(1, (t − s) · (−α'_t)/(1 − α_t))``, and the last step reveals everything. On the
linear schedule the two coincide (``(t − s)/t`` both).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ._walk import Callback, Transform, start_walk
from .categorical import gumbel_max, inverse_cdf
from .contracts import MaskedDenoiser, UniformSource
from .schedules import MaskingSchedule, time_grid

__all__ = ["REVEALS", "ancestral", "step_reveal_probability"]

REVEALS = ("exact", "euler")


def step_reveal_probability(
    schedule: MaskingSchedule, t: torch.Tensor, s: torch.Tensor, reveal: str = "exact"
) -> torch.Tensor:
    """The chance that a masked position is revealed in the step ``t → s`` (module docstring)."""
    if reveal == "exact":
        return schedule.reveal_probability(t, s)
    if reveal == "euler":
        if float(s) == 0.0:
            return torch.ones((), dtype=torch.float64)
        return ((t - s) * schedule.reveal_rate(t)).clamp(0.0, 1.0)
    raise ValueError(f"reveal must be one of {', '.join(REVEALS)}, got {reveal!r}")


def ancestral(
    denoiser: MaskedDenoiser,
    z: torch.Tensor,
    steps: int,
    *,
    schedule: MaskingSchedule | None = None,
    seed: int | Sequence[int] | torch.Tensor | None = None,
    uniforms: UniformSource | None = None,
    transform: Transform | None = None,
    draw: str = "inverse_cdf",
    precision: str = "float64",
    reveal: str = "exact",
    cache: bool = True,
    callback: Callback | None = None,
) -> torch.Tensor:
    """MDLM ancestral sampling in ``steps`` steps from ``z`` (module docstring); returns the revealed tokens."""
    if draw not in ("inverse_cdf", "gumbel"):
        raise ValueError(f"draw must be 'inverse_cdf' or 'gumbel', got {draw!r}")
    if reveal not in REVEALS:
        raise ValueError(f"reveal must be one of {', '.join(REVEALS)}, got {reveal!r}")
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
    times = time_grid(steps)
    for i in range(int(steps)):
        t, s = times[i], times[i + 1]
        p = walk.evaluate(z, t)
        q = walk.draw_distribution(p)
        r = step_reveal_probability(walk.schedule, t, s, reveal)
        if draw == "gumbel":
            stay = torch.full((*q.shape[:-1], 1), 1.0, dtype=torch.float64) * (1.0 - r)
            weights = torch.cat([q * r, stay], dim=-1)
            u = walk.uniforms(batch, length * (walk.vocab_size + 1)).reshape(weights.shape)
            new = gumbel_max(weights, u, precision)  # id V (the last category) = stays masked
        else:
            opens = walk.uniforms(batch, length) < r
            tokens = inverse_cdf(q, walk.uniforms(batch, length))
            new = torch.where(opens, tokens, torch.full_like(tokens, walk.mask))
        z = torch.where(walk.masked(z), new, z)
        walk.report(i=i, z=z, t=float(t), s=float(s), probs=p)
    return z
