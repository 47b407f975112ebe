"""Adaptive projected guidance, APG (Sadat et al. 2024, "Eliminating Oversaturation and Artifacts of High
Guidance Scales in Diffusion Models", Algorithm 1), as a denoiser transform on the denoised estimate.

With ``Δ = D_c − D_u`` (per sample, all non-batch dims flattened):

1. reverse momentum (their §4.3), ``β < 0``: ``Δ̄_t = Δ_t + β Δ̄_{t−1}`` (``Δ̄ = Δ`` at the first
   evaluation of a walk), and ``Δ ← Δ̄``;
2. norm clipping with threshold ``r > 0`` (§4.2): ``Δ ← Δ · min(1, r/‖Δ‖)``;
3. projection on ``D_c`` (§4.1): ``Δ_∥ = (⟨Δ, D_c⟩/‖D_c‖²) D_c``, ``Δ_⊥ = Δ − Δ_∥``;
4. ``D_APG = D_c + (w − 1)(Δ_⊥ + η Δ_∥)`` with ``w`` in the ``"diffusers"`` numbering of
   :mod:`.guidance` (``(w − 1)`` is Ho & Salimans' weight: ``convention="ho_salimans"`` takes that directly).

The paper's setting is ``η = 0`` (only the orthogonal part is amplified), the default here. With
``η = 1`` the split is a no-op: ``Δ_⊥ + Δ_∥ = Δ`` and, without clipping and momentum, APG is CFG
exactly — which is what diffusers' ``AdaptiveProjectedGuidance`` does by default (``eta=1.0``).
(diffusers' default ``use_original_formulation=False`` also starts from ``D_u + w(…)`` rather than the paper's
``D_c + (w − 1)(…)``; the two agree at ``η = 1`` and differ by ``Δ_∥`` otherwise. This module follows the paper.)

Momentum is state across evaluations. Solvers are stateless, so it lives in the walk
(:mod:`.walk_context`): fresh at the start of every :func:`diffsample.sample` call, updated once per
evaluation in the order the solver makes them (for single-evaluation multistep solvers: once per step, as
in the paper's DDIM/DPM-Solver++ use). Without momentum APG is stateless and runs anywhere.

Cost: 2 model evaluations per call (1 where ``w = 1`` and no momentum, clipping or ``η`` changes anything).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch

from .. import contracts
from ..errors import DiffsampleError
from .guidance import ClassifierFreeGuidance
from .walk_context import current_walk

__all__ = ["AdaptiveProjectedGuidance", "apg", "project"]


def _dims(t: torch.Tensor) -> tuple[int, ...]:
    return tuple(range(1, t.dim()))


def project(v: torch.Tensor, onto: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(v_∥, v_⊥)``: ``v`` split per sample into its part along ``onto`` and the rest (in float64).

    Where ``onto`` is zero for a sample its direction is undefined and all of ``v`` counts as orthogonal.
    """
    v64, u64 = v.double(), onto.double()
    norm2 = (u64 * u64).sum(dim=_dims(u64), keepdim=True)
    coef = torch.where(norm2 > 0, (v64 * u64).sum(dim=_dims(u64), keepdim=True) / norm2.clamp_min(1e-300), 0.0)
    parallel = coef * u64
    return parallel.to(v.dtype), (v64 - parallel).to(v.dtype)


