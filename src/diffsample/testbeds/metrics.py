"""Error metrics of sampled states against exact references on a test bed.

All metrics compute in float64 and return Python floats (or a float64 tensor for the per-sample
variant), so they can go straight into a benchmark table.
"""

from __future__ import annotations

import torch

from .mixture import GaussianMixture

__all__ = ["POINT_MASS_LL_SIGMA", "mean_log_likelihood", "mode_mismatch", "rmse", "rmse_per_sample"]

POINT_MASS_LL_SIGMA = 0.05
"""Noise level at which :func:`mean_log_likelihood` evaluates beds with point masses (digits).

The density of a data set is a sum of Dirac masses, so its log-likelihood at σ = 0 is degenerate. We
use the noised marginal ``p_σ`` at σ = 0.05 instead: below half a grey level of the digits bed
(levels are 1/8 = 0.125 apart after scaling to [-1, 1]), so it rewards landing on a data point, and
large enough to stay finite for samples a little off it.
"""


def _pair(x: torch.Tensor, ref: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if x.shape != ref.shape:
        raise ValueError(f"x and ref must have the same shape, got {tuple(x.shape)} and {tuple(ref.shape)}")
    return x.detach().to("cpu", torch.float64), ref.detach().to("cpu", torch.float64)


def rmse_per_sample(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Per-sample root mean square error ``sqrt(mean_j (x_ij − ref_ij)²)``, float64 ``(B,)``."""
    a, b = _pair(x, ref)
    return (a - b).flatten(1).square().mean(1).sqrt()


def rmse(x: torch.Tensor, ref: torch.Tensor) -> float:
    """Root mean square error over all elements of the batch: ``sqrt(mean_{i,j} (x_ij − ref_ij)²)``."""
    a, b = _pair(x, ref)
    return float((a - b).square().mean().sqrt())


def mode_mismatch(bed: GaussianMixture, x: torch.Tensor, ref: torch.Tensor) -> float:
    """Fraction of samples whose mode ``bed.component(·, 0)`` differs from the reference's.

    For a Gaussian mixture the mode is the component of largest responsibility at σ = 0; for an
    empirical bed (point masses) it is the nearest data point.
    """
    a, b = _pair(x, ref)
    return float((bed.component(a, 0.0) != bed.component(b, 0.0)).to(torch.float64).mean())


def mean_log_likelihood(bed: GaussianMixture, x: torch.Tensor, sigma: float | None = None) -> float:
    """Mean of ``log p_σ(x)`` over the batch under the bed's exact (noised) marginal.

    ``sigma`` defaults to 0 (the data density itself) for beds without point masses and to
    :data:`POINT_MASS_LL_SIGMA` for beds with them.
    """
    if sigma is None:
        sigma = POINT_MASS_LL_SIGMA if bed.has_point_masses else 0.0
    a = x.detach().to("cpu", torch.float64)
    return float(bed.log_prob(a, float(sigma)).mean())
