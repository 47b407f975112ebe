"""ReMDM: ancestral sampling that may mask visible tokens again (Wang et al. 2025, "Remasking discrete diffusion
models with inference-time scaling").

The step ``t → s`` draws from ``q_σ(z_s | z_t, x0)`` with ``x0 ~ p(x0 | z_t)``, which keeps the forward
marginals ``α_s`` for any remasking probability ``σ_t ∈ [0, σ_max]``, ``σ_max = min(1, (1 − α_s)/α_t)``:

* a visible token is masked again with probability ``σ_t``;
* a masked position is revealed with probability ``(α_s − (1 − σ_t) α_t)/(1 − α_t)``, its token from ``p_i``.

``σ_t = 0`` is MDLM's ancestral step. Strategies: ``"cap"`` ``σ_t = min(η, σ_max)``, ``"rescale"``
``σ_t = η · σ_max``. ``window = (t_low, t_high)`` remasks only while ``t_low ≤ t ≤ t_high`` (the on/off switch;
ReMDM's "loop" additionally holds ``α`` fixed inside the window, which this step does not). The last step
(``α_0 = 1``) has ``σ_max = 0`` and reveals everything.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ._walk import Callback, Transform, start_walk
from .categorical import inverse_cdf
from .contracts import MaskedDenoiser, UniformSource
from .schedules import MaskingSchedule, time_grid

__all__ = ["STRATEGIES", "remask_probability", "remdm", "remdm_reveal_probability"]

STRATEGIES = ("cap", "rescale")


def remask_probability(
    schedule: MaskingSchedule,
    t: torch.Tensor,
    s: torch.Tensor,
    strategy: str,
    eta: float,
    window: tuple[float, float] | None = None,
) -> torch.Tensor:
    """``σ_t`` of the step ``t → s`` (module docstring)."""
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    a_t, a_s = schedule.alpha(t), schedule.alpha(s)
    if float(a_t) <= 0.0 or (window is not None and not window[0] <= float(t) <= window[1]):
        return torch.zeros((), dtype=torch.float64)
    sigma_max = ((1.0 - a_s) / a_t).clamp(0.0, 1.0)
    return sigma_max.clamp(max=eta) if strategy == "cap" else eta * sigma_max


def remdm_reveal_probability(
    schedule: MaskingSchedule, t: torch.Tensor, s: torch.Tensor, sigma: torch.Tensor
) -> torch.Tensor:
    """``(α_s − (1 − σ) α_t)/(1 − α_t)``: a masked position's chance to be revealed."""
    a_t, a_s = schedule.alpha(t), schedule.alpha(s)
    return ((a_s - (1.0 - sigma) * a_t) / (1.0 - a_t)).clamp(0.0, 1.0)


def remdm(
    denoiser: MaskedDenoiser,
    z: torch.Tensor,
    steps: int,
    *,
    strategy: str = "cap",
    eta: float = 0.05,
    window: tuple[float, float] | None = None,
    schedule: MaskingSchedule | None = None,
    seed: int | Sequence[int] | torch.Tensor | None = None,
    uniforms: UniformSource | None = None,
    transform: Transform | None = None,
    cache: bool = True,
    callback: Callback | None = None,
) -> torch.Tensor:
    """ReMDM sampling in ``steps`` steps (module docstring); returns the tokens."""
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
        sigma = remask_probability(walk.schedule, t, s, strategy, eta, window)
        p = walk.evaluate(z, t)
        u = walk.uniforms(batch, length)
        tokens = inverse_cdf(walk.draw_distribution(p), walk.uniforms(batch, length))
        mask = walk.masked(z)
        opened = torch.where(u < remdm_reveal_probability(walk.schedule, t, s, sigma), tokens, walk.mask)
        kept = torch.where(u < sigma, walk.mask, z)
        z = torch.where(mask, opened, kept)
        walk.report(i=i, z=z, t=float(t), s=float(s), probs=p, sigma=float(sigma))
    return z
