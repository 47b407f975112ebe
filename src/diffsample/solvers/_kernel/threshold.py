"""Dynamic thresholding inside a solver's update: the option check and the thresholded model call.

The maths is :func:`diffsample.transforms.thresholding.dynamic_threshold` (Imagen, Saharia et al. 2022,
§2.3) and its check :func:`~diffsample.transforms.thresholding.check_threshold`, the one home of both;
data-prediction solvers (DPM-Solver++, ``dpmpp_2m_hb``) apply it to each ``x̂0`` they integrate.
"""

from __future__ import annotations

import torch

from ...contracts import Denoiser
from ...transforms.thresholding import check_threshold, dynamic_threshold
from .levels import sigma_batch

#: ``(ratio, max_value)`` of dynamic thresholding, or ``None`` when it is off.
Threshold = tuple[float, float] | None


def threshold_option(thresholding: bool, ratio: float, max_value: float) -> Threshold:
    """The ``(ratio, max_value)`` of dynamic thresholding when ``thresholding`` is on (checked), else ``None``."""
    if not thresholding:
        return None
    check_threshold(ratio, max_value)
    return ratio, max_value


def thresholded_denoise(denoiser: Denoiser, x: torch.Tensor, sigma: float, threshold: Threshold) -> torch.Tensor:
    """One model call ``D(x, σ)``, dynamically thresholded when asked."""
    denoised = denoiser(x, sigma_batch(x, sigma))
    return denoised if threshold is None else dynamic_threshold(denoised, *threshold)
