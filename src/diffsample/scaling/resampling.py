"""Importance weights and resampling for particle methods (SMC / Feynman–Kac steering, twisted SMC, SVDD).

Weights are kept as log-weights ``log w_k`` of shape ``(G, K)``: ``G`` independent populations (one per prompt,
class or seed group) of ``K`` particles each; every operation acts within a population, so population ``g`` gives
the same result whatever the other populations are.

* :func:`normalized_weights` — ``w_k / Σ_j w_j`` by log-sum-exp (float64);
* :func:`log_mean_weight` — ``log (1/K) Σ_k w_k``, the per-step factor of the SMC estimate of the normaliser
  ``log Z`` (Del Moral 2004; Doucet & Johansen 2009, "A Tutorial on Particle Filtering and Smoothing", eq. 31);
* :func:`effective_sample_size` — ``ESS = (Σ w)² / Σ w²`` (Kong, Liu & Wong 1994), in ``[1, K]``;
* :func:`resample` — ancestor indices ``a_k`` with ``E[#{k : a_k = j}] = K w̄_j`` by four schemes
  (Douc, Cappé & Moulines 2005, "Comparison of Resampling Schemes for Particle Filtering"):
  ``multinomial`` (i.i.d. draws), ``stratified`` (one uniform per stratum ``[(k−1)/K, k/K)``), ``systematic`` (one
  uniform shared by all strata) and ``residual`` (``⌊K w̄_j⌋`` copies, the remainder multinomially); all four are
  unbiased, the last three have lower variance than multinomial.

Randomness comes from uniforms the caller passes in (``(G, K)`` for multinomial / stratified / residual, ``(G, 1)``
for systematic), so a method draws them from its own seeded per-population stream
(:class:`diffsample.noise.CounterStreams`) and stays deterministic and batch-invariant.
"""

from __future__ import annotations

import torch

from ..errors import DiffsampleError, ShapeError

__all__ = [
    "RESAMPLING_SCHEMES",
    "effective_sample_size",
    "log_mean_weight",
    "normalized_weights",
    "resample",
    "uniforms_needed",
]

RESAMPLING_SCHEMES = ("multinomial", "stratified", "systematic", "residual")
"""The resampling schemes :func:`resample` knows."""


def _checked(log_weights: torch.Tensor) -> torch.Tensor:
    if log_weights.dim() != 2 or log_weights.shape[1] < 1:
        raise ShapeError(f"log-weights must have shape (populations, particles), got {tuple(log_weights.shape)}")
    lw = log_weights.to(torch.float64)
    if bool(torch.isnan(lw).any()) or bool((lw == float("inf")).any()):
        raise DiffsampleError("log-weights contain NaN or +inf (a potential or reward returned a non-finite value)")
    if bool((lw == float("-inf")).all(dim=1).any()):
        raise DiffsampleError("every particle of a population has weight zero (log-weight -inf): nothing to resample")
    return lw


def normalized_weights(log_weights: torch.Tensor) -> torch.Tensor:
    """``w̄_k = w_k / Σ_j w_j`` per population, float64, from log-weights of shape ``(G, K)``."""
    return torch.softmax(_checked(log_weights), dim=1)


def log_mean_weight(log_weights: torch.Tensor) -> torch.Tensor:
    """``log (1/K) Σ_k w_k`` per population, shape ``(G,)`` (the step's factor of the SMC normaliser estimate)."""
    lw = _checked(log_weights)
    return torch.logsumexp(lw, dim=1) - torch.log(torch.tensor(float(lw.shape[1]), dtype=torch.float64))


def effective_sample_size(log_weights: torch.Tensor) -> torch.Tensor:
    """Kish's effective sample size ``(Σ w)² / Σ w²`` per population, shape ``(G,)``, in ``[1, K]``."""
    w = normalized_weights(log_weights)
    return 1.0 / w.square().sum(dim=1)


def uniforms_needed(scheme: str, particles: int) -> int:
    """How many uniforms per population :func:`resample` needs for ``scheme`` with ``particles`` particles."""
    if scheme not in RESAMPLING_SCHEMES:
        raise DiffsampleError(f"unknown resampling scheme {scheme!r}; valid: {', '.join(RESAMPLING_SCHEMES)}")
    return 1 if scheme == "systematic" else particles


def _search(cdf: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Index ``j`` with ``cdf[j−1] ≤ u < cdf[j]`` per row (clamped to the last particle against round-off)."""
    idx = torch.searchsorted(cdf, points.contiguous(), right=True)
    return idx.clamp_max(cdf.shape[1] - 1)


def resample(log_weights: torch.Tensor, uniforms: torch.Tensor, scheme: str = "systematic") -> torch.Tensor:
    """Ancestor indices ``(G, K)`` (int64, within each population) drawn by ``scheme`` from ``log_weights``.

    Args:
        log_weights: ``(G, K)`` unnormalised log-weights (``-inf`` allowed for dead particles).
        uniforms: ``(G, n)`` uniforms in ``[0, 1)``, ``n = uniforms_needed(scheme, K)``.
        scheme: one of :data:`RESAMPLING_SCHEMES`.

    Returns sorted ancestors for the stratified, systematic and residual schemes (their natural order), and the
    draw order for multinomial.
    """
    w = normalized_weights(log_weights)
    groups, k = w.shape
    need = uniforms_needed(scheme, k)
    if uniforms.shape != (groups, need):
        raise ShapeError(f"{scheme} resampling needs uniforms of shape ({groups}, {need}), got {tuple(uniforms.shape)}")
    u = uniforms.to(torch.float64)
    if bool(((u < 0) | (u >= 1)).any()):
        raise DiffsampleError("resampling uniforms must lie in [0, 1)")
    cdf = torch.cumsum(w, dim=1)
    cdf[:, -1] = 1.0
    strata = torch.arange(k, dtype=torch.float64).unsqueeze(0)
    if scheme == "multinomial":
        return _search(cdf, u)
    if scheme == "stratified":
        return _search(cdf, (strata + u) / k)
    if scheme == "systematic":
        return _search(cdf, (strata + u) / k)
    # residual: floor(K w̄) deterministic copies, the R = K − Σ floor(K w̄) others multinomially on the residuals
    counts = torch.floor(k * w)
    rest = (k * w - counts).clamp_min(0.0)
    out = torch.empty(groups, k, dtype=torch.int64)
    for g in range(groups):
        fixed = torch.repeat_interleave(torch.arange(k), counts[g].to(torch.int64))
        r = k - fixed.numel()
        if r > 0:
            rcdf = torch.cumsum(rest[g] / rest[g].sum(), dim=0)
            rcdf[-1] = 1.0
            extra = torch.searchsorted(rcdf, u[g, :r].contiguous(), right=True).clamp_max(k - 1)
            fixed = torch.cat([fixed, extra])
        out[g] = torch.sort(fixed).values
    return out
