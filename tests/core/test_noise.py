"""Seeded noise (:mod:`diffsample.noise`): the counter-based normals against a pure-Python SplitMix64 +
Box–Muller written from Steele, Lea & Flood (2014) in exact integer arithmetic, the per-sample stream
contract (batch size, uneven draws, continuation), and the law of the draws (moments, tails, independence
across samples, calls and elements)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from diffsample import noise
from diffsample.noise import counter_normals, derive_seed

MASK = (1 << 64) - 1


def _splitmix_reference(z: int) -> int:
    z = (z + 0x9E3779B97F4A7C15) & MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def _normal_reference(seed: int, key: int, element: int) -> float:
    counter = _splitmix_reference((_splitmix_reference(seed ^ key) + element) & MASK)
    a = _splitmix_reference(counter ^ 0x243F6A8885A308D3)
    b = _splitmix_reference(counter ^ 0x13198A2E03707344)
    u1, u2 = ((a >> 11) + 1) * 2.0**-53, (b >> 11) * 2.0**-53
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


def test_counter_normals_match_exact_integer_splitmix():
    seeds = [0, 1, 2**63 - 1, 0xDEADBEEFCAFEF00D, derive_seed(5, 7)]
    key = 0x0123456789ABCDEF
    out = counter_normals(np.array(seeds, dtype=np.uint64), key, 6)
    for i, seed in enumerate(seeds):
        for e in range(6):
            assert out[i, e] == pytest.approx(_normal_reference(seed, key, e), rel=1e-14, abs=1e-14)


def test_rows_are_the_same_whatever_the_batch_and_the_order_of_uneven_draws():
    """Sample i's k-th draw depends on (seed, k) only: a batch of 4 then of 8 gives rows 4..7 their first
    draw while rows 0..3 get their second, exactly as separate single-sample sources would."""
    a = noise.seeded(21)
    first = a.standard_normal((4, 3))
    second = a.standard_normal((8, 3))
    for i in range(8):
        single = noise.seeded([derive_seed(21, i)])
        draws = [single.standard_normal((1, 3))[0] for _ in range(2 if i < 4 else 1)]
        if i < 4:
            assert torch.equal(first[i], draws[0]) and torch.equal(second[i], draws[1])
        else:
            assert torch.equal(second[i], draws[0])


def test_float64_noise_is_the_float32_noise_unrounded():
    z64 = noise.seeded(3).standard_normal((5, 4), dtype=torch.float64)
    z32 = noise.seeded(3).standard_normal((5, 4))
    assert torch.equal(z64.to(torch.float32), z32) and not torch.equal(z64, z32.to(torch.float64))


def test_draws_are_standard_normal_and_independent():
    """Moments and tails of 200 000 draws, and no correlation between samples (consecutive seeds 0, 1, … given
    as a list), between one seed's second draw and the next seed's first, calls or neighbouring elements."""
    source = noise.seeded(list(range(2000)))
    z = torch.stack([source.standard_normal((2000, 50), dtype=torch.float64) for _ in range(2)])  # (call, i, e)
    flat = z.flatten()
    n = flat.numel()
    assert abs(float(flat.mean())) < 4 / math.sqrt(n) and abs(float(flat.var()) - 1) < 4 * math.sqrt(2 / n)
    assert float(flat.pow(4).mean()) == pytest.approx(3.0, abs=4 * math.sqrt(96 / n))
    for t in (1.0, 2.0, 3.0):
        p = math.erfc(t / math.sqrt(2))
        assert float((flat.abs() > t).double().mean()) == pytest.approx(p, abs=4 * math.sqrt(p / n))
    bound = 4 / math.sqrt(2000 * 50)
    assert abs(float((z[0, 1:] * z[0, :-1]).mean())) < bound  # sample i+1 vs sample i
    assert abs(float((z[0, 1:] * z[1, :-1]).mean())) < bound  # seed i+1's first draw vs seed i's second
    assert abs(float((z[0] * z[1]).mean())) < bound  # successive calls of a sample
    assert abs(float((z[0, :, 1:] * z[0, :, :-1]).mean())) < 4 / math.sqrt(2000 * 49)  # neighbouring elements


@pytest.mark.parametrize("shape", [(2,), (255,), (256,), (3, 16, 16)])
def test_both_generators_keep_the_per_sample_contract(shape):
    """Rows below ``ROW_GENERATOR_FROM`` elements are counter-based, larger ones come from a ``torch.Generator``
    seeded with the sample's seed through ``generator_seed`` (exactly ``torch.randn`` on that generator); either
    way sample i is the same in a batch of 1 and of 64, over successive calls."""
    big, one = noise.seeded(99), noise.seeded([derive_seed(99, 37)])
    for _ in range(2):
        assert torch.equal(big.standard_normal((64, *shape))[37], one.standard_normal((1, *shape))[0])
    if math.prod(shape) >= noise.ROW_GENERATOR_FROM:
        g = torch.Generator().manual_seed(noise.generator_seed(derive_seed(99, 5)))
        first, second = torch.randn(shape, generator=g), torch.randn(shape, generator=g)
        source = noise.seeded(99)
        assert torch.equal(source.standard_normal((8, *shape))[5], first)
        assert torch.equal(source.standard_normal((8, *shape))[5], second)
