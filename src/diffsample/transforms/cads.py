"""CADS, condition-annealed sampling: noise on the conditioning embedding early in the walk, for diversity.

Sadat, Buhmann, Bradley, Hilliges & Weber 2024, "CADS: Unleashing the Diversity of Diffusion Models through
Condition-Annealed Sampling" (ICLR), eq. 2–4: at diffusion time ``t ∈ [0, 1]`` (1 = pure noise) the
conditioning embedding ``y`` given to the denoiser is replaced by

    ŷ = √γ(t) y + s √(1 − γ(t)) n,        n ~ N(0, I),

with the piecewise-linear annealing schedule

    γ(t) = 1 for t ≤ τ1,   (τ2 − t)/(τ2 − τ1) for τ1 < t < τ2,   0 for t ≥ τ2,

so the walk starts almost unconditionally and the condition fades in between τ2 and τ1. Because the noise
changes the embedding's statistics, ŷ may be rescaled to the mean and standard deviation of ``y`` and mixed
back with factor ψ (their eq. 4; per sample, over the embedding's entries):

    ŷ_rescaled = (ŷ − mean(ŷ)) / std(ŷ) · std(y) + mean(y),     ŷ_final = ψ ŷ_rescaled + (1 − ψ) ŷ.

CADS composes with classifier-free guidance: wrap the conditional denoiser in CADS and give the result to
:func:`~diffsample.transforms.cfg` with the plain model as ``uncond``, ``cfg(cads(D, …), w, uncond=D, …)``, so
only the conditional branch's embedding is annealed and the unconditional branch keeps its null embedding, as
the paper does. (A call whose embedding keyword is ``None`` passes through unchanged.)

Time: the schedule is defined on the model's time ``t``. :class:`CADS` maps σ to ``t`` through the model's
noise schedule (``t = (t(σ) − t_min)/(t_max − t_min)``, e.g. ``D.noise_schedule`` of a
:class:`~diffsample.parameterization.ModelDenoiser`) or through any callable ``σ -> t``.

Noise ``n`` is seeded per sample and keyed by σ (:class:`~.keyed_noise.KeyedNormals`): a fresh draw at every
noise level, as in the paper's sampler, yet the annealed denoiser is a deterministic function of ``(x, σ)``.
A call costs what the wrapped denoiser costs (no extra evaluation).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from .. import contracts
from ..errors import DiffsampleError, ShapeError
from ..schedules import NoiseSchedule
from .base import Transform, work_dtype
from .keyed_noise import KeyedNormals

__all__ = ["CADS", "anneal_condition", "cads", "cads_gamma"]

TimeOfSigma = Callable[[torch.Tensor], torch.Tensor]
"""``t(σ)``: σ-space levels ``(B,)`` to diffusion time in ``[0, 1]`` (1 = pure noise)."""


def cads_gamma(t: torch.Tensor, tau1: float, tau2: float) -> torch.Tensor:
    """Sadat et al. (2024)'s annealing schedule γ(t): 1 up to τ1, linear down to 0 at τ2, then 0 (float64)."""
    if not 0.0 <= tau1 < tau2 <= 1.0:
        raise DiffsampleError(f"CADS needs 0 <= tau1 < tau2 <= 1, got tau1={tau1}, tau2={tau2}")
    t = torch.as_tensor(t, dtype=torch.float64)
    return ((tau2 - t) / (tau2 - tau1)).clamp(0.0, 1.0)


def anneal_condition(
    y: torch.Tensor, gamma: torch.Tensor, noise: torch.Tensor, noise_scale: float, psi: float = 0.0
) -> torch.Tensor:
    """``ŷ = √γ y + s √(1−γ) n``, then rescaled to y's per-sample mean/std and mixed with factor ψ (eq. 2–4).

    ``gamma`` is ``(B,)``; ``y`` and ``noise`` are ``(B, …)`` embeddings. Rows with γ = 1 are ``y`` exactly.
    The rescale uses the mean and population std over each row's entries; a row of zero spread is not rescaled.
    """
    if noise.shape != y.shape:
        raise ShapeError(f"noise shape {tuple(noise.shape)} differs from the embedding's {tuple(y.shape)}")
    if not 0.0 <= psi <= 1.0:
        raise DiffsampleError(f"CADS rescale factor psi must be in [0, 1], got {psi}")
    dtype = work_dtype(y.dtype)
    yw, n = y.to(dtype), noise.to(dtype)
    g = gamma.to(device=y.device, dtype=dtype).reshape(-1, *([1] * (y.dim() - 1)))
    out = g.sqrt() * yw + noise_scale * (1.0 - g).sqrt() * n
    if psi > 0 and y.dim() >= 2:
        dims = tuple(range(1, y.dim()))
        mean_y, std_y = yw.mean(dims, keepdim=True), yw.std(dims, keepdim=True, correction=0)
        mean_o, std_o = out.mean(dims, keepdim=True), out.std(dims, keepdim=True, correction=0)
        spread = std_o > 0
        rescaled = torch.where(spread, (out - mean_o) / std_o.clamp_min(torch.finfo(dtype).tiny) * std_y + mean_y, out)
        out = psi * rescaled + (1.0 - psi) * out
    return torch.where(g == 1, yw, out)


