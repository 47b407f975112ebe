"""Seeded noise sources: every sample of a batch draws from its own random stream.

Stochastic code never touches the global RNG. It takes a *noise source* and calls it for a
standard-normal tensor shaped like ``x``. :func:`seeded` gives sample ``i`` its own stream, so sample
``i`` gets the same noise whatever the batch size or the other samples in the batch, provided it
keeps its seed.

Random numbers
--------------
Two generators, chosen by the number of elements per sample (the same for every row of a call, so
the choice never depends on the batch):

* rows of fewer than :data:`ROW_GENERATOR_FROM` elements (low-dimensional data, many samples) are
  counter-based and drawn for the whole batch at once: the ``k``-th draw of sample ``i`` (its ``k``-th
  call) is ``z[e] = BoxMuller(SplitMix64(SplitMix64(seed_i) ⊕ key(k), e))`` for its elements ``e``
  (:func:`counter_normals`; SplitMix64: Steele, Lea & Flood 2014, "Fast splittable pseudorandom number
  generators"), computed vectorised in numpy ``uint64`` (well-defined wrapping arithmetic) in float64;
* larger rows (images) come from one ``torch.Generator`` per sample, drawn in float32, one call per row
  (seeded with :func:`generator_seed`: torch keeps 32 bits of a seed, so wider seeds are hashed first).

Seeds follow one rule for every container and row size: non-negative integers below 2**64
(:func:`parse_seeds`); anything else is a :class:`~diffsample.errors.DiffsampleError`.

Both run on the CPU and are moved to x's device and dtype; a value depends only on the sample's seed
and its sequence of calls, not on the batch, the device or the global RNG. Measured (one busy core,
process time): 10 000 two-dimensional samples 2.0 ms per call counter-based against 98 ms with a
generator per row (the cost of a per-row Python call; an exact ``ring2d`` denoiser call on that batch
takes ≈ 26 ms); 64 samples of 3×32×32 2.0 ms per call with per-row generators against 23 ms counter-based.
"""

from __future__ import annotations

import hashlib
import math
import numbers
from collections.abc import Callable, Sequence

import numpy as np
import torch

from .contracts import NoiseSource
from .errors import DiffsampleError, ShapeError

__all__ = [
    "CounterStreams",
    "NoiseSource",
    "ROW_GENERATOR_FROM",
    "SeededNoise",
    "counter_normals",
    "derive_seed",
    "parse_seeds",
    "seeded",
]

ROW_GENERATOR_FROM = 256
"""Rows with at least this many elements are drawn from per-sample ``torch.Generator`` streams (module docstring)."""

_U64 = np.uint64
_GOLDEN = _U64(0x9E3779B97F4A7C15)
_M1 = _U64(0xBF58476D1CE4E5B9)
_M2 = _U64(0x94D049BB133111EB)
_STREAM_A = _U64(0x243F6A8885A308D3)  # two streams for the Box–Muller pair (digits of π)
_STREAM_B = _U64(0x13198A2E03707344)
_TWO_POW_M53 = 2.0**-53


def derive_seed(seed: int, index: int) -> int:
    """A 63-bit seed for stream ``index`` of base ``seed`` (stable across runs and platforms)."""
    digest = hashlib.blake2b(f"{seed}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def splitmix64(z: np.ndarray) -> np.ndarray:
    """The SplitMix64 output function (one increment by the golden gamma, then the finaliser), elementwise
    on ``uint64`` (Steele, Lea & Flood 2014)."""
    with np.errstate(over="ignore"):
        z = z + _GOLDEN
        z = (z ^ (z >> _U64(30))) * _M1
        z = (z ^ (z >> _U64(27))) * _M2
        return z ^ (z >> _U64(31))


def counter_normals(seeds: np.ndarray, key: int, size: int) -> np.ndarray:
    """Standard normals ``(len(seeds), size)`` in float64; row ``i`` a function of ``(seeds[i], key)`` only.

    Element ``e`` of row ``i``: ``c = SplitMix64(SplitMix64(seed_i ⊕ key) + e)``, two uniforms from
    ``SplitMix64(c ⊕ A)`` and ``SplitMix64(c ⊕ B)`` (their top 53 bits), then Box–Muller's
    ``sqrt(−2 log u1) cos(2π u2)``.
    """
    base = splitmix64(seeds ^ _U64(key & ((1 << 64) - 1)))[:, None]
    with np.errstate(over="ignore"):
        counter = splitmix64(base + np.arange(size, dtype=_U64)[None, :])
    a = splitmix64(counter ^ _STREAM_A)
    b = splitmix64(counter ^ _STREAM_B)
    u1 = ((a >> _U64(11)).astype(np.float64) + 1.0) * _TWO_POW_M53  # (0, 1]
    u2 = (b >> _U64(11)).astype(np.float64) * _TWO_POW_M53  # [0, 1)
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * math.pi * u2)


