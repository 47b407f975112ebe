"""UniPC's unified update (Zhao et al. 2023): UniP-p / UniC-p weights in ``λ = −log σ`` and their plan.

Both exponential-integrator forms (:mod:`.phi`) read ``x_t = A x_s + S Σ_k h^{k+1} I_k(h) F^{(k)}`` with
``F = D``: ``(A, S, I_k) = (e^{−h}, 1, φ_{k+1}(−h))``, or ``F = ε̂``: ``(1, −σ_s, e^{−h} φ_{k+1}(h))``. Earlier
model values at ``λ_s + r_m h`` stand in for the derivatives:

    x_t = A x_s + S [ (1 − e^{−h}) F_s + Σ_m w_m (F_m − F_s) ],     Σ_m w_m r_m^k = k! h I_k(h),  k = 1..q,

a transposed Vandermonde system (:func:`.lagrange.solve_transposed_vandermonde`). A one-unknown system is
replaced by UniPC's ``h → 0`` rule ``w_1 r_1 = B̃(h)/2`` with ``variant`` choosing ``B``; a corrector adds
the new point ``r = 1``. :mod:`diffsample.solvers.unipc` derives it in full; ``unipc``, ``dc_solver`` and
``plan`` share this module, the first two also the walk (:func:`unified_start`, :func:`unified_step`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch

from ...contracts import Denoiser
from .callbacks import Callback, report
from .lagrange import solve_transposed_vandermonde
from .levels import sigma_batch
from .orders import planned_orders
from .phi import phi_integrals

#: The highest predictor order (the points of the interpolating polynomial).
MAX_ORDER = 3
#: ``B(h)`` of the one-point rule: ``"bh2"`` (``e^h − 1``, the default) or ``"bh1"`` (``h``).
VARIANTS = ("bh2", "bh1")
#: The integrated model output: ``D`` (``"data"``, the "++" form) or ``ε̂`` (``"noise"``).
PREDICTIONS = ("data", "noise")
#: UniPC's predictors: UniP-p, or DDIM at every step.
PREDICTORS = ("unip", "ddim")


class Update(NamedTuple):
    """``out = keep·x + cur·F_s + Σ_m prev[m]·F_{(m+1) steps back} + new·F_t``."""

    keep: float
    cur: float
    prev: tuple[float, ...]
    new: float = 0.0


def prediction_output(x: torch.Tensor, denoised: torch.Tensor, sigma: float, noise: bool) -> torch.Tensor:
    """The integrated model output at ``(x, σ)``: ``D`` (data prediction) or ``ε̂ = (x − D)/σ`` (noise)."""
    return torch.sub(x, denoised).mul_(1.0 / sigma) if noise else denoised


def into_zero_update(sigma: float, noise: bool) -> Update:
    """The step into σ = 0 (``h = ∞``): the first-order limit ``D_s`` or ``x_s − σ_s ε̂_s``, in closed form."""
    return Update(1.0, -sigma, ()) if noise else Update(0.0, 1.0, ())


def unified_weights(
    h: float, nodes: Sequence[float], sigma: float, noise: bool, variant: str, corrector: bool = False
) -> Update:
    """Coefficients of one UniP/UniC update over ``λ_s → λ_s + h`` (``0 < h < ∞``) from the state at ``sigma``.

    ``nodes`` are the ``r_m`` of the earlier points (most recent first); a corrector adds the new point
    ``r = 1`` and its weight goes to ``new``.
    """
    nodes = [*nodes, 1.0] if corrector else list(nodes)
    q = len(nodes)
    one_minus_decay = -math.expm1(-h)
    keep, scale = (1.0, -sigma) if noise else (math.exp(-h), 1.0)
    if q == 0:
        w: list[float] = []
    elif q == 1:  # reference implementation: the h → 0 value 1/2 of g_1(h)/B(h)
        b_tilde = one_minus_decay if variant == "bh2" else (h * math.exp(-h) if noise else h)
        w = [0.5 * b_tilde / nodes[0]]
    else:
        integ = phi_integrals(h, q, noise)
        rhs = [math.factorial(k) * h * integ[k] for k in range(1, q + 1)]
        u = solve_transposed_vandermonde(nodes, rhs)  # u_m = w_m r_m
        w = [um / r for um, r in zip(u, nodes, strict=True)]
    c = [scale * wm for wm in w]
    cur = scale * one_minus_decay - sum(c)
    if corrector:
        return Update(keep, cur, tuple(c[:-1]), c[-1])
    return Update(keep, cur, tuple(c))


def combine(
    x: torch.Tensor, u: Update, f: torch.Tensor, hist: Sequence[torch.Tensor], f_new: torch.Tensor | None = None
) -> torch.Tensor:
    """``u.keep·x + u.cur·f + Σ u.prev[m]·hist[m] (+ u.new·f_new)`` with one tensor op per term."""
    out = torch.add(x, f, alpha=u.cur) if u.keep == 1.0 else torch.mul(x, u.keep).add_(f, alpha=u.cur)
    for c, g in zip(u.prev, hist, strict=False):
        out.add_(g, alpha=c)
    if f_new is not None:
        out.add_(f_new, alpha=u.new)
    return out


def unified_plan(
    s: list[float],
    order: int,
    variant: str,
    noise: bool,
    predictor: str,
    corrector: bool,
    lower_order_final: bool,
    disable: frozenset[int],
) -> list[tuple[Update, Update | None]]:
    """Per step of a UniPC walk over ``s``: the predictor's update and the corrector's (as an increment on
    the predicted state) or None. Orders from :func:`.orders.planned_orders`."""
    n = len(s) - 1
    lam = [-math.log(v) if v > 0 else math.inf for v in s]
    orders = planned_orders(s, order, lower_order_final)
    plan: list[tuple[Update, Update | None]] = []
    for i in range(n):
        if s[i + 1] == 0:  # closed-form h = ∞ limit of the first-order step
            plan.append((into_zero_update(s[i], noise), None))
            continue
        p = orders[i]
        h = lam[i + 1] - lam[i]
        nodes = [(lam[i - m] - lam[i]) / h for m in range(1, p)]
        pred = unified_weights(h, nodes if predictor == "unip" else [], s[i], noise, variant)
        corr = None
        used = i < n - 1 and (noise or s[i + 2] > 0)  # data prediction: the step into 0 ignores x_s
        if corrector and used and i not in disable:
            full = unified_weights(h, nodes, s[i], noise, variant, corrector=True)
            prev = pred.prev + (0.0,) * (len(full.prev) - len(pred.prev))
            corr = Update(
                1.0, full.cur - pred.cur, tuple(a - b for a, b in zip(full.prev, prev, strict=True)), full.new
            )
        plan.append((pred, corr))
    return plan


class UnifiedState(NamedTuple):
    """A UniPC walk at the start of step ``i``: ``x`` the (corrected) state at ``σ_i``, ``x_at`` the point the
    last model call was made at, ``denoised`` that call's ``D``, ``f`` the integrated output there (``D`` or
    ``ε̂``) and ``hist`` the outputs of the earlier points the step uses (newest first)."""

    i: int
    x: torch.Tensor
    x_at: torch.Tensor
    denoised: torch.Tensor
    f: torch.Tensor
    hist: tuple[torch.Tensor, ...]


def unified_start(denoiser: Denoiser, x: torch.Tensor, sigma: float, noise: bool) -> UnifiedState:
    """The state at ``σ_0 = sigma`` after the walk's first model call."""
    denoised = denoiser(x, sigma_batch(x, sigma))
    return UnifiedState(0, x, x, denoised, prediction_output(x, denoised, sigma, noise), ())


