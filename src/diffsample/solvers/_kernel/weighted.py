"""Weighted sums of tensors, the update of every linear multistep form (momentum histories, fitted solver weights)."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def weighted_sum(weights: Sequence[float], terms: Sequence[torch.Tensor]) -> torch.Tensor:
    """``Σ_j weights[j] · terms[j]`` in the first term's dtype, one tensor op per term (a new tensor)."""
    out = torch.mul(terms[0], weights[0])
    for w, term in zip(weights[1:], terms[1:], strict=True):
        out.add_(term, alpha=w)
    return out