SEED_LIMIT = 2**64
"""Seeds are integers in ``[0, 2**64)``: what ``torch.Generator.manual_seed`` and the counter generator both
take without folding two seeds onto one stream."""


def _checked_seed(value: object, who: str) -> int:
    """``value`` as a seed, or a :class:`~diffsample.errors.DiffsampleError` naming ``who`` (the one rule for
    every seed type: non-negative integers below 2**64; no bools, strings, floats or float tensors)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise DiffsampleError(
            f"{who}: a seed must be a non-negative integer below 2**64, got {value!r} ({type(value).__name__})"
        )
    seed = int(value)
    if not 0 <= seed < SEED_LIMIT:
        raise DiffsampleError(f"{who}: a seed must be a non-negative integer below 2**64, got {seed}")
    return seed


def parse_seeds(seeds: int | Sequence[int] | torch.Tensor, who: str) -> tuple[int | None, list[int] | None]:
    """``(base, None)`` for one integer seed (sample ``i`` then uses ``derive_seed(base, i)``), or ``(None,
    per-sample seeds)`` for a sequence or integer tensor of them; ``who`` names the caller in the error.

    Every seed follows :func:`_checked_seed`'s rule, whatever its container: a string is not a sequence of seeds
    and a float tensor is not truncated.
    """
    if isinstance(seeds, torch.Tensor):
        if seeds.is_floating_point() or seeds.is_complex() or seeds.dtype == torch.bool:
            raise DiffsampleError(f"{who}: seeds must be an integer tensor, got dtype {seeds.dtype}")
        seeds = seeds.flatten().tolist()
    elif isinstance(seeds, np.ndarray):
        if seeds.dtype.kind not in "iu":
            raise DiffsampleError(f"{who}: seeds must be an integer array, got dtype {seeds.dtype}")
        seeds = seeds.flatten().tolist()
    if isinstance(seeds, (numbers.Integral, bool)):
        return _checked_seed(seeds, who), None
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, (Sequence, range)) and not hasattr(seeds, "__iter__"):
        raise DiffsampleError(f"{who}: seeds must be an integer or a sequence of integers, got {seeds!r}")
    listed = [_checked_seed(s, who) for s in seeds]
    if not listed:
        raise ShapeError(f"{who} needs at least one seed")
    return None, listed


def generator_seed(seed: int) -> int:
    """The seed handed to a per-row ``torch.Generator``: ``seed`` itself below 2**32, else the top 32 bits of
    ``SplitMix64(seed)``.

    torch's CPU generator (MT19937) keeps only the low 32 bits of its seed, so seeds 5 and 2**32 + 5 would
    silently share a stream; hashing the wide seeds first makes two different seeds collide only by chance
    (probability 2**-32 for a pair) while keeping the streams of seeds below 2**32 as they always were.
    """
    if seed < 2**32:
        return seed
    return int(splitmix64(np.array([seed], dtype=_U64))[0]) >> 32


def _call_key(k: int) -> int:
    """The 64-bit key of a sample's ``k``-th draw (``SplitMix64`` of ``k`` with a tag, so keys look random)."""
    return int(splitmix64(np.array([0x5EED0000 + k], dtype=_U64))[0])