def unified_step(
    denoiser: Denoiser,
    s: Sequence[float],
    plan: Sequence[tuple[Update, Update | None]],
    noise: bool,
    depth: int,
    state: UnifiedState,
    f: torch.Tensor,
    callback: Callback = None,
) -> UnifiedState | torch.Tensor:
    """Step ``state.i`` of a walk over ``s`` with the :func:`unified_plan` ``plan``, integrating the output ``f``
    (``state.f``, or a replacement for it such as DC-Solver's compensated value): the next state, or the
    result after the last step. ``depth``: how many earlier outputs a step can use (``order − 1``).

    The predictor's update, then (when planned) the corrector's with the model value at the predicted point,
    which is the next step's model call (no extra NFE). Into σ = 0 with data prediction the result is ``f``.
    """
    i = state.i
    pred, corr = plan[i]
    report(callback, i, state.x_at, s[i], s[i + 1], state.denoised)
    if s[i + 1] == 0 and not noise:  # the h = ∞ first-order limit: D_i
        return f
    x_pred = combine(state.x, pred, f, state.hist)
    if i == len(plan) - 1:
        return x_pred
    denoised = denoiser(x_pred, sigma_batch(x_pred, s[i + 1]))
    f_new = prediction_output(x_pred, denoised, s[i + 1], noise)
    x = x_pred if corr is None else combine(x_pred, corr, f, state.hist, f_new)
    hist = (f, *state.hist[: depth - 1]) if depth else ()
    return UnifiedState(i + 1, x, x_pred, denoised, f_new, hist)
