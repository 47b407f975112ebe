"""ReMDM: ancestral sampling that may mask visible tokens again (Wang et al. 2025, "Remasking discrete diffusion
models with inference-time scaling", §3–4 and the authors' code, kuleshov-group/remdm).

The step ``t → s`` draws from ``q_σ(z_s | z_t, x0)`` (their eq. 6) with ``x0 ~ p(x0 | z_t)``, which keeps the
forward marginals ``q(z_s | x0) = Cat(α_s x0 + (1 − α_s) m)`` for any remasking probability
``σ_t ∈ [0, σ_max]``, ``σ_max = min(1, (1 − α_s)/α_t)``:

* a visible token is masked again with probability ``σ_t``;
* a masked position is revealed with probability ``(α_s − (1 − σ_t) α_t)/(1 − α_t)``, its token from ``p_i``.

``σ_t = 0`` is MDLM's ancestral step. Strategies (their §4.1):

* ``"cap"``: ``σ_t = min(η, σ_max)``;
* ``"rescale"``: ``σ_t = η · σ_max``;
* ``"confidence"``: per token, ``σ_t^ℓ = η_conf^ℓ · σ_max`` with ``η_conf^ℓ = exp(−ψ^ℓ) / Σ_{ℓ'} exp(−ψ^{ℓ'})``,
  a softmax over the visible tokens of minus their confidence ``ψ^ℓ``, the probability the drawn token had
  (under the distribution it was drawn from) when it was revealed. Masked positions and tokens visible from the
  start (a prompt) have weight 0 and masked positions are revealed with MDLM's ``(α_s − α_t)/(1 − α_t)``, as in
  the authors' code; ``η`` is not used. At most about one token (``Σ_ℓ σ^ℓ = σ_max ≤ 1``) is remasked per step,
  and the masked fraction runs below the schedule's ``1 − α``.

``window = (t_low, t_high)`` remasks only on steps that start at ``t_low < t ≤ t_high`` (the on/off switch).

**ReMDM-loop** (their §4.2), ``loop = (t_on, t_off, α_on)``: the schedule becomes :func:`loop_schedule`, which
runs the base schedule down to ``α_on`` over ``t ∈ [t_on, 1]``, holds ``α = α_on`` for ``t ∈ [t_off, t_on]`` and
runs the rest of the base schedule over ``[0, t_off]``; remasking runs only on the steps that start in
``(t_off, t_on]``. There ``α_s = α_t = α_on``, so the cap strategy remasks each visible token with the constant
``σ = min(η, (1 − α_on)/α_on)`` and reveals each masked one with ``σ α_on/(1 − α_on)``: a kernel that keeps the
masked law ``q_{α_on}`` invariant when ``x0`` is drawn jointly from the exact posterior; with the factorised
per-position draws it is reversible for ``q_{α_on}`` up to the steps where two positions change at once
(``O(σ²)``; measured in ``python -m benchmarks discrete``). The authors' values: ``t_on = 0.55``,
``t_off = 0.05``, ``α_on = 0.9``, ``η = 0.02``. The last step (``α_0 = 1``) has ``σ_max = 0`` and reveals
everything.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..errors import DiffsampleError
from ._walk import Callback, Transform, start_walk
from .categorical import inverse_cdf
from .contracts import MaskedDenoiser, UniformSource
from .schedules import MaskingSchedule, linear, time_grid

__all__ = [
    "STRATEGIES",
    "confidence_remask_weights",
    "loop_schedule",
    "remask_probability",
    "remdm",
    "remdm_reveal_probability",
]

STRATEGIES = ("cap", "rescale", "confidence")


def _in_window(t: torch.Tensor, window: tuple[float, float] | None) -> bool:
    return window is None or window[0] < float(t) <= window[1]


def remask_probability(
    schedule: MaskingSchedule,
    t: torch.Tensor,
    s: torch.Tensor,
    strategy: str,
    eta: float,
    window: tuple[float, float] | None = None,
) -> torch.Tensor:
    """``σ_t`` of the step ``t → s`` (module docstring); for ``"confidence"`` the ``σ_max`` that the per-token
    weights :func:`confidence_remask_weights` multiply. Zero outside ``window`` and when ``α_t = 0``."""
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    a_t, a_s = schedule.alpha(t), schedule.alpha(s)
    if float(a_t) <= 0.0 or not _in_window(t, window):
        return torch.zeros((), dtype=torch.float64)
    sigma_max = ((1.0 - a_s) / a_t).clamp(0.0, 1.0)
    if strategy == "cap":
        return sigma_max.clamp(max=eta)
    if strategy == "rescale":
        return eta * sigma_max
    return sigma_max


def confidence_remask_weights(confidence: torch.Tensor) -> torch.Tensor:
    """``η_conf = softmax(−ψ)`` over each row's positions with a finite confidence ``ψ`` (``(B, L)`` float64;
    ``+inf`` marks masked positions and prompt tokens, which get weight 0; a row with none is all zeros)."""
    eligible = torch.isfinite(confidence)
    logits = torch.where(eligible, -confidence, torch.full_like(confidence, -torch.inf))
    top = logits.max(-1, keepdim=True).values
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    weights = torch.exp(logits - top)
    total = weights.sum(-1, keepdim=True)
    return torch.where(total > 0, weights / total.clamp(min=torch.finfo(torch.float64).tiny), weights)


def remdm_reveal_probability(
    schedule: MaskingSchedule, t: torch.Tensor, s: torch.Tensor, sigma: torch.Tensor
) -> torch.Tensor:
    """``(α_s − (1 − σ) α_t)/(1 − α_t)``: a masked position's chance to be revealed (``sigma`` may be per token)."""
    a_t, a_s = schedule.alpha(t), schedule.alpha(s)
    return ((a_s - (1.0 - sigma) * a_t) / (1.0 - a_t)).clamp(0.0, 1.0)