class CounterStreams:
    """Per-sample counter-based streams (module docstring), the bookkeeping shared by every seeded source here and
    in :mod:`diffsample.discrete.random`: the seeds (:func:`parse_seeds`; one integer gives sample ``i`` the seed
    ``derive_seed(seed, i)``), ``SplitMix64(seed_i)`` of the rows seen so far, and how many draws each row made.
    :meth:`draw` gives the ``k``-th draw of row ``i`` from ``block(mixed_i, call_key(k), size)``, so a row's values
    depend on its seed and its own call count only, never on the batch.
    """

    def __init__(self, seeds: int | Sequence[int] | torch.Tensor, who: str) -> None:
        self.base, self._seeds = parse_seeds(seeds, who)
        self._mixed = np.zeros(0, dtype=_U64)  # SplitMix64(seed_i) of the rows seen so far
        self._calls = np.zeros(0, dtype=np.int64)  # counter-based draws made by each row so far

    def seed_of(self, i: int) -> int:
        """The seed of sample ``i``'s stream."""
        if self._seeds is not None:
            return self._seeds[i]
        assert self.base is not None
        return derive_seed(self.base, i)

    def check_batch(self, batch: int) -> None:
        """Raise when per-sample seeds were given for fewer than ``batch`` samples."""
        if self._seeds is not None and batch > len(self._seeds):
            raise ShapeError(f"batch of {batch} samples but only {len(self._seeds)} seeds were given")

    def _grow(self, batch: int) -> None:
        have = len(self._mixed)
        if batch <= have:
            return
        self.check_batch(batch)
        raw = np.array([self.seed_of(i) for i in range(have, batch)], dtype=_U64)
        self._mixed = np.concatenate([self._mixed, splitmix64(raw)])
        self._calls = np.concatenate([self._calls, np.zeros(batch - have, dtype=np.int64)])

    def draw(
        self, batch: int, size: int, block: Callable[[np.ndarray, int, int], np.ndarray], call_key: Callable[[int], int]
    ) -> np.ndarray:
        """The next ``(batch, size)`` float64 values of rows ``0 … batch−1``, each row continuing its own stream."""
        self._grow(batch)
        calls = self._calls[:batch]
        out = np.empty((batch, size), dtype=np.float64)
        for k in np.unique(calls).tolist():  # one group unless rows were drawn unevenly
            rows = np.nonzero(calls == k)[0]
            out[rows] = block(self._mixed[rows], call_key(k), size)
        calls += 1
        return out


class SeededNoise(CounterStreams):
    """One random stream per sample (module docstring).

    ``seeds`` is a sequence of per-sample seeds, or one ``int``: then sample ``i`` uses the stream
    ``derive_seed(seed, i)``, so a batch of 64 and a batch of 1 agree on sample 0. Successive calls
    continue each stream. Noise is computed on the CPU and moved to x's device and dtype, so results do
    not depend on the device's RNG either.
    """

    def __init__(self, seeds: int | Sequence[int] | torch.Tensor) -> None:
        super().__init__(seeds, "seeded()")
        self._generators: dict[int, torch.Generator] = {}  # per-row generators for large rows

    def _generator(self, i: int) -> torch.Generator:
        g = self._generators.get(i)
        if g is None:
            g = self._generators[i] = torch.Generator().manual_seed(generator_seed(self.seed_of(i)))
        return g

    def standard_normal(
        self, shape: Sequence[int], dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
    ) -> torch.Tensor:
        """Draw a ``(B, …)`` standard-normal tensor, row ``i`` from stream ``i``."""
        shape = tuple(int(s) for s in shape)
        if not shape:
            raise ShapeError("noise shape needs a batch dimension")
        batch = shape[0]
        self.check_batch(batch)
        size = math.prod(shape[1:])
        if size >= ROW_GENERATOR_FROM:
            rows = [torch.randn(shape[1:], generator=self._generator(i), dtype=torch.float32) for i in range(batch)]
            return torch.stack(rows).to(device=device, dtype=dtype)
        out = self.draw(batch, size, counter_normals, _call_key)
        return torch.from_numpy(out).reshape(shape).to(device=device, dtype=dtype)

    def initial(
        self,
        shape: Sequence[int],
        sigma: float,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """The starting state ``sigma · z`` of a walk that begins at noise level ``sigma``."""
        return float(sigma) * self.standard_normal(shape, dtype=dtype, device=device)

    def __call__(self, x: torch.Tensor, sigma: float | None = None, sigma_next: float | None = None) -> torch.Tensor:
        return self.standard_normal(x.shape, dtype=x.dtype, device=x.device)


def seeded(seeds: int | Sequence[int] | torch.Tensor) -> SeededNoise:
    """A noise source with one stream per sample; see :class:`SeededNoise`."""
    return SeededNoise(seeds)
