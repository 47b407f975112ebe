"""Brownian-tree noise: one Brownian motion ``W`` per sample, queried at any noise level.

SDE solvers ask their noise source for ``noise(x, σ, σ')`` on each step ``σ → σ'``. A
:class:`~diffsample.noise.SeededNoise` answers with fresh draws; a :class:`BrownianTree` answers
with the standardised Brownian increment over that interval,

    noise(x, σ, σ') = (W(τ(σ')) − W(τ(σ))) / sqrt(|τ(σ') − τ(σ)|)   ~ N(0, I),

where ``τ`` is a time transform (k-diffusion's ``BrownianTreeNoiseSampler`` semantics, with its
``transform``). Increments over disjoint intervals are independent, so every solver step still gets
an independent standard normal; what changes is that ``W`` is one fixed path per sample. Running
the same SDE solver with 10 or with 40 steps then uses the *same* Brownian path at different
resolutions (the noise of a coarse step is the normalised sum of the noise of the fine steps inside
it), so the result converges pathwise as the step count grows instead of changing completely.

Construction (Lévy's construction of Brownian motion by bisection; e.g. Karatzas & Shreve, *Brownian
Motion and Stochastic Calculus*, §2.3; the "Brownian tree" of Li et al. 2020, "Scalable Gradients
for Stochastic Differential Equations", uses the same bridge rule)
-----------------------------------------------------------------------------------------------
``W`` lives on the whole real line with ``W(0) = 0``; ``t > 0`` and ``t < 0`` are two independent
one-sided motions (``W(t) = W⁻(−t)`` for ``t < 0``), so transforms such as ``log σ`` work too.
On one side, with ``u = |t|``:

* octave ends ``u = 2^k``: ``W(1) = z``; upwards ``W(2^{k+1}) = W(2^k) + sqrt(2^k) z``; downwards,
  the Brownian bridge between ``W(0) = 0`` and ``W(2^{k+1})`` at its midpoint,
  ``W(2^k) = W(2^{k+1})/2 + sqrt(2^{k+1})/2 · z``;
* inside the octave ``[a, b] = [2^k, 2^{k+1}]``, bisection: given ``W(a)`` and ``W(b)``, the bridge
  midpoint is ``W((a + b)/2) = (W(a) + W(b))/2 + sqrt(b − a)/2 · z`` (conditional mean and variance
  of a Brownian bridge), repeated down to ``depth = ceil(log2(1/tol))`` levels;
* between two neighbouring points of the finest level, ``W`` is linearly interpolated.

Every ``z`` is a standard normal that depends only on the sample's seed and the node's address
(side, octave, level, index), so ``W`` is a fixed function of ``t``: the value at a point does not
depend on which points were asked before, on the cache, or on the batch. It is the exact Brownian
motion at all dyadic points of the finest level; between them the interpolation misses at most
variance ``ℓ/4`` of a leaf of length ``ℓ ≤ tol·|t|`` (relative tolerance, the same at every
scale), so a standardised increment over an interval ``Δ`` has variance ``1 − O(tol·|t|/Δ)``.

Choice of time
--------------
The law of one solver run does not depend on ``τ`` (each step gets an independent N(0, I) either
way); ``τ`` decides how the noise of runs with different step counts is coupled. Measured on the
exact ``ring2d`` bed, 256 samples, Karras steps on [0.002, 80], dpmpp_2m_sde (η = 1): the RMS distance
of the final samples at 10/20/40/80 steps from those at 160 steps is 0.80/0.43/0.31/0.22 with
``τ = σ``, 0.68/0.42/0.25/0.13 with ``τ = log σ`` and 1.60/1.48/1.42/1.35 with independent seeded noise;
on the 64-D ``mixture64`` bed 0.43/0.33/0.19/0.17 (σ), 0.44/0.27/0.17/0.11 (log σ), 0.85/0.79/0.77/0.73
(seeded). Hence the default ``"log"``: steps are roughly uniform in log σ, and so is the resolution.

Random numbers
--------------
The normals are counter-based: ``z = BoxMuller(SplitMix64(seed ⊕ key(node), element))`` (SplitMix64:
Steele, Lea & Flood 2014, "Fast splittable pseudorandom number generators"), computed vectorised in
numpy ``uint64`` (well-defined wrapping arithmetic) on the CPU and moved to x's device and dtype.
They depend on nothing but (sample seed, node, element index): sample ``i`` is identical in a batch
of 1 or 64, on any device. Per-sample seeds follow :func:`diffsample.noise.derive_seed`, as in
:class:`~diffsample.noise.SeededNoise`.
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from collections.abc import Callable, Sequence

import numpy as np
import torch

from .errors import DiffsampleError, ShapeError, UnknownNameError
from .noise import counter_normals, derive_seed, parse_seeds

__all__ = ["TRANSFORMS", "BrownianTree", "brownian"]

TRANSFORMS: dict[str, Callable[[float], float]] = {
    "sigma": lambda s: s,
    "log": math.log,
}
"""Named time transforms ``τ(σ)``: ``"sigma"`` (k-diffusion's default, ``τ = σ``) and ``"log"`` (``τ = log σ``,
the negative log-SNR ``−λ``, where DPM-Solver++ steps are uniform)."""

_U64 = np.uint64
_MASK64 = (1 << 64) - 1
_normals = counter_normals  # the same counter-based normals as the seeded streams


def _node_key(side: int, kind: str, k: int, level: int, index: int) -> int:
    digest = hashlib.blake2b(f"{side}:{kind}:{k}:{level}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


class BrownianTree:
    """Per-sample Brownian motions ``W(τ)`` queried at arbitrary times; a noise source for SDE solvers.

    Args:
        seeds: one ``int`` (sample ``i`` uses ``derive_seed(seed, i)``, so any batch size agrees on
            sample ``i``) or a sequence / tensor of per-sample seeds.
        transform: the time ``τ(σ)`` the motion runs in: a name from :data:`TRANSFORMS` or a strictly
            monotone callable on floats. Default ``"log"`` (module docstring, "Choice of time");
            ``"sigma"`` is k-diffusion's default.
        tol: relative resolution: the bisection stops at leaves of length ``≤ tol·|τ|`` (``≥ 1e-15``).
        cache_size: node values kept (least recently used first out); values never depend on it.

    Calling the tree as a noise source, ``tree(x, sigma, sigma_next)``, returns the standardised
    increment ``(W(τ(σ')) − W(τ(σ)))/sqrt(|τ(σ') − τ(σ)|)`` shaped like ``x`` (module docstring);
    :meth:`value` returns ``W`` itself. ``interval_noise`` is true: the noise belongs to an interval,
    so asking twice for the same interval gives the same noise (solvers that need fresh draws at one
    level, e.g. restarts or Langevin corrections, refuse such a source).
    """

    interval_noise = True

    def __init__(
        self,
        seeds: int | Sequence[int] | torch.Tensor,
        *,
        transform: str | Callable[[float], float] = "log",
        tol: float = 1e-6,
        cache_size: int = 4096,
    ) -> None:
        self.base, self._seeds = parse_seeds(seeds, "BrownianTree")
        if isinstance(transform, str):
            if transform not in TRANSFORMS:
                raise UnknownNameError("time transform", transform, list(TRANSFORMS))
            self.transform_name, self.transform = transform, TRANSFORMS[transform]
        elif callable(transform):
            self.transform_name, self.transform = getattr(transform, "__name__", "custom"), transform
        else:
            raise DiffsampleError(f"transform must be a name or a callable, got {type(transform).__name__}")
        tol = float(tol)
        if not (1e-15 <= tol < 1):
            raise DiffsampleError(f"tol must be in [1e-15, 1), got {tol}")
        self.tol = tol
        self.depth = max(1, math.ceil(math.log2(1.0 / tol)))
        if int(cache_size) < 1:
            raise DiffsampleError(f"cache_size must be >= 1, got {cache_size}")
        self.cache_size = int(cache_size)
        self._cache: OrderedDict[tuple[int, ...], np.ndarray] = OrderedDict()
        self._layout: tuple[int, int] | None = None  # (batch, elements per sample) the cache holds
        self._seed_array: np.ndarray | None = None

    # ------------------------------------------------------------------ seeds and cache
    def seed_of(self, i: int) -> int:
        """The 64-bit seed of sample ``i``."""
        if self._seeds is not None:
            return self._seeds[i] & _MASK64
        assert self.base is not None
        return derive_seed(self.base, i)

    def _prepare(self, batch: int, size: int) -> None:
        if self._seeds is not None and batch > len(self._seeds):
            raise ShapeError(f"batch of {batch} samples but only {len(self._seeds)} seeds were given")
        if self._layout != (batch, size):
            self._layout = (batch, size)
            self._cache.clear()
            self._seed_array = np.array([self.seed_of(i) for i in range(batch)], dtype=_U64)

    def _z(self, side: int, kind: str, k: int, level: int, index: int) -> np.ndarray:
        assert self._seed_array is not None and self._layout is not None
        return _normals(self._seed_array, _node_key(side, kind, k, level, index), self._layout[1])

    def _remember(self, key: tuple[int, ...], value: np.ndarray) -> np.ndarray:
        self._cache[key] = value
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return value

    def _lookup(self, key: tuple[int, ...]) -> np.ndarray | None:
        value = self._cache.get(key)
        if value is not None:
            self._cache.move_to_end(key)
        return value

    # ------------------------------------------------------------------ the motion on one side
    def _octave_end(self, side: int, k: int) -> np.ndarray:
        """``W(2^k)`` on one side (module docstring), computed iteratively from ``W(1)``."""
        key = (side, 0, k)
        hit = self._lookup(key)
        if hit is not None:
            return hit
        # walk from the nearest cached octave end towards k (or from W(1))
        step = 1 if k > 0 else -1
        j = k
        while j != 0 and self._lookup((side, 0, j)) is None:
            j -= step
        value = self._lookup((side, 0, j))
        if value is None:  # j == 0 and not cached
            value = self._remember((side, 0, 0), self._z(side, "octave", 0, 0, 0))
        while j != k:
            j += step
            if step > 0:  # W(2^j) = W(2^{j−1}) + sqrt(2^{j−1}) z
                value = value + math.sqrt(2.0 ** (j - 1)) * self._z(side, "octave", j, 0, 0)
            else:  # bridge midpoint of [0, 2^{j+1}]
                value = 0.5 * value + 0.5 * math.sqrt(2.0 ** (j + 1)) * self._z(side, "octave", j, 0, 0)
            self._remember((side, 0, j), value)
        return value

    def _dyadic(self, side: int, k: int, j: int) -> np.ndarray:
        """``W`` at ``2^k (1 + j / 2^depth)``, ``0 ≤ j ≤ 2^depth``, by bisection inside octave k.

        Walks down from the octave's ends, halving the interval that holds ``j`` and computing each midpoint
        from the two ends of its interval: ``depth`` bridge draws at most, whatever the cache holds.
        """
        if j == 0:
            return self._octave_end(side, k)
        top = 1 << self.depth
        if j == top:
            return self._octave_end(side, k + 1)
        lo, hi = 0, top
        w_lo, w_hi = self._octave_end(side, k), self._octave_end(side, k + 1)
        level = 0
        while True:
            level += 1
            mid = (lo + hi) >> 1
            index = mid >> (self.depth - level)  # odd: the midpoint's index on its level
            key = (side, 1, k, level, index)
            w_mid = self._lookup(key)
            if w_mid is None:
                length = 2.0 ** (k - level + 1)  # hi − lo in time units
                w_mid = 0.5 * (w_lo + w_hi) + 0.5 * math.sqrt(length) * self._z(side, "bisect", k, level, index)
                self._remember(key, w_mid)
            if mid == j:
                return w_mid
            if j < mid:
                hi, w_hi = mid, w_mid
            else:
                lo, w_lo = mid, w_mid

    def _at(self, t: float) -> np.ndarray:
        if t == 0.0:
            assert self._layout is not None
            return np.zeros(self._layout, dtype=np.float64)
        side, u = (1, t) if t > 0 else (-1, -t)
        mantissa, exponent = math.frexp(u)  # u = mantissa · 2^exponent, mantissa in [0.5, 1)
        k = exponent - 1
        position = (2.0 * mantissa - 1.0) * (1 << self.depth)  # in [0, 2^depth)
        j = int(position)
        frac = position - j
        left = self._dyadic(side, k, j)
        if frac == 0.0:
            return left
        return left + frac * (self._dyadic(side, k, j + 1) - left)

    # ------------------------------------------------------------------ public API
    def time(self, sigma: float) -> float:
        """The transformed time ``τ(σ)`` (finite, else an error)."""
        try:
            t = float(self.transform(float(sigma)))
        except (ValueError, ZeroDivisionError, OverflowError) as exc:
            raise DiffsampleError(f"time transform {self.transform_name!r} is undefined at sigma={sigma}") from exc
        if not math.isfinite(t):
            raise DiffsampleError(
                f"time transform {self.transform_name!r} maps sigma={sigma} to {t}; "
                "the Brownian tree needs finite times"
            )
        return t

    def value(
        self,
        t: float,
        shape: Sequence[int],
        dtype: torch.dtype = torch.float64,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """``W(t)`` at transformed time ``t`` for a batch of shape ``(B, …)`` (row ``i`` from sample ``i``'s seed)."""
        shape = tuple(int(s) for s in shape)
        if not shape or shape[0] < 1:
            raise ShapeError("the shape needs a batch dimension")
        t = float(t)
        if not math.isfinite(t):
            raise DiffsampleError(f"Brownian tree time must be finite, got {t}")
        self._prepare(shape[0], math.prod(shape[1:]))
        return torch.from_numpy(self._at(t).reshape(shape).copy()).to(device=device, dtype=dtype)

    def increment(self, x: torch.Tensor, sigma: float, sigma_next: float) -> torch.Tensor:
        """``W(τ(σ')) − W(τ(σ))`` shaped like ``x`` (not standardised), in x's dtype and device."""
        t0, t1 = self.time(sigma), self.time(sigma_next)
        self._prepare(x.shape[0], math.prod(x.shape[1:]))
        diff = self._at(t1) - self._at(t0)
        return torch.from_numpy(diff.reshape(x.shape)).to(device=x.device, dtype=x.dtype)

    def __call__(self, x: torch.Tensor, sigma: float | None = None, sigma_next: float | None = None) -> torch.Tensor:
        if sigma is None or sigma_next is None:
            raise DiffsampleError("a BrownianTree gives the noise of an interval: call noise(x, sigma, sigma_next)")
        if x.dim() < 1 or x.shape[0] < 1:
            raise ShapeError(f"x needs a batch dimension, got shape {tuple(x.shape)}")
        t0, t1 = self.time(sigma), self.time(sigma_next)
        if t0 == t1:
            raise DiffsampleError(f"the interval [{sigma}, {sigma_next}] is empty: no increment to standardise")
        self._prepare(x.shape[0], math.prod(x.shape[1:]))
        diff = (self._at(t1) - self._at(t0)) / math.sqrt(abs(t1 - t0))
        return torch.from_numpy(diff.reshape(x.shape)).to(device=x.device, dtype=x.dtype)

    def __repr__(self) -> str:
        seeds = f"base={self.base}" if self.base is not None else f"{len(self._seeds or [])} seeds"
        return f"BrownianTree({seeds}, transform={self.transform_name!r}, tol={self.tol:g})"


def brownian(seeds: int | Sequence[int] | torch.Tensor, **options: object) -> BrownianTree:
    """A Brownian-tree noise source with one motion per sample; see :class:`BrownianTree`."""
    return BrownianTree(seeds, **options)  # type: ignore[arg-type]
