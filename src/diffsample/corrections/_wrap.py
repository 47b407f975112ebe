"""The shared base of the correction transforms: a denoiser that wraps one denoiser and counts nothing itself."""

from __future__ import annotations

from typing import Any

import torch

from ..denoisers import WrappedDenoiser, broadcast_sigma
from ..errors import ShapeError


class Correction(WrappedDenoiser):
    """A correction built on ``inner`` (read-through counters: a transform that calls ``inner`` once per
    call costs 1 NFE). Subclasses implement :meth:`denoise` with ``sigma`` already shaped ``(B,)``; the
    output must have ``x``'s shape.
    """

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor | float, **kwargs: Any) -> torch.Tensor:
        out = self.denoise(x, broadcast_sigma(sigma, x), **kwargs)
        if out.shape != x.shape:
            raise ShapeError(f"{type(self).__name__} returned shape {tuple(out.shape)} for x of shape "
                             f"{tuple(x.shape)}")
        return out


def work(t: torch.Tensor) -> torch.Tensor:
    """At least float32 for the correction maths (fp16/bf16 model outputs are promoted)."""
    return t.to(torch.promote_types(t.dtype, torch.float32))
