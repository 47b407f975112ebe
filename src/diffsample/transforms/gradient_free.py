"""Gradient-free classifier guidance (GFCG): a clean-image classifier picks a reference class, no gradients.

Shenoy, Pan, Balakrishnan, Cheng, Jeon, Yang & Kim 2024, "Gradient-Free Classifier Guidance for Diffusion
Model Sampling" (arXiv 2411.15393; WACV 2026). Classifier-free guidance contrasts the conditional prediction
with the unconditional one; GFCG contrasts it with the prediction *conditioned on the class the sample is
being confused with*, found by an ordinary (not noise-aware) classifier run in inference mode on the
conditional posterior mean ``x̂0 = D(x, σ, c)``:

    p = softmax(classifier(x̂0)),       r = argmax_{k ≠ c} p_k                    (reference class),
    ω(σ) = ω · min(1, p_r / p_c)                                                  (adaptive scale),
    D̃(x, σ) = D(x, σ, c) + ω(σ) (D(x, σ, c) − D(x, σ, r))
               + (w_cfg − 1)(D(x, σ, c) − D(x, σ, ∅))                             (optional CFG term).

The scale adapts to how confused the model is: when the classifier already separates ``c`` from its closest
rival (``p_r ≪ p_c``) the contrast fades; when the rival is as likely as the target it is applied in full.
The paper combines GFCG with CFG or autoguidance; the ``cfg_scale`` term here is plain CFG
(:func:`~diffsample.transforms.cfg`'s rule, ``w_cfg = 1`` leaves it out). Guidance can be limited to a σ
interval, as the paper restricts it to part of the walk.

Note on fidelity: the paper's text could not be read in full while this was written (only its abstract and
method summary: "a time-adaptive reference class label and corresponding guidance scale are determined at each
time step"); the reference-class rule is the paper's, the ``min(1, p_r/p_c)`` form of the adaptive scale is
this module's reading of "depending on how confused the diffusion model is".

Cost of a guided call: 2 denoiser evaluations (3 with the CFG term) and one classifier call
(``auxiliary_calls``), no backward pass; outside the interval one evaluation and no classifier call.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch

from .. import contracts
from ..denoisers import append_dims
from ..errors import DiffsampleError, ShapeError
from .base import Transform, to_work

__all__ = ["GradientFreeClassifierGuidance", "gfcg_reference", "gradient_free_guidance"]

CleanClassifier = Callable[[torch.Tensor], torch.Tensor]
"""``classifier(x0_hat) -> (B, C)`` class logits of clean (denoised) samples."""


def gfcg_reference(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(r, ratio)``: the most probable class other than ``labels`` and ``min(1, p_r / p_c)``, both ``(B,)``."""
    if logits.dim() != 2 or logits.shape[0] != labels.shape[0]:
        raise ShapeError(f"classifier logits must be (B, C) with B = {labels.shape[0]}, got {tuple(logits.shape)}")
    if logits.shape[1] < 2:
        raise ShapeError("gradient-free guidance needs a classifier with at least 2 classes")
    if bool(((labels < 0) | (labels >= logits.shape[1])).any()):
        raise DiffsampleError(f"target labels must lie in 0…{logits.shape[1] - 1} (the classifier's classes)")
    log_p = torch.log_softmax(logits.to(torch.float64), dim=1)
    own = log_p.gather(1, labels[:, None])[:, 0]
    others = log_p.scatter(1, labels[:, None], -math.inf)
    log_pr, ref = others.max(dim=1)
    ratio = torch.exp((log_pr - own).clamp(max=0.0))
    return ref, ratio


