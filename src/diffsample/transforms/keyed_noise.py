"""Seeded normals keyed by the noise level: stateless per-sample noise for transforms that draw noise.

A transform is called at whatever σ a solver asks for, possibly twice at one σ (a multistep restart, a
retry), so it cannot keep a stream position. Here the noise of sample ``i`` at level σ is a pure function
of ``(seed_i, σ, draw)``: the counter-based generator of :func:`diffsample.noise.counter_normals` with the
key ``hash(bits of σ as float64, draw)``. Sample ``i`` therefore gets the same noise whatever the batch
size, the solver's call order or the number of repeated calls, and two different levels give independent
draws. ``seeds`` follows :func:`diffsample.noise.parse_seeds`: one integer (sample ``i`` uses
``derive_seed(seed, i)``) or one seed per sample.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence

import numpy as np
import torch

from ..errors import ShapeError
from ..noise import counter_normals, derive_seed, parse_seeds, splitmix64

__all__ = ["KeyedNormals"]

_U64 = np.uint64


def _level_key(sigma: float, draw: int) -> int:
    """A 64-bit key from the float64 bits of σ and the draw index (SplitMix64-mixed, so nearby σ look random)."""
    bits = struct.unpack("<Q", struct.pack("<d", float(sigma)))[0]
    mixed = splitmix64(np.array([bits], dtype=_U64))[0] ^ _U64((0xC0FFEE << 16) + int(draw))
    return int(splitmix64(np.array([mixed], dtype=_U64))[0])


class KeyedNormals:
    """Standard normals ``n_i(σ, draw)`` per sample, a function of the sample's seed, σ and ``draw`` only."""

    def __init__(self, seeds: int | Sequence[int] | torch.Tensor, who: str = "seeds") -> None:
        self.base, self._seeds = parse_seeds(seeds, who)

    def _mixed(self, batch: int) -> np.ndarray:
        if self._seeds is not None:
            if batch > len(self._seeds):
                raise ShapeError(f"batch of {batch} samples but only {len(self._seeds)} seeds were given")
            raw = self._seeds[:batch]
        else:
            assert self.base is not None
            raw = [derive_seed(self.base, i) for i in range(batch)]
        return splitmix64(np.array(raw, dtype=_U64))

    def __call__(
        self, sigma: torch.Tensor, shape: Sequence[int], dtype: torch.dtype, device: torch.device, draw: int = 0
    ) -> torch.Tensor:
        """Normals of shape ``shape = (B, …)``; row ``i`` keyed by ``sigma[i]`` (a ``(B,)`` tensor) and ``draw``."""
        batch, size = int(shape[0]), math.prod(int(s) for s in shape[1:])
        levels = sigma.detach().to("cpu", torch.float64).reshape(-1).tolist()
        if len(levels) != batch:
            raise ShapeError(f"sigma has {len(levels)} entries for a batch of {batch}")
        mixed = self._mixed(batch)
        out = np.empty((batch, size), dtype=np.float64)
        for level in sorted(set(levels)):
            rows = np.array([i for i, s in enumerate(levels) if s == level])
            out[rows] = counter_normals(mixed[rows], _level_key(level, draw), size)
        return torch.from_numpy(out).reshape(tuple(int(s) for s in shape)).to(device=device, dtype=dtype)
