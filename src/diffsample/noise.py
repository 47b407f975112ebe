"""Seeded noise sources: every sample of a batch draws from its own random stream.

Stochastic code never touches the global RNG. It takes a *noise source* and calls it for a
standard-normal tensor shaped like ``x``. :func:`seeded` gives sample ``i`` its own
``torch.Generator``, so sample ``i`` gets the same noise whatever the batch size or the other
samples in the batch, provided it keeps its seed.
"""

from __future__ import annotations

import hashlib
import numbers
from collections.abc import Sequence
from typing import Protocol

import torch

from .errors import ShapeError

__all__ = ["NoiseSource", "SeededNoise", "seeded", "derive_seed"]


class NoiseSource(Protocol):
    """Something that returns standard-normal noise shaped like ``x``.

    ``sigma`` and ``sigma_next`` say which interval of the walk the noise is for; sources that
    ignore them (the seeded streams) draw fresh noise each call, Brownian-tree sources use them.
    """

    def __call__(
        self, x: torch.Tensor, sigma: float | None = None, sigma_next: float | None = None
    ) -> torch.Tensor: ...


def derive_seed(seed: int, index: int) -> int:
    """A 63-bit seed for stream ``index`` of base ``seed`` (stable across runs and platforms)."""
    digest = hashlib.blake2b(f"{seed}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


class SeededNoise:
    """One ``torch.Generator`` per sample.

    ``seeds`` is a sequence of per-sample seeds, or one ``int``: then sample ``i`` uses the stream
    ``derive_seed(seed, i)``, so a batch of 64 and a batch of 1 agree on sample 0. Successive calls
    continue each stream. Noise is drawn on the CPU in float32 and moved to x's device and dtype,
    so results do not depend on the device's RNG either.
    """

    def __init__(self, seeds: int | Sequence[int] | torch.Tensor) -> None:
        if isinstance(seeds, torch.Tensor):
            seeds = [int(s) for s in seeds.flatten().tolist()]
        self.base: int | None = None
        self._seeds: list[int] | None = None
        if isinstance(seeds, numbers.Integral):
            self.base = int(seeds)
        else:
            self._seeds = [int(s) for s in seeds]
            if not self._seeds:
                raise ShapeError("seeded() needs at least one seed")
        self._generators: dict[int, torch.Generator] = {}

    def _generator(self, i: int) -> torch.Generator:
        g = self._generators.get(i)
        if g is None:
            if self._seeds is not None:
                seed = self._seeds[i]
            else:
                assert self.base is not None
                seed = derive_seed(self.base, i)
            g = torch.Generator().manual_seed(seed)
            self._generators[i] = g
        return g

    def standard_normal(self, shape: Sequence[int], dtype: torch.dtype = torch.float32,
                        device: torch.device | str | None = None) -> torch.Tensor:
        """Draw a ``(B, …)`` standard-normal tensor, row ``i`` from stream ``i``."""
        shape = tuple(int(s) for s in shape)
        if not shape:
            raise ShapeError("noise shape needs a batch dimension")
        batch = shape[0]
        if self._seeds is not None and batch > len(self._seeds):
            raise ShapeError(f"batch of {batch} samples but only {len(self._seeds)} seeds were given")
        rows = [torch.randn(shape[1:], generator=self._generator(i), dtype=torch.float32) for i in range(batch)]
        return torch.stack(rows).to(device=device, dtype=dtype)

    def initial(self, shape: Sequence[int], sigma: float, dtype: torch.dtype = torch.float32,
                device: torch.device | str | None = None) -> torch.Tensor:
        """The starting state ``sigma · z`` of a walk that begins at noise level ``sigma``."""
        return float(sigma) * self.standard_normal(shape, dtype=dtype, device=device)

    def __call__(self, x: torch.Tensor, sigma: float | None = None, sigma_next: float | None = None) -> torch.Tensor:
        return self.standard_normal(x.shape, dtype=x.dtype, device=x.device)


def seeded(seeds: int | Sequence[int] | torch.Tensor) -> SeededNoise:
    """A noise source with one stream per sample; see :class:`SeededNoise`."""
    return SeededNoise(seeds)
