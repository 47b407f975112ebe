"""Placing decreasing levels on a table's grid: nearest entries, or the best strictly increasing assignment."""

from __future__ import annotations

import math

import torch

from ..errors import SigmaError


def nearest(targets: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Index of the nearest entry of the ascending ``grid`` for each target."""
    hi = torch.searchsorted(grid, targets).clamp(1, grid.numel() - 1)
    lo = hi - 1
    return torch.where((targets - grid[lo]).abs() <= (grid[hi] - targets).abs(), lo, hi)


def assign_unique(targets: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Strictly increasing indices ``k_0 < … < k_{n−1}`` into the ascending ``grid`` that minimise
    ``Σ_i (grid[k_i] − targets_i)²`` for ascending ``targets`` (dynamic programming, O(n·K)).

    Where the nearest indices are already distinct they are returned unchanged (they are optimal).
    """
    n, k_count = targets.numel(), grid.numel()
    if n > k_count:
        raise SigmaError(f"cannot place {n} distinct levels on a table of {k_count} timesteps")
    near = nearest(targets, grid)
    if n == 1 or bool((near[1:] > near[:-1]).all()):
        return near
    ks = torch.arange(k_count)
    inf = torch.tensor([math.inf], dtype=torch.float64)
    prev = (grid - targets[0]) ** 2
    prev[ks > k_count - n] = math.inf
    back = torch.empty((n, k_count), dtype=torch.int64)
    for i in range(1, n):
        best, arg = torch.cummin(prev, 0)  # best[k] = min over k' <= k of prev
        cur = torch.cat([inf, best[:-1]]) + (grid - targets[i]) ** 2  # predecessor strictly below k
        cur[(ks < i) | (ks > k_count - n + i)] = math.inf
        back[i, 1:] = arg[:-1]
        prev = cur
    out = [int(torch.argmin(prev))]
    for i in range(n - 1, 0, -1):
        out.append(int(back[i, out[-1]]))
    return torch.tensor(out[::-1], dtype=torch.int64)