class GradientFreeClassifierGuidance(Transform):
    """GFCG (module docstring); built by :func:`gradient_free_guidance`. ``inner`` is the conditional denoiser."""

    counts_own_calls = True

    def __init__(
        self,
        denoiser: contracts.Denoiser | Callable[..., torch.Tensor],
        classifier: CleanClassifier,
        scale: float,
        *,
        label_key: str = "class_labels",
        labels: torch.Tensor | int | None = None,
        cfg_scale: float = 1.0,
        uncond_kwargs: Mapping[str, Any] | None = None,
        interval: tuple[float, float] | None = None,
    ) -> None:
        super().__init__(denoiser)
        if not callable(classifier):
            raise DiffsampleError(f"classifier must be callable as classifier(x0_hat) -> (B, C), got {classifier!r}")
        self.classifier = classifier
        self.scale, self.cfg_scale = float(scale), float(cfg_scale)
        if not (math.isfinite(self.scale) and math.isfinite(self.cfg_scale)):
            raise DiffsampleError(f"guidance scales must be finite, got scale={scale}, cfg_scale={cfg_scale}")
        if self.cfg_scale != 1 and not uncond_kwargs:
            raise DiffsampleError(
                "cfg_scale != 1 needs uncond_kwargs telling the unconditional branch, e.g. {'class_labels': 10}"
            )
        self.label_key = str(label_key)
        self.labels = labels
        self.uncond_kwargs = dict(uncond_kwargs or {})
        self.interval: tuple[float, float] | None = None
        if interval is not None:
            lo, hi = (float(v) for v in interval)
            if math.isnan(lo) or math.isnan(hi) or not 0.0 <= lo < hi:
                raise DiffsampleError(f"interval (sigma_lo, sigma_hi) needs 0 <= sigma_lo < sigma_hi, got {interval}")
            self.interval = (lo, hi)
        branches = 1 + int(self.scale != 0) + int(self.cfg_scale != 1)
        self.nfe_per_call = branches * self.inner.nfe_per_call
        self.network_calls_per_call = branches * self.inner.network_calls_per_call

    def guided_at(self, sigma: torch.Tensor) -> torch.Tensor:
        """Boolean ``(B,)``: where guidance applies, ``σ ∈ (σ_lo, σ_hi]`` (everywhere without an interval)."""
        if self.interval is None:
            return torch.ones(sigma.shape, dtype=torch.bool, device=sigma.device)
        lo, hi = self.interval
        return (sigma > lo) & (sigma <= hi)

    def _labels(self, kwargs: Mapping[str, Any], batch: int, device: torch.device) -> torch.Tensor:
        value = kwargs.get(self.label_key, self.labels)
        if value is None:
            raise DiffsampleError(f"gradient-free guidance needs target labels: pass {self.label_key}=… or labels=…")
        y = torch.as_tensor(value, device=device).long().reshape(-1)
        if y.numel() == 1:
            y = y.expand(batch)
        if y.numel() != batch:
            raise ShapeError(f"{self.label_key} must be one label or {batch}, got {y.numel()}")
        return y

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        y = self._labels(kwargs, x.shape[0], x.device)
        d_c = to_work(self.call_inner(self.inner, x, sigma, {**kwargs, self.label_key: y}))
        active = self.guided_at(sigma)
        if not bool(active.any()) or (self.scale == 0 and self.cfg_scale == 1):
            return d_c
        out = d_c
        if self.scale != 0:
            logits = self.classifier(d_c)
            self.count_auxiliary()
            ref, ratio = gfcg_reference(logits, y)
            d_r = to_work(self.call_inner(self.inner, x, sigma, {**kwargs, self.label_key: ref}))
            omega = append_dims(self.scale * ratio.to(device=x.device, dtype=d_c.dtype), x.dim())
            out = out + omega * (d_c - d_r)
        if self.cfg_scale != 1:
            d_u = to_work(self.call_inner(self.inner, x, sigma, {**kwargs, **self.uncond_kwargs}))
            out = out + (self.cfg_scale - 1.0) * (d_c - d_u)
        if not bool(active.all()):
            out = torch.where(append_dims(active, x.dim()), out, d_c)
        return out


def gradient_free_guidance(
    denoiser: contracts.Denoiser | Callable[..., torch.Tensor],
    classifier: CleanClassifier,
    scale: float,
    *,
    label_key: str = "class_labels",
    labels: torch.Tensor | int | None = None,
    cfg_scale: float = 1.0,
    uncond_kwargs: Mapping[str, Any] | None = None,
    interval: tuple[float, float] | None = None,
) -> GradientFreeClassifierGuidance:
    """Gradient-free classifier guidance (Shenoy et al. 2024) of a class-conditional ``denoiser``.

    Args:
        denoiser: ``D(x, sigma, **{label_key: labels})``, a class-conditional denoiser.
        classifier: ``classifier(x0_hat) -> (B, C)`` logits of an ordinary classifier of clean samples (run on
            the conditional ``x̂0``, no gradient; e.g. the shipped digits classifier on clamped ``x̂0``).
        scale: ω, the largest weight of the reference-class contrast.
        label_key: the denoiser's label keyword.
        labels: target labels when the call does not pass ``label_key`` (one int or ``(B,)``).
        cfg_scale: add classifier-free guidance with this weight (1: none) using ``uncond_kwargs``.
        uncond_kwargs: keywords of the unconditional branch, e.g. ``{"class_labels": NULL_LABEL}``.
        interval: ``(σ_lo, σ_hi)``: guide only for ``σ ∈ (σ_lo, σ_hi]``.
    """
    return GradientFreeClassifierGuidance(
        denoiser,
        classifier,
        scale,
        label_key=label_key,
        labels=labels,
        cfg_scale=cfg_scale,
        uncond_kwargs=uncond_kwargs,
        interval=interval,
    )
