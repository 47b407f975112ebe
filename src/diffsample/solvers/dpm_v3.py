"""DPM-Solver-v3: a multistep exponential integrator with empirical model statistics (EMS).

Zheng, Lu, Chen & Zhu 2023 (NeurIPS), "DPM-Solver-v3: Improved Diffusion ODE Solver with Empirical
Model Statistics", §3, in σ-space (``x = x0 + σ ε``, α = 1) with ``λ = −log σ``. The PF-ODE is
``dx/dλ = D − x = −σ ε̂``. For per-coordinate functions ``l_λ, s_λ, b_λ`` (the statistics) write

    dx/dλ = −l_λ x − f(x, λ),         f := σ ε̂ − l_λ x = (1 − l_λ) x − D          (paper eq. 6)

so, with ``ΔL(λ) = ∫_{λ_s}^λ l``, ``ΔS(λ) = ∫_{λ_s}^λ s``, ``ΔB(λ) = ∫_{λ_s}^λ e^{−ΔS} b`` (all relative to
the step's start ``λ_s``) and the rescaled model output ``g(λ) = e^{−ΔS(λ)} f(λ) − ΔB(λ)`` (eq. 9),

    x_t = e^{−ΔL_t} [ x_s − ∫_{λ_s}^{λ_t} e^{ΔL+ΔS} g dλ − ∫_{λ_s}^{λ_t} e^{ΔL+ΔS} ΔB dλ ]   (exact).

``l`` is chosen so that ``f`` depends least on ``x`` (``l = E diag ∂(σ ε̂)/∂x``) and ``s, b`` so that
``f' ≈ s f + b`` along the trajectories: then ``g`` is nearly constant in λ and its Taylor expansion
``g(λ) = Σ_k g^{(k)}(λ_s) (λ − λ_s)^k / k!`` converges fast. Integrating each term exactly gives the
update with ``I_k = ∫_{λ_s}^{λ_t} e^{ΔL+ΔS} (λ − λ_s)^k / k! dλ`` (per coordinate):

    x_t = e^{−ΔL_t} [ x_s − Σ_k I_k g^{(k)} − ∫ e^{ΔL+ΔS} ΔB ].

Statistics and integrals
------------------------
The statistics are given on a λ-grid (:mod:`diffsample.tuning.ems` computes them) and interpolated
linearly in between, so on every cell between grid points and step points ``l, s, b`` are linear,
``ΔL, ΔS`` quadratic and all integrands smooth. Every integral above is taken per cell with a
10-point Gauss–Legendre rule (cells cut to width ≤ 0.5 in λ); the nested ones (``ΔB`` inside ``∫ e^{ΔL+ΔS}
ΔB``) with the spectral cumulative-integration matrix on the same nodes, so the coefficients are
accurate to rounding for the interpolated statistics (the paper uses the trapezoid rule on the grid
and rounds the steps to grid points; here steps may lie anywhere in the statistics' range).
All coefficients are computed in float64 before the first model call.

Multistep predictor–corrector (§3.3–3.4)
---------------------------------------
The derivatives ``g^{(k)}(λ_s)`` come from the ``g`` values at the last ``p`` points (``p`` the step's
order, warming up as in :mod:`.dpm`): with ``solver_type="taylor"`` (default), from the polynomial
through them (a Vandermonde system, all orders consistent); the **pseudo-order** solver (``pseudo=True``)
uses ``g^{(k)} ≈ k!·[g_s, …, g_{s−k}]``, the leading divided differences only (the paper's choice at
very few steps, where the full estimates are too noisy). The **corrector** (UniPC-style) re-does a
step ``s → t`` once ``D`` at the predicted point is known (the call the next step needs, no extra
NFE), with the nodes ``t, s`` and ``p − 2`` earlier ones (the paper's default, same point count as the
predictor of that step, only after steps of order ≥ 2); the stored ``f_t`` is kept, i.e. ``D`` at the
corrected point is taken as ``D_t + (1 − l_t)(x_corr − x_pred)``, a first-order update with ``l`` as the
diagonal Jacobian. ``solver_type="dpmsolver"`` replaces, in the one-unknown systems (order-2
predictor, two-point corrector), ``I_1`` by its ``h → 0`` form ``(h/2) I_0`` — DPM-Solver's
``dpmsolver`` type, which DPM-Solver++(2M) uses.

Reduction
---------
``l = 1, s = b = 0`` gives ``f = −D`` and the DPM-Solver++ update ``x_t = e^{−h} x_s + ∫ e^{−(λ_t−λ)} D``
(data prediction). Without ``statistics`` the solver uses exactly these: with ``corrector=False`` and
``solver_type="dpmsolver"`` it *is* ``dpmpp_3m`` (``order=3``) and ``dpmpp_2m`` (``order=2``), which
``tests/solvers/test_dpm_v3.py`` checks to 1e-10 (with ``l = s = b = 0`` instead, ``f = σ ε̂``, the update is
an exponential integrator of neither DPM-Solver's nor DPM-Solver++'s form; the paper's code
"degenerates" with ``l = 1``).

Ends of the walk
----------------
Every positive σ of the walk must lie inside the statistics' range ``[σ_min, σ_max]`` of the grid (a
relative slack of 1e-6 is allowed); a walk outside raises :class:`~diffsample.errors.SigmaError`, as
the statistics are not extrapolated. The step into σ = 0 (``λ = +∞``, outside every finite grid) is
first order and returns ``D(x, σ_{n−1})``, as every λ-space solver here (:mod:`.dpm`): a polynomial in
λ extrapolated over an infinite interval has no finite limit. The corrector is skipped on the step
before it (its result would be unused). ``lower_order_final`` (default on) is the one rule of
:mod:`._kernel.orders`, as in :mod:`.dpm` (the paper's code caps the final orders at any length).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Protocol

import numpy as np
import torch
from numpy.polynomial import legendre as nleg

from ..contracts import Denoiser, NoiseSource
from ..errors import DiffsampleError, ShapeError, SigmaError
from ._kernel.callbacks import Callback, report
from ._kernel.levels import sigma_batch, sigma_list
from ._kernel.orders import check_order, planned_orders
from .registry import register

__all__ = ["StatisticsLike", "Quadrature", "step_coefficients", "dpm_solver_v3"]

MAX_ORDER = 3
_SOLVER_TYPES = ("taylor", "dpmsolver")
_Coeffs = dict[str, Any]
_GL_N = 10
_MAX_CELL = 0.5
_RANGE_SLACK = 1e-6


class StatisticsLike(Protocol):
    """What the solver reads from empirical model statistics: a λ-grid and ``l, s, b`` on it."""

    lam: np.ndarray  # (K,) strictly increasing λ = −log σ
    l: np.ndarray  # (K, *shape)  # noqa: E741
    s: np.ndarray  # (K, *shape)
    b: np.ndarray  # (K, *shape)


def _cumulative_matrix() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gauss–Legendre nodes/weights on [−1, 1] and ``Q[i, j] = ∫_{−1}^{u_i} ℓ_j``, ``ℓ_j`` the Lagrange basis."""
    u, w = nleg.leggauss(_GL_N)
    coeffs = np.linalg.inv(nleg.legvander(u, _GL_N - 1))  # column j: Legendre coefficients of ℓ_j
    q = nleg.legval(u, nleg.legint(coeffs, lbnd=-1.0)).T  # (node i, basis j)
    return u, w, q


