"""Momentum against divergence artifacts: heavy-ball PLMS / DPM-Solver++(2M) and generalised heavy ball (GHVB).

Wizadwongsa, Chinchuthakun, Khungurn, Raj & Suwajanakorn (2023/ICLR 2024), "Diffusion Sampling with
Momentum for Mitigating Divergence Artifacts". The claim: at few steps (or high guidance), high-order
multistep solvers leave their small stability regions and diverge ("divergence artifacts"); damping the
update with Polyak's heavy-ball momentum enlarges the stability region at the cost of accuracy.

The base method: PLMS on the σ-space PF-ODE
--------------------------------------------
With ``dx/dσ = d(x, σ) = (x − D(x, σ))/σ`` (= ε̂; their code works in ``g = σ/α``, which is this σ) and the
step ``h_i = σ_{i+1} − σ_i``, PLMS of order ``r`` is Adams–Bashforth with the *uniform-step* weights
``b^{(r)}`` (:data:`~diffsample.solvers.multistep.AB_UNIFORM`, newest slope first) used on any grid:

    x_{i+1} = x_i + h_i Σ_j b^{(r)}_j d_{i−j}        (this library's ``ipndm``).

Heavy ball (``plms_hb``, paper §4, their ``PLMSWithHBScheduler``; ``dpmpp_2m_hb``, their
``MomentumDPMSolverMultistepScheduler``)
----------------------------------------------------------------------------------------------------
The base update direction ``p_i`` (PLMS: ``Σ_j b_j d_{i−j}``; DPM-Solver++(2M): its effective ``x̂0``,
``m̄_i = D_i + h/(2 h_{i−1}) (D_i − D_{i−1})`` in ``λ = −log σ``) is replaced by its exponential moving average

    v_i = (1 − β) v_{i−1} + β p_i,   v_0 = p_0;   x_{i+1} = x_i + h_i v_i   (PLMS)
                                                  x_{i+1} = (σ_{i+1}/σ_i) x_i + (1 − σ_{i+1}/σ_i) v_i   (2M).

``β = 1`` is the base method. For ``β < 1`` the average lags ``p`` by ``(1 − β)/β`` steps, an ``O(h)`` error in
the direction, so the methods are first order (the paper's Theorem: HB methods converge at order 1).
On the linear test equation ``d = λx`` (``z = hλ``) the EMA turns the base recursion ``Δx_i = p_i`` into
``Δx_i − (1 − β) Δx_{i−1} = β p_i``; at the root ``ξ = −1`` that bounds the real stability interval this is
``−2(2 − β) = β p``, so the real interval of PLMS-r with HB is the base one scaled by ``(2 − β)/β``
(AB1–4: ``[−2, 0]``, ``[−1, 0]``, ``[−6/11, 0]``, ``[−3/10, 0]``; ×1.5 at β = 0.8, ×3 at β = 0.5, ×9 at β = 0.2).

Generalised heavy ball (``ghvb``, paper §5, their ``GHVBScheduler``)
-------------------------------------------------------------------
The moving average is taken of the slopes first and the Adams–Bashforth-like combination is applied to
the averages:

    v_i = (1 − β) v_{i−1} + β d_i,  v_0 = d_0;   x_{i+1} = x_i + h_i Σ_{j<r} c^{(r)}_j(β) v_{i−j}.

The weights ``c^{(r)}(β)`` make the step exact for slopes that are polynomials of degree ``< r`` in the
step index (uniform steps) when ``v`` is the average of the whole past: with ``K`` geometric,
``P(K = k) = β(1 − β)^k``, ``v_{i−j} = E f(t_i − (j + K)h)``, so the conditions are (``t_i = 0``, ``h = 1``)

    Σ_j c_j E[(−(j + K))^m] = ∫_0^1 t^m dt = 1/(m + 1),   m = 0, …, r − 1,

with the factorial moments ``E[K(K−1)…(K−l+1)] = l! q^l``, ``q = (1 − β)/β``, turned into power moments
by Stirling numbers of the second kind (:func:`ghvb_coefficients` solves this r×r system in exact
rational arithmetic). The solutions are ``β c = a + β b``, e.g. order 2: ``((2 + β) v_i − (2 − β) v_{i−1})/(2β)``,
order 3: ``((18 + 5β) v_i − (24 − 8β) v_{i−1} + (6 − β) v_{i−2})/(12β)``, the paper's mixer coefficients.
``β = 1`` gives PLMS-r; as ``β → 0`` the update tends to PLMS-(r−1) (the ``1/β`` terms are differences of
consecutive ``v``, i.e. ``β(d − v)``). The paper names the method by ``q = r − 1 + β`` ("GHVB 3.8" is
``order=4, beta=0.8``; :func:`ghvb_order` converts). Its real stability interval moves from AB-r's to
AB-(r−1)'s as β falls (measured: order 2 ``[−(2 − β), 0]``; order 4 ``[−0.30, 0]`` at β = 1, ``[−0.43, 0]``
at β = 0.5, ``[−0.50, 0]`` at β = 0.2), while it stays of order ``r`` on σ-uniform steps.

Orders, warm-up and the step into σ = 0
---------------------------------------
Step ``i`` uses ``min(order, i + 1)`` history entries (warm-up, as the paper's code and :mod:`.multistep`).
The weights are the uniform-step ones, as in the paper: ``plms_hb`` at β = 1 is ``ipndm``, ``ghvb`` at β = 1 is
``ipndm`` of the same order (equal to 1e-12; the sums are grouped differently). Like iPNDM they keep their
order ``r`` on σ-uniform steps only: on smoothly varying grids (Karras, log-SNR) the fixed weights leave an
``O(h²·Δh)`` local error (second order), and a warm-up start costs ``O(h_0²)`` globally as for every
multistep method here — also the average's start ``v_0 = d_0`` (instead of the infinite past) is an
``O(h_0)`` error in ``v`` that decays like ``(1 − β)^i`` and adds ``O(h_0²/β)``. ``dpmpp_2m_hb`` follows
``dpmpp_2m``'s order plan (:func:`._kernel.orders.planned_orders`).

With ``lower_order_final=True`` (default) a last step into σ = 0 returns ``D(x, σ_{n−1})``, the first-order
limit the other solvers return (momentum is not applied to it); ``plms_hb``/``ghvb`` with
``lower_order_final=False`` take the momentum step to σ = 0 (finite weights in σ). DPM-Solver++'s step
into σ = 0 is always ``D``, as in :mod:`.dpm`.
"""

