"""One rule for every seed (issue #11): non-negative integers below 2**64, whatever the container and row size."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffsample.errors import DiffsampleError
from diffsample.noise import seeded
from diffsample.noise_tree import BrownianTree


@pytest.mark.parametrize(
    "bad", [2**64 + 5, -1, "12", b"12", 1.0, True, [3, "4"], [2**64], torch.tensor([1.5, 2.0]), np.array([1.0]), None]
)
@pytest.mark.parametrize("row", [(2,), (3, 16, 16)])  # counter-based rows and per-row generator rows
def test_bad_seeds_are_refused_for_every_row_size(bad: object, row: tuple[int, ...]) -> None:
    with pytest.raises(DiffsampleError, match="seed"):
        seeded(bad).standard_normal((2, *row))  # type: ignore[arg-type]


def test_large_seeds_differ_from_their_low_bits() -> None:
    """``2**64 - 1`` and ``2**63 + 5`` are valid and are not folded onto small seeds."""
    for row in [(2,), (3, 16, 16)]:
        a = seeded([2**63 + 5]).standard_normal((1, *row))
        b = seeded([5]).standard_normal((1, *row))
        c = seeded([2**64 - 1]).standard_normal((1, *row))
        assert not torch.equal(a, b) and torch.isfinite(c).all()


def test_integer_containers_agree() -> None:
    row = (4,)
    ref = seeded([7, 8]).standard_normal((2, *row))
    for seeds in (torch.tensor([7, 8]), np.array([7, 8], dtype=np.uint64), (7, 8), range(7, 9)):
        assert torch.equal(seeded(seeds).standard_normal((2, *row)), ref)


def test_brownian_tree_follows_the_same_rule() -> None:
    with pytest.raises(DiffsampleError, match="seed"):
        BrownianTree("12")  # type: ignore[arg-type]