_U, _W, _Q = _cumulative_matrix()


class Quadrature:
    """Cumulative integrals over piecewise-linear statistics along a λ-interval, to rounding.

    ``points`` (any λ in the statistics' range) become cell boundaries together with the grid points
    between them; cells are cut to width ≤ 0.5 and carry 10 Gauss–Legendre nodes each.
    """

    def __init__(self, stats: StatisticsLike, points: Sequence[float]) -> None:
        grid = np.asarray(stats.lam, dtype=np.float64)
        lo, hi = min(points), max(points)
        inner = grid[(grid > lo) & (grid < hi)]
        bounds = np.unique(np.concatenate([np.asarray(points, dtype=np.float64), inner]))
        cuts = [bounds[0]]
        for a, c in zip(bounds[:-1], bounds[1:], strict=True):
            m = max(1, math.ceil((c - a) / _MAX_CELL))
            cuts.extend(a + (c - a) * np.arange(1, m + 1) / m)
            cuts[-1] = c
        self.bounds = np.asarray(cuts)
        self.width = np.diff(self.bounds)
        self.nodes = self.bounds[:-1, None] + 0.5 * self.width[:, None] * (_U + 1.0)  # (cells, n)
        self.shape = np.asarray(stats.l).shape[1:]
        self._grid = grid
        self.l_nodes, self.l_bounds = self._interp(stats.l)
        self.s_nodes, self.s_bounds = self._interp(stats.s)
        self.b_nodes, self.b_bounds = self._interp(stats.b)

    def _interp(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        v = np.asarray(values, dtype=np.float64).reshape(len(self._grid), -1)
        return _lerp(self._grid, v, self.nodes.ravel()).reshape(*self.nodes.shape, -1), _lerp(
            self._grid, v, self.bounds
        )

    def index(self, lam: float) -> int:
        """The position of the cell boundary ``lam`` (one of the ``points``)."""
        i = int(np.argmin(np.abs(self.bounds - lam)))
        if abs(self.bounds[i] - lam) > 1e-12 * max(1.0, abs(lam)):
            raise AssertionError(f"{lam} is not a quadrature boundary")  # pragma: no cover - internal
        return i

    def cumint(self, nodes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``F(λ) = ∫_{λ_0}^{λ} φ`` from the values of ``φ`` at the nodes ``(cells, n, M)``: at nodes, at boundaries."""
        half = 0.5 * self.width[:, None]
        cells = half * np.einsum("i,cim->cm", _W, nodes)
        at_bounds = np.concatenate([np.zeros((1, nodes.shape[-1])), np.cumsum(cells, axis=0)])
        at_nodes = at_bounds[:-1, None, :] + half[:, :, None] * np.einsum("ij,cjm->cim", _Q, nodes)
        return at_nodes, at_bounds


def _lerp(grid: np.ndarray, values: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Piecewise-linear interpolation of ``values (K, M)`` on ``grid`` at the points ``at`` (inside the grid)."""
    if len(grid) == 1:
        return np.repeat(values, len(at), axis=0)
    j = np.clip(np.searchsorted(grid, at, side="right"), 1, len(grid) - 1)
    t = ((at - grid[j - 1]) / (grid[j] - grid[j - 1]))[:, None]
    return values[j - 1] * (1.0 - t) + values[j] * t


@dataclass(frozen=True)
class Update:
    """``x_t = keep·x_s − Σ_j on_f[j]·f_j + const`` with ``f_j = (1 − l_j) x_j − D_j`` at the step's nodes."""

    keep: np.ndarray
    on_f: tuple[np.ndarray, ...]
    const: np.ndarray


def _derivative_weights(offsets: np.ndarray, integrals: np.ndarray, pseudo: bool) -> np.ndarray:
    """Weights ``U_j`` (per coordinate) with ``Σ_{k≥1} I_k g^{(k)} = Σ_j U_j g_j`` (``j = 0`` the expansion point).

    ``offsets``: ``λ_j − λ_s`` for ``j = 1..q``; ``integrals``: ``I_1..I_q`` of shape ``(q, M)``.
    """
    q = len(offsets)
    out = np.zeros((q + 1, integrals.shape[-1]))
    if pseudo:  # g^{(k)} ≈ k!·[g_0, …, g_k] (Newton divided differences on the nodes in order)
        lam = np.concatenate([[0.0], offsets])
        for k in range(1, q + 1):
            for j in range(k + 1):
                others = np.delete(lam[: k + 1], j)
                out[j] += integrals[k - 1] * math.factorial(k) / np.prod(lam[j] - others)
        return out
    vander = np.stack([offsets**k / math.factorial(k) for k in range(1, q + 1)], axis=1)  # (j, k)
    w = np.linalg.solve(vander.T, integrals)  # Σ_k I_k (R^{-1})_{kj}
    out[1:] = w
    out[0] = -w.sum(axis=0)
    return out


def step_coefficients(
    stats: StatisticsLike,
    lam_s: float,
    lam_t: float,
    others: Sequence[float],
    *,
    pseudo: bool = False,
    solver_type: str = "taylor",
) -> Update:
    """The update of one step ``λ_s → λ_t`` from ``g`` at ``λ_s`` and at ``others`` (earlier points, or ``λ_t``).

    Returns per-coordinate float64 arrays (shape of the statistics) for the formula of :class:`Update`,
    nodes ordered ``(λ_s, *others)``; the order of the step is ``1 + len(others)``.
    """
    nodes = [lam_s, *others]
    quad = Quadrature(stats, [*nodes, lam_t])
    i_s, i_t = quad.index(lam_s), quad.index(lam_t)
    ln, lb = quad.cumint(quad.l_nodes)
    sn, sb = quad.cumint(quad.s_nodes)
    ln, lb, sn, sb = ln - lb[i_s], lb - lb[i_s], sn - sb[i_s], sb - sb[i_s]
    bn, bb = quad.cumint(np.exp(-sn) * quad.b_nodes)
    bn, bb = bn - bb[i_s], bb - bb[i_s]
    weight = np.exp(ln + sn)
    u = (quad.nodes - lam_s)[:, :, None]

    def over_step(values: np.ndarray) -> np.ndarray:
        at_bounds = quad.cumint(values)[1]
        return at_bounds[i_t] - at_bounds[i_s]

    q = len(others)
    integrals = np.stack([over_step(weight * u**k / math.factorial(k)) for k in range(q + 1)])
    if q == 1 and solver_type == "dpmsolver":
        integrals[1] = 0.5 * (lam_t - lam_s) * integrals[0]
    weights = _derivative_weights(np.asarray(others) - lam_s, integrals[1:], pseudo) if q else np.zeros((1, 1))
    weights = weights + np.concatenate([integrals[:1], np.zeros((q, integrals.shape[-1]))])
    scale = np.exp(-lb[i_t])
    idx = [quad.index(v) for v in nodes]
    on_f = tuple(scale * weights[j] * np.exp(-sb[i]) for j, i in enumerate(idx))
    const = scale * (sum(weights[j] * bb[i] for j, i in enumerate(idx)) - over_step(weight * bn))
    shape = quad.shape
    return Update(scale.reshape(shape), tuple(c.reshape(shape) for c in on_f), const.reshape(shape))


def _degenerate(lam_lo: float, lam_hi: float) -> StatisticsLike:
    """``l = 1, s = b = 0`` on ``[λ_lo, λ_hi]``: the statistics under which the solver is DPM-Solver++."""

    grid = np.array([lam_lo, lam_hi]) if lam_hi > lam_lo else np.array([lam_lo])
    ones, zeros = np.ones((len(grid), 1)), np.zeros((len(grid), 1))
    return SimpleNamespace(lam=grid, l=ones, s=zeros, b=zeros)  # type: ignore[return-value]


def check_statistics(stats: StatisticsLike, sample_shape: Sequence[int], sigma_hi: float, sigma_lo: float) -> None:
    """Raise unless ``stats`` covers ``[sigma_lo, sigma_hi]`` and its shape broadcasts to ``sample_shape``."""
    for name in ("lam", "l", "s", "b"):
        if not hasattr(stats, name):
            raise DiffsampleError(f"dpm_solver_v3: statistics need attributes lam, l, s, b; {name!r} is missing")
    lam = np.asarray(stats.lam, dtype=np.float64)
    if lam.ndim != 1 or len(lam) < 2 or not np.all(np.diff(lam) > 0) or not np.all(np.isfinite(lam)):
        raise ShapeError("dpm_solver_v3: statistics.lam must be a 1-D strictly increasing finite grid of >= 2 points")
    for name in ("l", "s", "b"):
        arr = np.asarray(getattr(stats, name))
        if arr.shape[:1] != lam.shape or not np.all(np.isfinite(arr)):
            raise ShapeError(
                f"dpm_solver_v3: statistics.{name} must be finite with shape ({len(lam)}, *shape), got {arr.shape}"
            )
    shape = np.asarray(stats.l).shape[1:]
    try:
        ok = torch.broadcast_shapes(shape, tuple(sample_shape)) == tuple(sample_shape)
    except RuntimeError:
        ok = False
    if not ok or np.asarray(stats.s).shape[1:] != shape or np.asarray(stats.b).shape[1:] != shape:
        raise ShapeError(
            f"dpm_solver_v3: statistics of per-sample shape {shape} do not fit samples of shape {tuple(sample_shape)}"
        )
    need_lo, need_hi = -math.log(sigma_hi), -math.log(sigma_lo)
    slack = _RANGE_SLACK * max(1.0, abs(lam[0]), abs(lam[-1]))
    if need_lo < lam[0] - slack or need_hi > lam[-1] + slack:
        raise SigmaError(
            f"dpm_solver_v3: the statistics cover sigma in [{math.exp(-lam[-1]):.6g}, {math.exp(-lam[0]):.6g}] but "
            f"the walk visits [{sigma_lo:.6g}, {sigma_hi:.6g}]; compute statistics over the walk's range"
        )


def _clamp(lam: float, grid: np.ndarray) -> float:
    return min(max(lam, float(grid[0])), float(grid[-1]))


def _plan(
    stats: StatisticsLike, lam: list[float], orders: list[int], pseudo: bool, corrector: bool, solver_type: str
) -> list[tuple[Update, Update | None]]:
    """Per step into σ > 0: the predictor's update and the corrector's for the state it lands on (or None)."""
    n = len(orders)
    plan: list[tuple[Update, Update | None]] = []
    for i, p in enumerate(orders):
        if math.isinf(lam[i + 1]):
            break
        pred = step_coefficients(
            stats, lam[i], lam[i + 1], [lam[i - m] for m in range(1, p)], pseudo=pseudo, solver_type=solver_type
        )
        corr = None
        later_call = i + 2 <= n and math.isfinite(lam[i + 2])  # a model call at σ_{i+1} that uses x
        if corrector and p >= 2 and later_call:
            corr = step_coefficients(
                stats,
                lam[i],
                lam[i + 1],
                [lam[i + 1]] + [lam[i - m] for m in range(1, p - 1)],
                pseudo=pseudo,
                solver_type=solver_type,
            )
        plan.append((pred, corr))
    return plan


def _apply(u: _Coeffs, x: torch.Tensor, fs: Sequence[torch.Tensor]) -> torch.Tensor:
    """``keep·x − Σ_j on_f[j]·f_j + const`` (:class:`Update` as tensors)."""
    out = x * u["keep"] + u["const"]
    for c, f in zip(u["on_f"], fs, strict=True):
        out.sub_(f * c)
    return out


def _tensors(update: Update, like: torch.Tensor) -> _Coeffs:
    def t(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(a, dtype=like.dtype, device=like.device)

    return {"keep": t(update.keep), "on_f": [t(c) for c in update.on_f], "const": t(update.const)}


@register("dpm_solver_v3", order=3)
def dpm_solver_v3(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    noise: NoiseSource | None = None,
    callback: Callback = None,
    statistics: StatisticsLike | None = None,
    order: int = 3,
    pseudo: bool | None = None,
    corrector: bool | None = None,
    solver_type: str = "taylor",
    lower_order_final: bool = True,
) -> torch.Tensor:
    """DPM-Solver-v3 (Zheng et al. 2023): multistep predictor–corrector with empirical model statistics.

    One model call per step. Without ``statistics`` it is DPM-Solver++ multistep (``l = 1, s = b = 0``,
    module docstring).

    Args:
        statistics: an :class:`~diffsample.tuning.ems.EMS` (or any object with ``lam, l, s, b``) covering
            the walk's positive σ; ``None`` for the DPM-Solver++ reduction.
        order: 1–3 (default 3, the paper's).
        pseudo: the pseudo-order derivative estimates; ``None`` (default): on for walks of ≤ 5 steps
            (the paper's rule for NFE ≤ 5).
        corrector: the multistep corrector; ``None`` (default): on for walks of ≤ 6 steps (the paper's
            rule for NFE ≤ 6).
        solver_type: ``"taylor"`` (exact weights, default) or ``"dpmsolver"`` (``h/2`` in the
            one-unknown systems, as DPM-Solver++(2M)).
        lower_order_final: the order plan of :func:`._kernel.orders.planned_orders` (runs under 15 steps capped by the
            steps left, sudden step growth capped at order 2).
    """
    order = check_order(order, MAX_ORDER, "dpm_solver_v3")
    if solver_type not in _SOLVER_TYPES:
        raise DiffsampleError(f"dpm_solver_v3: solver_type must be one of {_SOLVER_TYPES}, got {solver_type!r}")
    s = sigma_list(sigmas)
    n = len(s) - 1
    positive = [v for v in s if v > 0]
    lam = [-math.log(v) if v > 0 else math.inf for v in s]
    stats = statistics if statistics is not None else _degenerate(lam[0], -math.log(positive[-1]))
    if statistics is not None:
        check_statistics(statistics, x.shape[1:], positive[0], positive[-1])
        grid = np.asarray(statistics.lam, dtype=np.float64)
        lam = [_clamp(v, grid) if math.isfinite(v) else v for v in lam]  # within the 1e-6 slack
    pseudo = n <= 5 if pseudo is None else bool(pseudo)
    corrector = n <= 6 if corrector is None else bool(corrector)
    orders = planned_orders(s, order, lower_order_final)  # DPM-Solver++'s plan (no statistics: its exact reduction)
    plan = [
        (_tensors(p, x), None if c is None else _tensors(c, x))
        for p, c in _plan(stats, lam, orders, pseudo, corrector, solver_type)
    ]
    one_minus_l = [
        torch.as_tensor(
            1.0
            - _lerp(
                np.asarray(stats.lam, dtype=np.float64),
                np.asarray(stats.l, dtype=np.float64).reshape(len(stats.lam), -1),
                np.array([v]),
            ).reshape(np.asarray(stats.l).shape[1:]),
            dtype=x.dtype,
            device=x.device,
        )
        if math.isfinite(v)
        else None
        for v in lam
    ]
    fs: list[torch.Tensor] = []  # f at the last points, newest first
    pending: _Coeffs | None = None  # the corrector for the state just predicted
    x_start = x
    for i in range(n):
        sigma, sigma_next = s[i], s[i + 1]
        denoised = denoiser(x, sigma_batch(x, sigma))
        report(callback, i, x, sigma, sigma_next, denoised)
        if sigma_next == 0:
            return denoised
        f = torch.mul(x, one_minus_l[i]).sub_(denoised)
        if pending is not None:  # correct x at σ_i; f_i is kept (module docstring)
            x = _apply(pending, x_start, [fs[0], f, *fs[1:]][: len(pending["on_f"])])
        fs.insert(0, f)
        del fs[order:]
        pred, pending = plan[i]
        x_start = x
        x = _apply(pred, x, fs[: len(pred["on_f"])])
    return x
