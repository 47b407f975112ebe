"""Lagrange-basis weights: the interpolating polynomial behind every multistep and predictor–corrector method.

For distinct nodes ``t_0, …, t_{k−1}`` the Lagrange basis ``ℓ_j(t) = Π_{m≠j} (t − t_m)/(t_j − t_m)`` gives
the polynomial through values ``f_j`` as ``Σ_j f_j ℓ_j``. A linear functional ``L`` of it (an integral over
a step, a value at a shifted point) is ``Σ_j L(ℓ_j) f_j``: the weights below are the ``L(ℓ_j)`` of the
functionals the solvers need (Hairer, Nørsett & Wanner, *Solving ODEs I*, §III.1 and §III.5).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike


def monic_from_roots(roots: ArrayLike) -> np.ndarray:
    """Monomial coefficients ``c_0, …, c_q`` (lowest first) of ``Π_m (u − r_m)`` over the last axis, float64."""
    roots = np.asarray(roots, dtype=np.float64)
    c = np.ones(roots.shape[:-1] + (1,))
    for m in range(roots.shape[-1]):
        r = roots[..., m : m + 1]
        zero = np.zeros_like(r)
        c = np.concatenate([zero, c], axis=-1) - r * np.concatenate([c, zero], axis=-1)
    return c


def lagrange_integrals(nodes: ArrayLike, a: ArrayLike, b: ArrayLike) -> np.ndarray:
    """Exact ``w_j = ∫_a^b ℓ_j(τ) dτ`` for the Lagrange basis ``ℓ_j`` on the distinct ``nodes`` (float64).

    ``nodes`` has shape ``(…, k)`` and ``a``, ``b`` shape ``(…)`` (any number of steps at once); the
    result has the shape of ``nodes``. In the scaled variable ``u = (τ − a)/(b − a)`` the nodes are
    ``r_m = (t_m − a)/(b − a)`` and, with ``c_n`` the monomial coefficients of ``Π_{m≠j} (u − r_m)``,

        w_j = (b − a) ∫_0^1 Π_{m≠j} (u − r_m) du / Π_{m≠j} (r_j − r_m)
            = (b − a) Σ_n c_n/(n + 1) / Π_{m≠j} (r_j − r_m):

    the polynomial is integrated exactly. For an Adams–Bashforth step (``a`` the newest node, the
    earlier ones on the far side of ``a`` from ``b``) every ``r_m ≤ 0``, so all ``c_n ≥ 0`` and the
    sum has no cancellation however unequal the steps (e.g. a last step σ_min → 0).
    """
    t = np.asarray(nodes, dtype=np.float64)
    a = np.asarray(a, dtype=np.float64)[..., None]
    h = np.asarray(b, dtype=np.float64)[..., None] - a
    r = (t - a) / h
    k = t.shape[-1]
    weights = np.empty_like(r)
    for j in range(k):
        others = np.delete(r, j, axis=-1)
        integral = (monic_from_roots(others) / np.arange(1, k + 1)).sum(axis=-1)
        weights[..., j] = h[..., 0] * integral / np.prod(r[..., j : j + 1] - others, axis=-1)
    return weights


def lagrange_values(nodes: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``ℓ_j(points)`` for the Lagrange basis on ``nodes`` ``(m, k)`` at ``points`` ``(m, q)``: shape ``(m, k, q)``."""
    diff = points[:, None, :] - nodes[:, :, None]
    k = nodes.shape[1]
    values = np.empty(diff.shape)
    for j in range(k):
        others = [m for m in range(k) if m != j]
        denominator = np.prod(nodes[:, j : j + 1] - nodes[:, others], axis=1)
        values[:, j] = np.prod(diff[:, others], axis=1) / denominator[:, None]
    return values


def lagrange_at(nodes: Sequence[float], target: float | torch.Tensor) -> list[Any]:
    """``[ℓ_0(target), …, ℓ_{k−1}(target)]`` on the distinct float ``nodes``, one factor at a time.

    ``target`` may be a float or a 0-dim tensor (the weights are then differentiable in it).
    """
    out = []
    for j, lj in enumerate(nodes):
        w: Any = 1.0
        for m, lm in enumerate(nodes):
            if m != j:
                w = w * ((target - lm) / (lj - lm))
        out.append(w)
    return out


def solve_transposed_vandermonde(nodes: Sequence[float], rhs: Sequence[float]) -> list[float]:
    """``u`` with ``Σ_m u_m r_m^{k−1} = rhs[k−1]``, ``k = 1..q`` (a transposed Vandermonde system).

    ``u_m = L(ℓ_m)`` for the Lagrange basis polynomial ``ℓ_m`` on the nodes and the linear functional
    ``L(r^{k−1}) = rhs[k−1]``: expand ``ℓ_m``'s numerator and pair its coefficients with ``rhs``.
    """
    out = []
    for m, rm in enumerate(nodes):
        poly, denom = [1.0], 1.0  # coefficients of Π_{j≠m} (r − r_j), lowest degree first
        for j, rj in enumerate(nodes):
            if j != m:
                poly = [a - rj * b for a, b in zip([0.0, *poly], [*poly, 0.0], strict=True)]
                denom *= rm - rj
        out.append(sum(c * b for c, b in zip(poly, rhs, strict=True)) / denom)
    return out
