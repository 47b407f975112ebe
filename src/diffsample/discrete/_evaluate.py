"""The denoiser call of a sampler walk, with MDLM's cache for time-free models.

A time-free denoiser's output depends on ``z`` alone, so a row whose tokens did not change since its last
evaluation keeps its probabilities; only changed rows are evaluated (one call on that sub-batch), and a step
where nothing changed costs no call (Sahoo et al. 2024, MDLM §"caching"). Models that read ``t`` are always
called. Row ``i``'s output is the model's output on row ``i`` whichever rows share its call.
"""

from __future__ import annotations

import torch

from .contracts import MaskedDenoiser
from .denoiser import broadcast_time

__all__ = ["Evaluator"]


class Evaluator:
    """``evaluate(z, t) -> (B, L, V)`` probabilities, cached per row when allowed (module docstring)."""

    def __init__(self, denoiser: MaskedDenoiser, cache: bool = True) -> None:
        self.denoiser = denoiser
        self.cache = bool(cache) and bool(getattr(denoiser, "time_free", False))
        self._z: torch.Tensor | None = None
        self._p: torch.Tensor | None = None

    def __call__(self, z: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        t = broadcast_time(t, z.shape[0])
        if not self.cache or self._z is None or self._p is None:
            p = self.denoiser(z, t)
        else:
            changed = (z != self._z).any(-1)
            if not changed.any():
                return self._p
            p = self._p.clone()
            p[changed] = self.denoiser(z[changed], t[changed])
        if self.cache:
            self._z, self._p = z.clone(), p
        return p
