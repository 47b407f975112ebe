"""Inference-time scaling: turn more compute into better samples with rewards, particles and search.

* :mod:`.resampling` — log-weights, effective sample size, the SMC normaliser factor and four unbiased
  resampling schemes (multinomial, stratified, systematic, residual), shared by every particle method.
"""

from __future__ import annotations

from .resampling import (
    RESAMPLING_SCHEMES,
    effective_sample_size,
    log_mean_weight,
    normalized_weights,
    resample,
    uniforms_needed,
)

__all__ = [
    "RESAMPLING_SCHEMES",
    "effective_sample_size",
    "log_mean_weight",
    "normalized_weights",
    "resample",
    "uniforms_needed",
]
