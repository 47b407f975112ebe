"""Resampling schemes are unbiased (exact expected offspring counts), ESS and normaliser factors are exact."""

from __future__ import annotations

import math

import pytest
import torch

from diffsample.errors import DiffsampleError, ShapeError
from diffsample.scaling import (
    RESAMPLING_SCHEMES,
    effective_sample_size,
    log_mean_weight,
    resample,
    uniforms_needed,
)

WEIGHTS = torch.tensor([[0.05, 0.4, 0.1, 0.3, 0.15], [0.2, 0.2, 0.2, 0.2, 0.2]], dtype=torch.float64)


def test_ess_and_log_mean_weight_closed_forms() -> None:
    lw = WEIGHTS.log() + 3.0
    ess = effective_sample_size(lw)
    assert ess[0].item() == pytest.approx(1.0 / (WEIGHTS[0] ** 2).sum().item(), rel=1e-12)
    assert ess[1].item() == pytest.approx(5.0, rel=1e-12)
    assert log_mean_weight(lw)[0].item() == pytest.approx(3.0 + math.log(0.2), rel=1e-12)


@pytest.mark.parametrize("scheme", RESAMPLING_SCHEMES)
def test_offspring_counts_are_unbiased(scheme: str) -> None:
    k, reps = 5, 20000
    gen = torch.Generator().manual_seed(0)
    lw = WEIGHTS[:1].log().expand(reps, k)
    u = torch.rand(reps, uniforms_needed(scheme, k), generator=gen, dtype=torch.float64)
    idx = resample(lw, u, scheme)
    counts = torch.zeros(reps, k, dtype=torch.float64).scatter_add_(1, idx, torch.ones(reps, k, dtype=torch.float64))
    mean = counts.mean(0)
    se = counts.std(0) / math.sqrt(reps) + 1e-12
    assert bool(((mean - k * WEIGHTS[0]).abs() <= 5 * se + 1e-9).all()), (scheme, mean)
    if scheme in ("systematic", "residual", "stratified"):  # low-variance schemes: counts within floor/ceil or near
        assert counts.var(0).sum() < 0.9 * (k * WEIGHTS[0] * (1 - WEIGHTS[0])).sum()


def test_bad_input_is_named() -> None:
    with pytest.raises(DiffsampleError, match="valid: multinomial"):
        uniforms_needed("stratify", 4)
    with pytest.raises(ShapeError):
        resample(torch.zeros(2, 4), torch.zeros(2, 3), "multinomial")
    with pytest.raises(DiffsampleError, match="weight zero"):
        resample(torch.full((1, 3), -math.inf), torch.zeros(1, 1), "systematic")
    with pytest.raises(DiffsampleError, match="NaN"):
        effective_sample_size(torch.tensor([[0.0, math.nan]]))
