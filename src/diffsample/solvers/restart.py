"""Restart sampling (Xu et al. 2023, "Restart Sampling for Improving Generative Processes", Algorithm 1).

The main walk is the deterministic Heun solver of the σ-space PF-ODE (Karras et al. 2022, Algorithm 1)
on ``sigmas``. Each restart interval ``(σ_lo, σ_hi, K, n)`` is attached to the main level ``σ_j``
nearest to ``σ_lo`` (in log σ). When the walk reaches ``σ_j`` it repeats K times:

* **restart forward**: jump back up by the forward process in σ-space,
  ``x ← x + S_noise·sqrt(σ_hi² − σ_j²)·z`` (the exact transition from σ_j to σ_hi, see
  :mod:`~diffsample.solvers.ancestral`), with fresh noise each time;
* **restart backward**: ``n`` Heun steps of the PF-ODE from σ_hi back down to σ_j, on Karras'
  ρ-spacing (ρ = 7) between the two, as the paper's code does;

then continues the main walk. The large forward jumps contract errors accumulated so far (the
paper's analysis, §3), while the backward path stays an ODE with ODE-sized steps.

Model evaluations: the main Heun walk takes ``2N − 1`` (``2N`` if it ends above 0) and each interval
adds ``2·K·n``; :func:`restart_nfe` counts them before running. The registry's cost hook
(:func:`restart_cost`) makes ``spec("restart").nfe_on(sigmas, **options)`` exact and
``spec("restart").nfe(n, **options)`` / ``steps_for_nfe`` an upper bound that assumes every interval
with K > 0 finds its restart level (true on any schedule with a level within the interval).

``ode=`` replaces Heun by any deterministic fixed-step solver of the registry for both the main
walk and the restart backward walks (the paper uses Heun; at small budgets a one-call-per-step
multistep solver leaves more evaluations for the main walk). Each walk segment runs as a fresh call,
so a multistep solver restarts its history after every restart.

Defaults
--------
``DEFAULT_INTERVALS = ((0.06, 0.30, 2, 2),)``: the paper's CIFAR-10 (VP, EDM's network) configuration
``{"0": [3, 2, 0.06, 0.30]}`` of its code (3 levels = 2 Heun steps per restart, K = 2), for data of
EDM's scale (pixels in [−1, 1]). Adapted to the span: ``σ_hi`` is capped at ``sigmas[0]`` and an
interval is skipped when its top lies at or below its restart level (a schedule that never goes
near ``σ_lo``, or ends above it, gets no restart there). The paper picks the restart level with
``argmin |σ_i − σ_lo|``; here the distance is taken in log σ, and only levels reached by a step
(``i ≥ 1``, σ_i > 0) qualify.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .. import steps
from ..contracts import Denoiser, NoiseSource
from ..errors import DiffsampleError
from ._kernel.callbacks import Callback, offset_callback, tagged_callback
from ._kernel.levels import sigma_list
from ._kernel.noise import draw, require_fresh_noise
from .registry import SolverSpec, register, spec

__all__ = ["DEFAULT_INTERVALS", "RestartSegment", "restart", "restart_cost", "restart_nfe", "restart_plan"]

DEFAULT_INTERVALS: tuple[tuple[float, float, int, int], ...] = ((0.06, 0.30, 2, 2),)
"""``(σ_lo, σ_hi, K, n)``: restart from ≈0.06 up to 0.30, twice, with 2 Heun steps back (Xu et al. 2023, CIFAR-10)."""


@dataclass(frozen=True)
class RestartSegment:
    """One resolved restart interval: at main level ``index`` (``sigma = sigmas[index]``) jump to ``sigma_hi``
    and come back with Heun on ``grid`` (``n + 1`` levels from ``sigma_hi`` to ``sigma``), ``repeats`` times."""

    index: int
    sigma: float
    sigma_hi: float
    repeats: int
    grid: torch.Tensor

    def nfe(self, ode: str = "heun") -> int:
        """Model evaluations of this segment with the solver ``ode`` (Heun: 2 per step, none ends at 0), ``repeats``
        times."""
        return self.repeats * spec(ode).nfe(len(self.grid) - 1, ends_at_zero=False)


def _check_interval(interval: Sequence[Any]) -> tuple[float, float, int, int]:
    if len(interval) != 4:
        raise DiffsampleError(f"a restart interval is (sigma_lo, sigma_hi, K, n_steps), got {tuple(interval)!r}")
    lo, hi, k, n = float(interval[0]), float(interval[1]), interval[2], interval[3]
    if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo < hi):
        raise DiffsampleError(f"a restart interval needs 0 < sigma_lo < sigma_hi (finite), got {lo}, {hi}")
    if int(k) != k or k < 0 or int(n) != n or n < 1:
        raise DiffsampleError(f"a restart interval needs an integer K >= 0 and n_steps >= 1, got K={k}, n={n}")
    return lo, hi, int(k), int(n)


def restart_plan(
    sigmas: torch.Tensor | Sequence[float], intervals: Sequence[Sequence[Any]] = DEFAULT_INTERVALS, rho: float = 7.0
) -> list[RestartSegment]:
    """The restart segments that :func:`restart` runs on ``sigmas``, in the order it meets them."""
    s = sigma_list(steps.validate(sigmas))
    candidates = [i for i in range(1, len(s)) if s[i] > 0]
    segments: list[RestartSegment] = []
    for interval in intervals:
        lo, hi, k, n = _check_interval(interval)
        if not candidates or k == 0:
            continue
        j = min(candidates, key=lambda i: abs(math.log(s[i] / lo)))
        top = min(hi, s[0])
        if top <= s[j]:
            continue
        grid = steps.karras(n + 1, s[j], top, rho, append_zero=False)
        segments.append(RestartSegment(j, s[j], top, k, grid))
    segments.sort(key=lambda seg: seg.index)  # stable: intervals at one level keep their given order
    return segments


def restart_nfe(
    sigmas: torch.Tensor | Sequence[float],
    intervals: Sequence[Sequence[Any]] = DEFAULT_INTERVALS,
    rho: float = 7.0,
    ode: str = "heun",
) -> int:
    """Model evaluations of :func:`restart` on ``sigmas``: the main walk plus every restart."""
    s = sigma_list(steps.validate(sigmas))
    backbone = _backbone(ode)
    segments = restart_plan(sigmas, intervals, rho)
    cuts = sorted({0, len(s) - 1, *(seg.index for seg in segments)})
    main = sum(backbone.nfe(b - a, ends_at_zero=s[b] == 0) for a, b in zip(cuts[:-1], cuts[1:], strict=False))
    return main + sum(seg.nfe(ode) for seg in segments)


def restart_cost(
    n_steps: int,
    ends_at_zero: bool = True,
    sigmas: torch.Tensor | Sequence[float] | None = None,
    *,
    intervals: Sequence[Sequence[Any]] = DEFAULT_INTERVALS,
    rho: float = 7.0,
    s_noise: float = 1.0,
    ode: str = "heun",
) -> int:
    """The registry's cost hook for :func:`restart`: :func:`restart_nfe` on ``sigmas`` when given, else the
    most any schedule of ``n_steps`` steps can cost (the main walk plus ``K·cost(n)`` for every interval,
    counted whenever the schedule has a level a restart can start from: ``i ≥ 1`` with ``σ_i > 0``)."""
    if sigmas is not None:
        return restart_nfe(sigmas, intervals, rho, ode)
    backbone = _backbone(ode)
    checked = [_check_interval(interval) for interval in intervals]
    main = backbone.nfe(n_steps, ends_at_zero)
    if n_steps < (2 if ends_at_zero else 1):  # no level in (0, σ_0) to restart from
        return main
    return main + sum(k * backbone.nfe(n, ends_at_zero=False) for _, _, k, n in checked)


def _backbone(ode: str) -> SolverSpec:
    backbone = spec(ode)
    if backbone.stochastic or backbone.adaptive or ode in ("plan", "nonstationary"):
        raise DiffsampleError(f"restart needs a deterministic fixed-step ODE solver, got ode={ode!r}")
    return backbone


@register(
    "restart", order=2, evals_per_step=2, saves_last_eval=True, stochastic=True, cost=restart_cost, min_steps=2
)  # one step into 0 has no level to restart from: a budget must buy two
def restart(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    noise: NoiseSource | None = None,
    callback: Callback = None,
    intervals: Sequence[Sequence[Any]] = DEFAULT_INTERVALS,
    rho: float = 7.0,
    s_noise: float = 1.0,
    ode: str = "heun",
) -> torch.Tensor:
    """Restart sampling (Xu et al. 2023): Heun on ``sigmas`` with forward-noise restarts (module docstring).

    Args:
        intervals: ``(σ_lo, σ_hi, K, n)`` tuples: restart K times from the main level nearest σ_lo up to
            σ_hi, each time coming back with n Heun steps. ``()`` gives plain Heun.
        rho: the Karras spacing exponent of the restart backward grids.
        s_noise: a factor on the restart noise (1 in the paper's Algorithm 1).
        ode: the deterministic ODE solver (a registry name) of the main and restart backward walks (Heun in
            the paper). Not called ``solver``: that is :func:`diffsample.sample`'s own argument.

    The registry's ``evals_per_step`` is the main Heun walk's; restarts add ``2·K·n`` each, which its cost
    hook counts (:func:`restart_cost`; :func:`restart_nfe` for given levels).
    """
    s_noise = float(s_noise)
    sigmas = steps.validate(sigmas)
    walk = _backbone(ode).fn
    segments = restart_plan(sigmas, intervals, rho)
    if segments:
        require_fresh_noise(noise, "restart", "each restart jumps up with new noise")
    start = 0
    for seg in segments:
        if seg.index > start:
            x = walk(denoiser, x, sigmas[start : seg.index + 1], callback=offset_callback(callback, start))
            start = seg.index
        jump = s_noise * math.sqrt((seg.sigma_hi - seg.sigma) * (seg.sigma_hi + seg.sigma))
        for k in range(seg.repeats):
            x = x + jump * draw(noise, x, seg.sigma_hi, seg.sigma)
            x = walk(denoiser, x, seg.grid, callback=tagged_callback(callback, i=seg.index - 1, restart=k + 1))
    if start < len(sigmas) - 1:
        x = walk(denoiser, x, sigmas[start:], callback=offset_callback(callback, start))
    return x
