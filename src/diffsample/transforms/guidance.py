"""Guidance as denoiser transforms: each takes denoiser(s) and returns a denoiser (:class:`~.base.Transform`).

Classifier-free guidance in σ-space, with a conditional denoiser ``D_c`` and an unconditional one ``D_u``,
in either of its two published conventions (one rule, two ways to number the weight; keyword ``convention``):

* ``"diffusers"`` (the default; diffusers, k-diffusion, Karras et al.): ``D_w = D_u + w (D_c − D_u)``,
  ``w = 1`` is the conditional model alone and ``w = 0`` the unconditional one;
* ``"ho_salimans"`` (Ho & Salimans 2022, "Classifier-Free Diffusion Guidance", eq. 6):
  ``D_w = (1 + w) D_c − w D_u``, ``w = 0`` is the conditional model alone. It is the first rule with
  weight ``w + 1``, and is computed as exactly that.

Since ``ε̂ = (x − D)/σ`` is affine in ``D`` this is the same rule as on noise predictions; the blend is
computed by ``torch.lerp``, so the conditional and unconditional ends are exact.

Guidance interval (Kynkäänniemi et al. 2024, "Applying Guidance in a Limited Interval Improves Sample
and Distribution Quality in Diffusion Models"): the weight is ``w`` for ``σ ∈ (σ_lo, σ_hi]``
and 1 elsewhere. Outside the interval only the conditional branch runs.

Guidance rescale (Lin et al. 2024, "Common Diffusion Noise Schedules and Sample Steps are Flawed",
§3.4): the guided prediction is rescaled to the per-sample standard deviation of the
conditional one and mixed back with factor φ,

    ε̂_r = ε̂_w · std(ε̂_c) / std(ε̂_w),    ε̂ = φ ε̂_r + (1 − φ) ε̂_w.

The rule is not invariant under a change of parameterisation, so it matters which prediction is
rescaled. It is applied here to the noise prediction ``ε̂ = (x − D)/σ``, as diffusers'
``rescale_noise_cfg`` does for ε-models (its common use): ``ε̂`` has unit scale at every σ, whereas the
std of ``x̂0`` shrinks towards the data mean's at high σ. In terms of the denoiser it reads
``D = x − (x − D_w)(φ r + 1 − φ)`` with ``r = std(x − D_c) / std(x − D_w)``: σ cancels, so nothing
is divided by σ and the rule is defined at σ = 0 too.

NFE accounting
--------------
A guided call costs 2 model evaluations per sample whether the two branches run as two network
calls (``calls`` += 2) or as one call of double batch (``batched=True``, ``calls`` += 1); outside the
guidance interval, or at ``w = 1``, only the conditional branch runs and the call costs 1. The guided
denoiser's ``nfe`` and ``calls`` are its own honest counts, measured from what the wrapped denoisers
report for each of its invocations (so wrapping a denoiser that itself costs more, e.g. a guided one,
is counted right). The wrapped denoisers keep counting in their own frame: in batched mode the network
sees one call on a ``2B`` batch, so its ``nfe`` advances by 1 where the guided one advances by 2.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch

from .. import contracts
from ..denoisers import append_dims, as_denoiser
from ..errors import DiffsampleError, ShapeError
from .base import Transform, to_work, work_dtype
from .branches import stack_branch_kwargs

__all__ = ["CONVENTIONS", "ClassifierFreeGuidance", "cfg", "diffusers_weight", "rescale_guidance"]

CONVENTIONS = ("diffusers", "ho_salimans")
"""The numberings of the guidance weight (module docstring): where the conditional model alone is 1, or 0."""


def diffusers_weight(scale: float, convention: str) -> float:
    """``scale`` in the ``"diffusers"`` numbering (``D_u + w (D_c − D_u)``): ``scale + 1`` for ``"ho_salimans"``."""
    if convention not in CONVENTIONS:
        raise DiffsampleError(f"unknown guidance convention {convention!r}; choose one of {list(CONVENTIONS)}")
    return float(scale) + 1.0 if convention == "ho_salimans" else float(scale)


def rescale_guidance(x: torch.Tensor, guided: torch.Tensor, cond: torch.Tensor, phi: float) -> torch.Tensor:
    """Guidance rescale (Lin et al. 2024, §3.4) of a guided denoiser output, done on ``ε̂ = (x − D)/σ``.

    Returns ``x − (x − guided)(φ r + 1 − φ)`` with the per-sample ratio
    ``r = std(x − cond) / std(x − guided) = std(ε̂_c) / std(ε̂_w)`` (std over all but the batch dim;
    ``r = 1`` where the guided residual has zero spread). ``φ = 0`` returns ``guided`` unchanged and
    ``φ = 1`` makes ``std(ε̂)`` equal ``std(ε̂_c)`` for every sample.
    """
    if not 0.0 <= phi <= 1.0:
        raise DiffsampleError(f"rescale factor phi must be in [0, 1], got {phi}")
    if phi == 0:
        return guided
    if x.dim() < 2:
        raise ShapeError(
            f"guidance rescale needs a per-sample std, so x must be (B, …) with B >= 1 feature "
            f"dims; got shape {tuple(x.shape)}"
        )
    dims = tuple(range(1, x.dim()))
    resid_w = x - guided
    std_w = resid_w.std(dim=dims, keepdim=True, correction=0)
    std_c = (x - cond).std(dim=dims, keepdim=True, correction=0)
    ratio = torch.where(std_w > 0, std_c / std_w.clamp_min(torch.finfo(std_w.dtype).tiny), torch.ones_like(std_w))
    return x - resid_w * (phi * ratio + (1.0 - phi))


def _stack_kwargs(cond_kw: Mapping[str, Any], uncond_kw: Mapping[str, Any], x: torch.Tensor) -> dict[str, Any]:
    """The keywords of one double-batch call: conditional rows first, then unconditional rows."""
    return stack_branch_kwargs([cond_kw, uncond_kw], x.shape[0], x.device)


class ClassifierFreeGuidance(Transform):
    """Classifier-free guidance ``D_u + w(D_c − D_u)`` with optional interval and rescale; see the module doc.

    Built by :func:`cfg`. ``inner`` is the conditional denoiser. ``nfe_per_call``/``network_calls_per_call``
    give the cost of a call where guidance applies; the counters (its own) record what each call actually cost.
    ``scale`` is the weight as given (in ``convention``), ``weight`` the same in the ``"diffusers"`` numbering.

    Other rules on the two branches (CFG++, APG) subclass it and override :meth:`combine` (and set
    ``always_both`` when the conditional branch alone is never their answer).
    """

    always_both: bool = False

    counts_own_calls = True

    def __init__(
        self,
        cond: contracts.Denoiser | Callable[..., torch.Tensor],
        scale: float,
        *,
        uncond: contracts.Denoiser | Callable[..., torch.Tensor] | None = None,
        cond_kwargs: Mapping[str, Any] | None = None,
        uncond_kwargs: Mapping[str, Any] | None = None,
        interval: tuple[float, float] | None = None,
        rescale: float = 0.0,
        batched: bool = False,
        convention: str = "diffusers",
    ) -> None:
        super().__init__(cond)
        self.cond = self.inner
        self.uncond = self.cond if uncond is None else as_denoiser(uncond)
        self.cond_kwargs = dict(cond_kwargs or {})
        self.uncond_kwargs = dict(uncond_kwargs or {})
        self.scale = float(scale)
        self.convention = convention
        self.weight = diffusers_weight(self.scale, convention)
        self.rescale = float(rescale)
        self.batched = bool(batched)
        if not math.isfinite(self.scale):
            raise DiffsampleError(f"guidance scale must be finite, got {scale}")
        if not 0.0 <= self.rescale <= 1.0:
            raise DiffsampleError(f"rescale factor must be in [0, 1], got {rescale}")
        if self.uncond is self.cond and not (self.cond_kwargs or self.uncond_kwargs):
            raise DiffsampleError(
                "with one network, guidance needs cond_kwargs and/or uncond_kwargs to tell the branches apart "
                "(e.g. uncond_kwargs={'class_labels': null_label}); or pass a separate uncond denoiser"
            )
        if self.batched and self.uncond is not self.cond:
            raise DiffsampleError(
                "batched=True runs both branches in one call of one network; "
                "it cannot be used with a separate uncond denoiser"
            )
        self.interval: tuple[float, float] | None = None
        if interval is not None:
            lo, hi = (float(v) for v in interval)
            if math.isnan(lo) or math.isnan(hi) or not 0.0 <= lo < hi:
                raise DiffsampleError(
                    f"guidance interval (sigma_lo, sigma_hi) needs 0 <= sigma_lo < sigma_hi, got {interval}"
                )
            self.interval = (lo, hi)
        single = self.weight == 1 and not self.always_both
        self.nfe_per_call = 1 if single else 2
        self.network_calls_per_call = 1 if single or self.batched else 2

    def guided_at(self, sigma: torch.Tensor) -> torch.Tensor:
        """Boolean ``(B,)``: where guidance applies, ``σ ∈ (σ_lo, σ_hi]`` (everywhere without an interval)."""
        if self.interval is None:
            return torch.ones(sigma.shape, dtype=torch.bool, device=sigma.device)
        lo, hi = self.interval
        return (sigma > lo) & (sigma <= hi)

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        active = self.guided_at(sigma)
        if (self.weight == 1 and not self.always_both) or not bool(active.any()):
            return to_work(self.call_inner(self.cond, x, sigma, {**kwargs, **self.cond_kwargs}))
        d_c, d_u = self.branches(x, sigma, kwargs)
        guided = self.combine(x.to(d_c.dtype), sigma, d_c, d_u)
        if not bool(active.all()):
            guided = torch.where(append_dims(active, x.dim()), guided, d_c)
        return guided

    def combine(self, x: torch.Tensor, sigma: torch.Tensor, d_c: torch.Tensor, d_u: torch.Tensor) -> torch.Tensor:
        """The guided output from the two branches (in the work dtype): ``D_u + w (D_c − D_u)``, then rescale."""
        guided = torch.lerp(d_u, d_c, self.weight)
        return rescale_guidance(x, guided, d_c, self.rescale)

    def branches(
        self, x: torch.Tensor, sigma: torch.Tensor, kwargs: Mapping[str, Any]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(D_c, D_u)`` at ``(x, σ)`` in the work dtype: two calls, or one of double batch (``batched``)."""
        cond_kw = {**kwargs, **self.cond_kwargs}
        uncond_kw = {**kwargs, **self.uncond_kwargs}
        if self.batched:
            batch = x.shape[0]
            both = self.call_inner(
                self.cond, torch.cat([x, x]), torch.cat([sigma, sigma]), _stack_kwargs(cond_kw, uncond_kw, x), copies=2
            )
            d_c, d_u = both[:batch], both[batch:]
        else:
            d_c = self.call_inner(self.cond, x, sigma, cond_kw)
            d_u = self.call_inner(self.uncond, x, sigma, uncond_kw)
        dtype = work_dtype(torch.promote_types(d_c.dtype, d_u.dtype))
        return d_c.to(dtype), d_u.to(dtype)