from __future__ import annotations

import math
import numbers
from fractions import Fraction
from functools import cache

import torch

from ..contracts import Denoiser, NoiseSource
from ..errors import DiffsampleError
from ._kernel.adams_bashforth import AB_UNIFORM, MAX_ORDER
from ._kernel.callbacks import Callback, report
from ._kernel.exponential import advance, mix, multistep_coeffs
from ._kernel.levels import sigma_batch, sigma_list
from ._kernel.orders import check_order, planned_orders
from ._kernel.threshold import threshold_option, thresholded_denoise
from ._kernel.weighted import weighted_sum
from .registry import register

__all__ = ["ghvb_coefficients", "ghvb_order", "check_beta", "plms_hb", "ghvb", "dpmpp_2m_hb"]

#: The paper's default damping for its experiments (PLMS 3.8 / GHVB 3.8, DPM-Solver++ momentum 0.8).
DEFAULT_BETA = 0.8


def check_beta(beta: float, solver: str) -> float:
    """Validate a damping ``beta`` (a real number with ``0 < β ≤ 1``) and return it as ``float``."""
    if isinstance(beta, bool) or not isinstance(beta, numbers.Real) or not 0.0 < float(beta) <= 1.0:
        raise DiffsampleError(f"{solver}: beta must be a number with 0 < beta <= 1, got {beta!r}")
    return float(beta)


def ghvb_order(q: float) -> tuple[int, float]:
    """The paper's GHVB name ``q = r − 1 + β`` (``0 < q ≤ 4``) as ``(order, beta)``: 3.8 → (4, 0.8), 2.0 → (2, 1.0)."""
    if isinstance(q, bool) or not isinstance(q, numbers.Real) or not 0.0 < float(q) <= MAX_ORDER:
        raise DiffsampleError(f"GHVB order q must be a number with 0 < q <= {MAX_ORDER}, got {q!r}")
    order = math.ceil(float(q))
    return order, float(q) - order + 1.0


def _stirling2(j: int, k: int) -> int:
    """Stirling number of the second kind ``S(j, k)``."""
    return sum((-1) ** (k - i) * math.comb(k, i) * i**j for i in range(k + 1)) // math.factorial(k)


