"""σ-keyed per-sample normals: a function of (seed_i, σ, draw) only, standard normal."""

from __future__ import annotations

import pytest
import torch

from diffsample.errors import ShapeError
from diffsample.transforms import KeyedNormals

F64 = torch.float64


def test_keyed_normals_depend_on_seed_sigma_and_draw_only() -> None:
    noise = KeyedNormals(3)
    sigma = torch.tensor([0.5, 0.5, 2.0, 0.5], dtype=F64)
    a = noise(sigma, (4, 6), F64, torch.device("cpu"))
    torch.testing.assert_close(noise(sigma, (4, 6), F64, torch.device("cpu")), a)  # no stream state
    torch.testing.assert_close(noise(sigma[:1], (1, 6), F64, torch.device("cpu")), a[:1])  # batch independent
    other_level = noise(torch.full((4,), 0.5000001, dtype=F64), (4, 6), F64, torch.device("cpu"))
    assert not torch.allclose(other_level[0], a[0])
    assert not torch.allclose(noise(sigma, (4, 6), F64, torch.device("cpu"), draw=1), a)
    assert not torch.allclose(a[0], a[1])  # two samples at one level: two streams
    big = KeyedNormals([7] * 1 + list(range(1, 4000)))(
        torch.ones(4000, dtype=F64), (4000, 25), F64, torch.device("cpu")
    )
    assert abs(float(big.mean())) < 0.01 and abs(float(big.std()) - 1) < 0.01
    with pytest.raises(ShapeError, match="seeds"):
        KeyedNormals([1, 2])(torch.ones(3), (3, 2), F64, torch.device("cpu"))