def _time_map(time: NoiseSchedule | TimeOfSigma) -> TimeOfSigma:
    if isinstance(time, NoiseSchedule):
        sched = time

        def t_of(sigma: torch.Tensor) -> torch.Tensor:
            t = sched.t_of_sigma_space(sigma.detach().to("cpu", torch.float64)).clamp(sched.t_min, sched.t_max)
            return (t - sched.t_min) / (sched.t_max - sched.t_min)

        return t_of
    if callable(time):
        return time
    raise DiffsampleError(f"time must be a NoiseSchedule or a callable sigma -> t in [0, 1], got {type(time).__name__}")


class CADS(Transform):
    """A denoiser whose conditioning embedding keyword is annealed by CADS (module docstring); see :func:`cads`."""

    def __init__(
        self,
        denoiser: contracts.Denoiser | Callable[..., torch.Tensor],
        *,
        key: str,
        time: NoiseSchedule | TimeOfSigma | None = None,
        tau1: float = 0.6,
        tau2: float = 0.9,
        noise_scale: float = 0.25,
        psi: float = 1.0,
        seeds: int | Sequence[int] | torch.Tensor = 0,
        condition: torch.Tensor | None = None,
    ) -> None:
        super().__init__(denoiser)
        cads_gamma(torch.zeros(1), tau1, tau2)  # validates τ1, τ2
        if not (math.isfinite(noise_scale) and noise_scale >= 0):
            raise DiffsampleError(f"noise_scale must be finite and >= 0, got {noise_scale}")
        if not 0.0 <= psi <= 1.0:
            raise DiffsampleError(f"CADS rescale factor psi must be in [0, 1], got {psi}")
        if time is None:
            time = getattr(denoiser, "noise_schedule", None)
            if time is None:
                raise DiffsampleError(
                    "CADS needs the map from sigma to diffusion time: pass time=a NoiseSchedule or a callable "
                    "sigma -> t in [0, 1] (the denoiser has no noise_schedule attribute)"
                )
        self.t_of_sigma = _time_map(time)
        self.key = str(key)
        self.tau1, self.tau2 = float(tau1), float(tau2)
        self.noise_scale, self.psi = float(noise_scale), float(psi)
        self.noise = KeyedNormals(seeds, "cads(seeds=…)")
        self.condition = condition

    def gamma(self, sigma: torch.Tensor) -> torch.Tensor:
        """γ(t(σ)) per sample, float64 ``(B,)``."""
        return cads_gamma(self.t_of_sigma(sigma), self.tau1, self.tau2)

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        if self.key in kwargs and kwargs[self.key] is None:  # no condition (a null branch): nothing to anneal
            return self.inner(x, sigma, **kwargs)
        y = kwargs.get(self.key, self.condition)
        if not isinstance(y, torch.Tensor):
            raise DiffsampleError(
                f"CADS anneals the embedding keyword {self.key!r}: pass it as a (B, …) tensor when calling the "
                f"denoiser or as condition=… (got {type(y).__name__})"
            )
        if y.dim() == 1:
            y = y.expand(x.shape[0], -1)
        if y.shape[0] != x.shape[0]:
            raise ShapeError(f"embedding {self.key!r} has {y.shape[0]} rows for a batch of {x.shape[0]}")
        gamma = self.gamma(sigma).to(x.device)
        noise = self.noise(sigma, y.shape, work_dtype(y.dtype), y.device)
        annealed = anneal_condition(y, gamma, noise, self.noise_scale, self.psi).to(y.dtype)
        return self.inner(x, sigma, **{**kwargs, self.key: annealed})


def cads(
    denoiser: contracts.Denoiser | Callable[..., torch.Tensor],
    *,
    key: str,
    time: NoiseSchedule | TimeOfSigma | None = None,
    tau1: float = 0.6,
    tau2: float = 0.9,
    noise_scale: float = 0.25,
    psi: float = 1.0,
    seeds: int | Sequence[int] | torch.Tensor = 0,
    condition: torch.Tensor | None = None,
) -> CADS:
    """Condition-annealed sampling (Sadat et al. 2024) of ``denoiser``'s embedding keyword ``key``.

    Args:
        denoiser: a denoiser taking a continuous conditioning embedding as keyword ``key``
            (e.g. :func:`diffsample.models.load_digits_embedding_model`'s ``class_embedding``).
        key: the keyword holding the embedding ``y`` ``(B, …)`` (or ``(E,)`` for the whole batch).
        time: σ → diffusion time ``t ∈ [0, 1]``: a :class:`~diffsample.schedules.NoiseSchedule` or a callable;
            default the denoiser's ``noise_schedule``.
        tau1, tau2: the annealing schedule's knots (paper defaults 0.6 and 0.9).
        noise_scale: ``s``, the scale of the embedding noise (paper: 0.025–0.25 by task).
        psi: rescale mix ψ (1: rescale fully to y's mean/std; 0: no rescale).
        seeds: seeds of the per-sample embedding noise (fresh at every σ, a function of ``(seed_i, σ)``).
        condition: a default embedding used when the call does not pass ``key``.
    """
    return CADS(
        denoiser,
        key=key,
        time=time,
        tau1=tau1,
        tau2=tau2,
        noise_scale=noise_scale,
        psi=psi,
        seeds=seeds,
        condition=condition,
    )