def _solve(a: list[list[Fraction]], b: list[Fraction]) -> list[Fraction]:
    """Gaussian elimination in exact rational arithmetic (the systems here are at most 4×4 and regular)."""
    n = len(b)
    m = [row[:] + [rhs] for row, rhs in zip(a, b, strict=True)]
    for col in range(n):
        pivot = next(r for r in range(col, n) if m[r][col] != 0)
        m[col], m[pivot] = m[pivot], m[col]
        for r in range(n):
            if r != col and m[r][col] != 0:
                factor = m[r][col] / m[col][col]
                m[r] = [u - factor * w for u, w in zip(m[r], m[col], strict=True)]
    return [m[r][n] / m[r][r] for r in range(n)]


@cache
def ghvb_coefficients(order: int, beta: float) -> tuple[float, ...]:
    """GHVB weights ``c^{(r)}_j(β)`` of ``v_i, v_{i−1}, …`` (newest first), from the moment conditions.

    Solves ``Σ_j c_j E[(−(j + K))^m] = 1/(m + 1)`` (``m < r``, ``K`` geometric with ``P(K = k) = β(1 − β)^k``;
    module docstring) exactly in rationals for the float ``β`` and rounds once. ``β = 1`` gives the
    uniform Adams–Bashforth weights.
    """
    order = check_order(order, MAX_ORDER, "ghvb")
    beta_q = Fraction(check_beta(beta, "ghvb"))
    q = (1 - beta_q) / beta_q
    moments = [sum(_stirling2(j, k) * math.factorial(k) * q**k for k in range(j + 1)) for j in range(order)]
    rows = [
        [(-1) ** m * sum(math.comb(m, j) * i ** (m - j) * moments[j] for j in range(m + 1)) for i in range(order)]
        for m in range(order)
    ]
    return tuple(float(c) for c in _solve(rows, [Fraction(1, m + 1) for m in range(order)]))


def _sigma_walk(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    order: int,
    beta: float,
    generalised: bool,
    lower_order_final: bool,
    callback: Callback,
) -> torch.Tensor:
    """PLMS with heavy ball (``generalised=False``) or GHVB on the slopes ``d = (x − D)/σ``: one call per step."""
    s = sigma_list(sigmas)
    n = len(s) - 1
    orders = planned_orders(s, order, lower_order_final, in_lambda=False)
    finish_on_denoised = lower_order_final and s[-1] == 0
    weights = {k: ghvb_coefficients(k, beta) if generalised else AB_UNIFORM[k - 1] for k in set(orders)}
    history: list[torch.Tensor] = []  # newest first: slopes (HB) or averaged slopes (GHVB), at most `order`
    velocity: torch.Tensor | None = None
    for i, k in enumerate(orders):
        sigma, sigma_next = s[i], s[i + 1]
        denoised = denoiser(x, sigma_batch(x, sigma))
        report(callback, i, x, sigma, sigma_next, denoised)
        if finish_on_denoised and i == n - 1:  # the first-order limit into σ = 0 (module docstring)
            x = denoised
            continue
        slope = (x - denoised).div_(sigma)
        if generalised:
            velocity = slope if velocity is None else torch.lerp(velocity, slope, beta)
            history.insert(0, velocity)
            del history[order:]
            direction = weighted_sum(weights[k], history[:k])
        else:
            history.insert(0, slope)
            del history[order:]
            step = weighted_sum(weights[k], history[:k])
            velocity = direction = step if velocity is None else torch.lerp(velocity, step, beta)
        x = torch.add(x, direction, alpha=sigma_next - sigma)
    return x


@register("plms_hb", order=1)
def plms_hb(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    noise: NoiseSource | None = None,
    callback: Callback = None,
    order: int = 4,
    beta: float = DEFAULT_BETA,
    lower_order_final: bool = True,
) -> torch.Tensor:
    """PLMS with Polyak heavy-ball momentum (Wizadwongsa et al. 2023, §4): EMA of the PLMS direction in σ.

    ``x_{i+1} = x_i + h_i v_i`` with ``v_i = (1 − β) v_{i−1} + β Σ_j b_j d_{i−j}`` (module docstring); first
    order for ``β < 1`` (registered so), ``β = 1`` is ``ipndm`` of the same order. The paper's "PLMS r−1+β
    with HB" is ``order=r, beta=β``.

    Args:
        order: PLMS order 1–4 (default 4; 1 is Euler with heavy ball).
        beta: damping ``0 < β ≤ 1`` (default 0.8); smaller is more stable and less accurate.
        lower_order_final: a last step into σ = 0 returns ``D`` (default on).
    """
    order = check_order(order, MAX_ORDER, "plms_hb")
    beta = check_beta(beta, "plms_hb")
    return _sigma_walk(denoiser, x, sigmas, order, beta, False, lower_order_final, callback)


