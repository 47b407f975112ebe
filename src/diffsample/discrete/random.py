"""Seeded per-sample uniforms for discrete samplers: sample ``i`` draws from its own counter-based stream.

The same construction as :func:`diffsample.noise.counter_normals` (SplitMix64, Steele, Lea & Flood 2014), with
uniforms instead of normals: the ``k``-th call of sample ``i`` gives element ``e`` the value
``(top53(SplitMix64(SplitMix64(SplitMix64(seed_i) ⊕ key(k)) + e)) + 1/2) · 2⁻⁵³``, a float64 in the open
interval ``(0, 1)``. A value depends only on the sample's seed and how many calls it has made, so sample ``i``
is the same in any batch. Seeds follow :func:`diffsample.noise.parse_seeds` (one integer: sample ``i`` uses
``derive_seed(seed, i)``; or one seed per sample). The keys differ from the normal streams' keys, so a seed's
uniform and normal streams are unrelated.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..noise import CounterStreams, splitmix64
from .contracts import UniformSource

__all__ = ["SeededUniforms", "counter_uniforms", "seeded_uniforms", "uniform_source"]

_U64 = np.uint64
_KEY_TAG = 0xD15C0000  # distinct from diffsample.noise's normal-stream keys
_HALF_ULP = 0.5
_TWO_POW_M53 = 2.0**-53


def counter_uniforms(mixed: np.ndarray, key: int, size: int) -> np.ndarray:
    """``(len(mixed), size)`` float64 uniforms in ``(0, 1)``; row ``i`` a function of ``(mixed[i], key)`` only.

    ``mixed[i]`` is ``SplitMix64(seed_i)`` (module docstring).
    """
    base = splitmix64(mixed ^ _U64(key & ((1 << 64) - 1)))[:, None]
    with np.errstate(over="ignore"):
        counter = splitmix64(base + np.arange(size, dtype=_U64)[None, :])
    return ((counter >> _U64(11)).astype(np.float64) + _HALF_ULP) * _TWO_POW_M53


def _call_key(k: int) -> int:
    return int(splitmix64(np.array([_KEY_TAG + k], dtype=_U64))[0])


class SeededUniforms(CounterStreams):
    """One uniform stream per sample (module docstring); ``u(batch, size)`` continues every row's stream."""

    def __init__(self, seeds: int | Sequence[int] | torch.Tensor) -> None:
        super().__init__(seeds, "seeded_uniforms()")

    def __call__(self, batch: int, size: int) -> torch.Tensor:
        return torch.from_numpy(self.draw(batch, size, counter_uniforms, _call_key))


def seeded_uniforms(seeds: int | Sequence[int] | torch.Tensor) -> SeededUniforms:
    """A uniform source with one stream per sample; see :class:`SeededUniforms`."""
    return SeededUniforms(seeds)


def uniform_source(uniforms: UniformSource | None, seed: int | Sequence[int] | torch.Tensor | None) -> UniformSource:
    """The source a sampler draws from: ``uniforms`` if given, else :func:`seeded_uniforms` of ``seed`` (0 when
    neither is given, so a sampler is reproducible by default)."""
    if uniforms is not None:
        return uniforms
    return SeededUniforms(0 if seed is None else seed)