def cfg(
    denoiser: contracts.Denoiser | Callable[..., torch.Tensor],
    scale: float,
    *,
    uncond: contracts.Denoiser | Callable[..., torch.Tensor] | None = None,
    cond_kwargs: Mapping[str, Any] | None = None,
    uncond_kwargs: Mapping[str, Any] | None = None,
    interval: tuple[float, float] | None = None,
    rescale: float = 0.0,
    batched: bool = False,
    convention: str = "diffusers",
) -> ClassifierFreeGuidance:
    """Classifier-free guidance of ``denoiser`` with weight ``scale`` (``w``), as a new denoiser.

    Args:
        denoiser: the conditional denoiser ``D_c``; with no ``uncond`` it is one network whose two
            branches differ only by keywords (the "null" condition gives the unconditional branch).
        scale: guidance weight ``w`` in ``convention``: with ``"diffusers"`` (default) ``D_u + w (D_c − D_u)``,
            1 is the conditional model alone and 0 the unconditional one; with ``"ho_salimans"``
            ``(1 + w) D_c − w D_u``, 0 is the conditional model alone and −1 the unconditional one.
        uncond: a separate unconditional denoiser ``D_u`` (two-network guidance).
        cond_kwargs: keywords for the conditional branch, e.g. ``{"class_labels": y}``.
        uncond_kwargs: keywords for the unconditional branch, e.g. ``{"class_labels": null_labels}``.
        interval: ``(σ_lo, σ_hi)``: guide only for ``σ ∈ (σ_lo, σ_hi]`` (Kynkäänniemi et al. 2024);
            elsewhere return ``D_c`` at the cost of one evaluation. ``σ_hi`` may be ``inf``.
        rescale: guidance-rescale factor ``φ ∈ [0, 1]`` (Lin et al. 2024, §3.4), applied on ``ε̂``.
        batched: run both branches as one call of double batch (one network only): same result,
            same ``nfe`` (2 per guided call), half the ``calls``.
        convention: how ``scale`` is numbered, ``"diffusers"`` or ``"ho_salimans"`` (module docstring).

    Keywords given when the guided denoiser is called go to both branches (branch keywords win).
    """
    return ClassifierFreeGuidance(
        denoiser,
        scale,
        uncond=uncond,
        cond_kwargs=cond_kwargs,
        uncond_kwargs=uncond_kwargs,
        interval=interval,
        rescale=rescale,
        batched=batched,
        convention=convention,
    )