@register("ghvb", order=2)
def ghvb(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    noise: NoiseSource | None = None,
    callback: Callback = None,
    order: int = 4,
    beta: float = DEFAULT_BETA,
    lower_order_final: bool = True,
) -> torch.Tensor:
    """Generalised heavy ball, GHVB (Wizadwongsa et al. 2023, §5): AB-like weights on averaged slopes, in σ.

    ``v_i = (1 − β) v_{i−1} + β d_i``, ``x_{i+1} = x_i + h_i Σ_j c^{(r)}_j(β) v_{i−j}`` (module docstring).
    Order ``r`` on σ-uniform steps for every β, between PLMS-r (β = 1, = ``ipndm``) and PLMS-(r−1)
    (β → 0) in stability; registered with order 2 like ``ipndm`` (fixed weights on smooth non-uniform
    grids). The paper's "GHVB q" is ``order, beta = ghvb_order(q)`` (default "GHVB 3.8").

    Args:
        order: 1–4 (default 4); ``order=1`` is Euler with heavy ball (the paper's "GHVB 0.β").
        beta: damping ``0 < β ≤ 1`` (default 0.8).
        lower_order_final: a last step into σ = 0 returns ``D`` (default on).
    """
    order = check_order(order, MAX_ORDER, "ghvb")
    beta = check_beta(beta, "ghvb")
    return _sigma_walk(denoiser, x, sigmas, order, beta, True, lower_order_final, callback)


@register("dpmpp_2m_hb", order=1)
def dpmpp_2m_hb(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    noise: NoiseSource | None = None,
    callback: Callback = None,
    beta: float = DEFAULT_BETA,
    lower_order_final: bool = True,
    thresholding: bool = False,
    threshold_ratio: float = 0.995,
    max_value: float = 1.0,
) -> torch.Tensor:
    """DPM-Solver++(2M) with heavy-ball momentum (Wizadwongsa et al. 2023, §4): EMA of the effective x̂0.

    ``v_i = (1 − β) v_{i−1} + β m̄_i`` (``v_0 = m̄_0 = D_0``) replaces ``m̄_i`` in the DDIM-form update
    ``x_{i+1} = (σ_{i+1}/σ_i) x_i + (1 − σ_{i+1}/σ_i) v_i``; ``β = 1`` is ``dpmpp_2m`` exactly, ``β < 1`` first
    order. (The paper's diffusers code starts the average at the first second-order step; here it
    starts at step 0, as its PLMS code does.)

    Args:
        beta: damping ``0 < β ≤ 1`` (default 0.8).
        lower_order_final: for runs under 15 steps, cap the order by the steps left (as ``dpmpp_2m``).
        thresholding, threshold_ratio, max_value: dynamic thresholding of x̂0 (see :mod:`.dpm`).
    """
    beta = check_beta(beta, "dpmpp_2m_hb")
    threshold = threshold_option(thresholding, threshold_ratio, max_value)
    s = sigma_list(sigmas)
    orders = planned_orders(s, 2, lower_order_final)
    outputs: list[torch.Tensor] = []  # x̂0 of the last two steps, newest first
    past: list[float] = []  # the previous step's λ-length
    velocity: torch.Tensor | None = None
    for i, k in enumerate(orders):
        sigma, sigma_next = s[i], s[i + 1]
        denoised = thresholded_denoise(denoiser, x, sigma, threshold)
        report(callback, i, x, sigma, sigma_next, denoised)
        if sigma_next == 0:  # the first-order limit (see .dpm)
            x = denoised
            continue
        outputs.insert(0, denoised)
        del outputs[2:]
        h = math.log(sigma / sigma_next)
        effective = mix(outputs[:k], multistep_coeffs(h, past[: k - 1], True))
        velocity = effective if velocity is None else torch.lerp(velocity, effective, beta)
        x = advance(x, velocity, sigma, sigma_next, True)
        past[:] = [h]
    return x
