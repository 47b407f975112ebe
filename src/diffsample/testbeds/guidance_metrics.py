"""Metrics of guided sampling against an exact target mixture (diagonal or full covariance).

* :func:`component_weight_tv`: assign each sample to its most probable exact component (responsibilities of the
  target at a tiny σ) and take the total variation ``½ Σ_k |ŵ_k − w_k|`` to the exact weights;
* :func:`posterior_report`: that TV, the sliced 2-Wasserstein distance to fresh exact target draws
  (:func:`~diffsample.testbeds.distribution.sliced_wasserstein`) and the floor of both (the same metrics for
  other sets of exact draws of the same size, averaged: what a perfect sampler reaches at that sample size);
* :func:`denoiser_error`: the pointwise error ``max |D̃(x, σ) − D*(x, σ)|`` of a guided denoiser against the exact
  one over given points and noise levels.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import torch

from ..errors import ShapeError
from .distribution import sliced_wasserstein

__all__ = ["ExactTarget", "component_weight_tv", "denoiser_error", "posterior_report"]

_F64 = torch.float64


class ExactTarget(Protocol):
    """A mixture with exact weights, responsibilities and samples (GaussianMixture, FullCovarianceMixture)."""

    weights: torch.Tensor

    @property
    def num_components(self) -> int: ...

    def responsibilities(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor: ...

    def sample(self, n: int, generator: torch.Generator | None = None, dtype: torch.dtype = _F64) -> torch.Tensor: ...


def component_weight_tv(target: ExactTarget, x: torch.Tensor, sigma: float = 1e-6) -> float:
    """``½ Σ_k |ŵ_k − w_k|``, samples assigned by ``argmax_k r_k(x, σ)`` of the exact target."""
    if x.dim() < 2 or x.shape[0] < 1:
        raise ShapeError(f"samples must have shape (N, …) with N >= 1, got {tuple(x.shape)}")
    labels = target.responsibilities(x.detach().to("cpu", _F64), sigma).argmax(1)
    share = torch.bincount(labels, minlength=target.num_components).to(_F64) / x.shape[0]
    return float(0.5 * (share - target.weights).abs().sum())


def posterior_report(
    target: ExactTarget, x: torch.Tensor, *, seed: int = 0, n_projections: int = 256, n_floor: int = 5
) -> dict[str, float]:
    """``{"sw", "tv", "sw_floor", "tv_floor"}`` of samples ``x`` against the exact target (module docstring); the
    floors are means over ``n_floor`` sets of exact draws (one set scatters widely: W2 feels every sample that
    the multinomial component counts move between distant modes)."""
    n = x.shape[0]
    ref = target.sample(n, torch.Generator().manual_seed(10_000 + seed)).reshape(n, -1)
    flat = x.detach().to("cpu", _F64).reshape(n, -1)
    sw_floor, tv_floor = 0.0, 0.0
    for j in range(n_floor):
        other = target.sample(n, torch.Generator().manual_seed(20_000 + 100 * seed + j)).reshape(n, -1)
        sw_floor += sliced_wasserstein(other, ref, n_projections=n_projections, seed=seed) / n_floor
        tv_floor += component_weight_tv(target, other) / n_floor
    return {
        "sw": sliced_wasserstein(flat, ref, n_projections=n_projections, seed=seed),
        "tv": component_weight_tv(target, flat),
        "sw_floor": sw_floor,
        "tv_floor": tv_floor,
    }


def denoiser_error(
    guided: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    exact: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    sigmas: Sequence[float],
) -> float:
    """``max_{x, σ} |D̃(x, σ) − D*(x, σ)|`` over the points ``x`` and noise levels ``sigmas`` (float64 inputs)."""
    worst = 0.0
    for s in sigmas:
        sig = torch.full((x.shape[0],), float(s), dtype=x.dtype)
        diff = guided(x, sig) - exact(x, sig)
        worst = max(worst, float(diff.abs().max()))
    return worst