def loop_schedule(schedule: MaskingSchedule, t_on: float, t_off: float, alpha_on: float) -> MaskingSchedule:
    """ReMDM-loop's schedule (module docstring): with ``τ_on`` the base time of ``α = α_on``,

    ``α(t) = α_base(τ_on + (t − t_on)(1 − τ_on)/(1 − t_on))`` for ``t > t_on``, ``α_on`` on ``[t_off, t_on]``,
    ``α_base(t τ_on / t_off)`` for ``t < t_off``. On the linear base this is the authors' piecewise-linear
    ``α = α_on (1 − t)/(1 − t_on)`` and ``α = 1 − t (1 − α_on)/t_off``.
    """
    if not 0.0 < t_off < t_on < 1.0:
        raise DiffsampleError(f"ReMDM loop needs 0 < t_off < t_on < 1, got t_on={t_on}, t_off={t_off}")
    if not 0.0 < alpha_on < 1.0:
        raise DiffsampleError(f"ReMDM loop needs 0 < alpha_on < 1, got {alpha_on}")
    tau_on = schedule.inverse(alpha_on)

    def alpha(t: torch.Tensor) -> torch.Tensor:
        early = schedule.alpha(tau_on + (t - t_on) * (1.0 - tau_on) / (1.0 - t_on))
        late = schedule.alpha(t * tau_on / t_off)
        held = torch.full_like(t, float(alpha_on))
        return torch.where(t > t_on, early, torch.where(t < t_off, late, held))

    return MaskingSchedule(f"remdm_loop({schedule.name}, {t_on:g}, {t_off:g}, {alpha_on:g})", alpha)


def remdm(
    denoiser: MaskedDenoiser,
    z: torch.Tensor,
    steps: int,
    *,
    strategy: str = "cap",
    eta: float = 0.05,
    window: tuple[float, float] | None = None,
    loop: tuple[float, float, float] | None = None,
    schedule: MaskingSchedule | None = None,
    seed: int | Sequence[int] | torch.Tensor | None = None,
    uniforms: UniformSource | None = None,
    transform: Transform | None = None,
    cache: bool = True,
    callback: Callback | None = None,
) -> torch.Tensor:
    """ReMDM sampling in ``steps`` steps (module docstring); ``loop = (t_on, t_off, α_on)`` runs ReMDM-loop on
    ``schedule`` (linear by default). Returns the tokens."""
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    if loop is not None:
        if window is not None:
            raise DiffsampleError("remdm: give either window or loop (the loop sets its own window (t_off, t_on])")
        t_on, t_off, alpha_on = (float(v) for v in loop)
        schedule = loop_schedule(schedule or linear(), t_on, t_off, alpha_on)
        window = (t_off, t_on)
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
    confidence = torch.full((batch, length), torch.inf, dtype=torch.float64)  # ψ of tokens revealed here
    times = time_grid(steps)
    for i in range(int(steps)):
        t, s = times[i], times[i + 1]
        sigma = remask_probability(walk.schedule, t, s, strategy, eta, window)
        p = walk.evaluate(z, t)
        mask = walk.masked(z)
        if strategy == "confidence":
            per_token = confidence_remask_weights(confidence) * sigma  # 0 on masked positions
        else:
            per_token = sigma.expand(batch, length)
        u = walk.uniforms(batch, length)
        q = walk.draw_distribution(p)
        tokens = inverse_cdf(q, walk.uniforms(batch, length))
        opened = torch.where(u < remdm_reveal_probability(walk.schedule, t, s, per_token), tokens, walk.mask)
        kept = torch.where(u < per_token, walk.mask, z)
        new = torch.where(mask, opened, kept)
        if strategy == "confidence":
            drawn = q.gather(-1, tokens.clamp(max=walk.vocab_size - 1)[..., None])[..., 0]
            confidence = torch.where(mask & ~walk.masked(new), drawn, confidence)
            confidence = torch.where(~mask & walk.masked(new), torch.inf, confidence)
        z = new
        walk.report(i=i, z=z, t=float(t), s=float(s), probs=p, sigma=per_token)
    return z
