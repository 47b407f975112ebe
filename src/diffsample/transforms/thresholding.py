"""Dynamic thresholding (Saharia et al. 2022, "Photorealistic Text-to-Image Diffusion Models with Deep
Language Understanding" (Imagen), §2.3; Lu et al. 2022, DPM-Solver++, §4) as a denoiser transform.

Each clean-data estimate ``x̂0`` is clipped per sample to ``[−s, s]`` and rescaled into the data range:

    s = max(quantile_p(|x̂0|), c),    x̂0' = clip(x̂0, −s, s) · c / s,

with ``p`` the ``ratio`` (Imagen: 0.995) and ``c`` the ``max_value`` of the data range ``[−c, c]`` (Imagen's
``[−1, 1]`` generalised). A sample whose ``p``-quantile of ``|x̂0|`` is at most ``c`` gets ``s = c``: only
its values beyond ``±c`` are clipped, nothing is rescaled. Under strong guidance this keeps ``x̂0`` from
saturating. One inner call per call: NFE unchanged.

:func:`dynamic_threshold` is the maths on a tensor, for solvers that threshold inside their update;
:func:`dynamic_thresholding` wraps a denoiser so that every solver sees thresholded outputs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from .. import contracts
from ..denoisers import append_dims
from ..errors import DiffsampleError
from .base import Transform, to_work

__all__ = ["DynamicThresholding", "capped_threshold", "dynamic_threshold", "dynamic_thresholding"]


def dynamic_threshold(x0: torch.Tensor, ratio: float = 0.995, max_value: float = 1.0) -> torch.Tensor:
    """Imagen's dynamic thresholding of ``x0`` (B, …): clip each sample to ``±s``, rescale by ``max_value/s``.

    ``s = max(quantile(|x̂0|, ratio), max_value)`` per sample (module docstring). The quantile is taken
    in float32 at least; the result keeps x0's dtype.
    """
    flat = x0.detach().abs().reshape(x0.shape[0], -1)
    if flat.dtype not in (torch.float32, torch.float64):
        flat = flat.float()
    s = append_dims(torch.quantile(flat, ratio, dim=1).clamp_(min=max_value).to(x0.dtype), x0.dim())
    return torch.clamp(x0, -s, s).mul_(max_value / s)


def capped_threshold(x0: torch.Tensor, ratio: float = 0.995, max_value: float = 1.0) -> torch.Tensor:
    """diffusers' variant of dynamic thresholding (its schedulers' ``thresholding=True``): the threshold is
    ``s = clamp(quantile_p(|x̂0|), 1, max_value)`` per sample and the result ``clip(x̂0, −s, s) / s`` lies in
    ``[−1, 1]`` — here ``max_value`` (diffusers' ``sample_max_value``) caps the threshold instead of naming the
    data range as in :func:`dynamic_threshold`. The two agree when ``max_value = 1``. The quantile is taken in
    float32 at least, as diffusers does for half-precision samples; the result keeps x0's dtype.
    """
    flat = x0.reshape(x0.shape[0], -1)
    work = flat if flat.dtype in (torch.float32, torch.float64) else flat.float()
    s = torch.quantile(work.abs(), ratio, dim=1).clamp(min=1.0, max=max_value).unsqueeze(1)
    return (torch.clamp(work, -s, s) / s).to(x0.dtype).reshape(x0.shape)


def check_threshold(ratio: float, max_value: float) -> None:
    """Raise unless ``0 < ratio <= 1`` and ``max_value > 0``."""
    if not 0 < ratio <= 1 or not max_value > 0:
        raise DiffsampleError(
            f"thresholding needs 0 < threshold_ratio <= 1 and max_value > 0, got {ratio}, {max_value}"
        )


class DynamicThresholding(Transform):
    """``D' = dynamic_threshold(D, ratio, max_value)`` in the work dtype; built by :func:`dynamic_thresholding`."""

    def __init__(
        self, denoiser: contracts.Denoiser | Callable[..., torch.Tensor], ratio: float = 0.995, max_value: float = 1.0
    ) -> None:
        super().__init__(denoiser)
        check_threshold(ratio, max_value)
        self.ratio, self.max_value = float(ratio), float(max_value)

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        return dynamic_threshold(to_work(self.inner(x, sigma, **kwargs)), self.ratio, self.max_value)

    def __repr__(self) -> str:
        return f"DynamicThresholding(ratio={self.ratio:g}, max_value={self.max_value:g})"


def dynamic_thresholding(
    denoiser: contracts.Denoiser | Callable[..., torch.Tensor], ratio: float = 0.995, max_value: float = 1.0
) -> DynamicThresholding:
    """Dynamic thresholding of ``denoiser``'s ``x̂0`` (Imagen, §2.3), as a new denoiser (module docstring).

    Args:
        denoiser: the model ``D(x, σ)``.
        ratio: the quantile ``p`` of ``|x̂0|`` per sample (Imagen uses 0.995).
        max_value: the data range ``[−max_value, max_value]``.
    """
    return DynamicThresholding(denoiser, ratio, max_value)
