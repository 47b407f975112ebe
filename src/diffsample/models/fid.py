"""Fréchet distance between Gaussian fits of digit-classifier features (an FID for 8×8 digits).

For feature means ``μ₁, μ₂`` and covariances ``Σ₁, Σ₂`` (Heusel et al. 2017, eq. 6; Dowson & Landau 1982):

    d² = |μ₁ − μ₂|² + tr Σ₁ + tr Σ₂ − 2 tr (Σ₁^{1/2} Σ₂ Σ₁^{1/2})^{1/2}.

The matrix square root uses symmetric eigen-decompositions in float64: ``Σ₁^{1/2}`` from ``eigh(Σ₁)``
and the trace term as the sum of square roots of the (clipped non-negative) eigenvalues of the
symmetric PSD matrix ``Σ₁^{1/2} Σ₂ Σ₁^{1/2}``, which has the same eigenvalues as ``Σ₁Σ₂``.
Covariances are unbiased (divided by ``n − 1``). Like every FID, the value is biased upwards for
small sample sizes; compare numbers at equal sample sizes (the model card's floor is two real halves).
"""

from __future__ import annotations

from functools import lru_cache

import torch

from ..errors import ShapeError
from .classifier import classifier_features
from .data import digits_data

__all__ = ["frechet_distance", "gaussian_frechet_distance", "gaussian_fit"]


def gaussian_fit(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and unbiased covariance of ``(n, d)`` features, in float64."""
    f = features.to(torch.float64)
    if f.dim() != 2 or f.shape[0] < 2:
        raise ShapeError(f"need (n, d) features with n >= 2, got shape {tuple(f.shape)}")
    return f.mean(0), torch.cov(f.T, correction=1).reshape(f.shape[1], f.shape[1])


def _psd_sqrt(m: torch.Tensor) -> torch.Tensor:
    w, v = torch.linalg.eigh(0.5 * (m + m.T))
    return (v * w.clamp_min(0).sqrt()) @ v.T


def gaussian_frechet_distance(mu1: torch.Tensor, cov1: torch.Tensor, mu2: torch.Tensor, cov2: torch.Tensor) -> float:
    """Fréchet (2-Wasserstein) distance squared between ``N(μ₁, Σ₁)`` and ``N(μ₂, Σ₂)`` (module formula)."""
    mu1, mu2, cov1, cov2 = (t.to(torch.float64) for t in (mu1, mu2, cov1, cov2))
    root1 = _psd_sqrt(cov1)
    inner = root1 @ cov2 @ root1
    trace_sqrt = torch.linalg.eigvalsh(0.5 * (inner + inner.T)).clamp_min(0).sqrt().sum()
    d2 = (mu1 - mu2).pow(2).sum() + torch.trace(cov1) + torch.trace(cov2) - 2 * trace_sqrt
    return float(d2.clamp_min(0))


@lru_cache(maxsize=1)
def _reference_stats() -> tuple[torch.Tensor, torch.Tensor]:
    x, _ = digits_data()
    return gaussian_fit(classifier_features(x))


def frechet_distance(samples: torch.Tensor, reference: torch.Tensor | None = None) -> float:
    """Fréchet distance between classifier features of ``samples`` and of ``reference`` images.

    Args:
        samples: generated digits ``(n, 1, 8, 8)`` in [−1, 1] (clamped to it), n >= 2.
        reference: real digits of the same form; default all 1797 digits (statistics cached).
    """
    mu1, cov1 = gaussian_fit(classifier_features(samples))
    mu2, cov2 = _reference_stats() if reference is None else gaussian_fit(classifier_features(reference))
    return gaussian_frechet_distance(mu1, cov1, mu2, cov2)