class AdaptiveProjectedGuidance(ClassifierFreeGuidance):
    """APG (module docstring); built by :func:`apg`. ``eta``, ``norm_threshold`` (``r``), ``momentum`` (``β``)."""

    def __init__(
        self,
        cond: contracts.Denoiser | Callable[..., torch.Tensor],
        scale: float,
        *,
        eta: float = 0.0,
        norm_threshold: float = 0.0,
        momentum: float = 0.0,
        uncond: contracts.Denoiser | Callable[..., torch.Tensor] | None = None,
        cond_kwargs: Mapping[str, Any] | None = None,
        uncond_kwargs: Mapping[str, Any] | None = None,
        batched: bool = False,
        convention: str = "diffusers",
    ) -> None:
        self.eta, self.norm_threshold, self.momentum = float(eta), float(norm_threshold), float(momentum)
        for name, value in (("eta", self.eta), ("norm_threshold", self.norm_threshold), ("momentum", self.momentum)):
            if not math.isfinite(value):
                raise DiffsampleError(f"APG {name} must be finite, got {value}")
        if self.norm_threshold < 0:
            raise DiffsampleError(f"APG norm_threshold must be >= 0 (0 turns clipping off), got {norm_threshold}")
        if not -1.0 < self.momentum < 1.0:
            raise DiffsampleError(f"APG momentum must be in (-1, 1) (the paper's is negative), got {momentum}")
        self.always_both = bool(self.momentum)  # the running average needs Δ at every evaluation
        super().__init__(
            cond,
            scale,
            uncond=uncond,
            cond_kwargs=cond_kwargs,
            uncond_kwargs=uncond_kwargs,
            batched=batched,
            convention=convention,
        )

    def _running_difference(self, diff: torch.Tensor) -> torch.Tensor:
        """``Δ̄_t = Δ_t + β Δ̄_{t−1}`` kept in the current walk (reverse momentum, §4.3)."""
        walk = current_walk()
        if walk is None:
            raise DiffsampleError(
                "APG with momentum keeps state across the steps of one walk: use it through diffsample.sample(...), "
                "or run the solver inside diffsample.transforms.walk_context(sigmas, solver, **options)"
            )
        state = walk.state_of(self)
        previous = state.get("running")
        if previous is not None and previous.shape != diff.shape:
            raise DiffsampleError(
                f"APG momentum: the batch changed shape within one walk ({tuple(previous.shape)} -> "
                f"{tuple(diff.shape)}); a walk evaluates one batch"
            )
        running = diff if previous is None else diff + self.momentum * previous
        state["running"] = running
        return running

    def combine(self, x: torch.Tensor, sigma: torch.Tensor, d_c: torch.Tensor, d_u: torch.Tensor) -> torch.Tensor:
        diff = d_c - d_u
        if self.momentum:
            diff = self._running_difference(diff)
        if self.norm_threshold > 0:
            norm = diff.double().norm(dim=_dims(diff), keepdim=True)
            diff = diff * torch.clamp(self.norm_threshold / norm, max=1.0).to(diff.dtype)
        parallel, orthogonal = project(diff, d_c)
        return d_c + (self.weight - 1.0) * (orthogonal + self.eta * parallel)


def apg(
    denoiser: contracts.Denoiser | Callable[..., torch.Tensor],
    scale: float,
    *,
    eta: float = 0.0,
    norm_threshold: float = 0.0,
    momentum: float = 0.0,
    uncond: contracts.Denoiser | Callable[..., torch.Tensor] | None = None,
    cond_kwargs: Mapping[str, Any] | None = None,
    uncond_kwargs: Mapping[str, Any] | None = None,
    batched: bool = False,
    convention: str = "diffusers",
) -> AdaptiveProjectedGuidance:
    """Adaptive projected guidance (Sadat et al. 2024) of ``denoiser`` with weight ``scale``.

    Args:
        denoiser, uncond, cond_kwargs, uncond_kwargs, batched, convention: as for
            :func:`~diffsample.transforms.cfg` (``scale`` numbered by ``convention``).
        eta: weight ``η`` of the part of ``D_c − D_u`` parallel to ``D_c``; 0 (the paper's setting) keeps
            only the orthogonal part, 1 makes the split a no-op (diffusers' default).
        norm_threshold: ``r``: clip ``‖D_c − D_u‖`` per sample to at most ``r``; 0 turns clipping off.
        momentum: ``β`` of the reverse momentum (negative in the paper, e.g. −0.5); 0 turns it off.
    """
    return AdaptiveProjectedGuidance(
        denoiser,
        scale,
        eta=eta,
        norm_threshold=norm_threshold,
        momentum=momentum,
        uncond=uncond,
        cond_kwargs=cond_kwargs,
        uncond_kwargs=uncond_kwargs,
        batched=batched,
        convention=convention,
    )
