"""DPM-Solver and DPM-Solver++: exponential integrators of the probability-flow ODE in log-SNR time.

In σ-space (``x = x0 + σ·ε``, the data scale α factored out) with ``λ = −log σ`` the PF-ODE is
semi-linear. For the noise prediction ``ε̂ = (x − D(x, σ))/σ`` (Lu et al. 2022, "DPM-Solver", eq. 3.4)
and for the data prediction ``D`` (Lu et al. 2022b, "DPM-Solver++", eq. 8) its exact solution over a
step ``λ_s → λ_t = λ_s + h`` is

    x_t = x_s − ∫_{λ_s}^{λ_t} e^{−λ} ε̂(λ) dλ                       (noise prediction)
    x_t = e^{−h} x_s + ∫_{λ_s}^{λ_t} e^{−(λ_t − λ)} D(λ) dλ          (data prediction)

The linear part is integrated exactly. Expanding the model output ``m ∈ {ε̂, D}`` about ``λ_s``,
``m(λ_s + u) = Σ_k m^{(k)} u^k / k!``, and integrating each power exactly gives one first-order (DDIM)
update applied to an *effective* model output ``m̄ = m + ρ_1(h) m' + ρ_2(h) m'' + …``:

    x_t = x_s − (σ_s − σ_t) m̄                 ρ_k(h) = h^{k+1} φ_{k+1}(h)  / (h φ_1(h))      (noise)
    x_t = (σ_t/σ_s) x_s + (1 − σ_t/σ_s) m̄     ρ_k(h) = h^{k+1} φ_{k+1}(−h) / (h φ_1(−h))     (data)

with ``φ_1(z) = (e^z − 1)/z`` and ``φ_{k+1}(z) = (φ_k(z) − 1/k!)/z``; in closed form
``ρ_1 = 1 − h/(e^h − 1)``, ``ρ_2 = ρ_1 − h²/(2(e^h − 1))`` (noise) and ``ρ_1 = h/(1 − e^{−h}) − 1``,
``ρ_2 = h²/(2(1 − e^{−h})) − ρ_1`` (data); ``ρ_1 = h/2 + O(h²)``, ``ρ_2 = h²/6 + O(h³)``. The solvers
differ only in how they estimate the λ-derivatives ``m^{(k)}``:

* **singlestep** (``dpm_solver_2s``, ``dpm_solver_3s``, ``dpmpp_2s``, ``dpm_fast``, ``dpm_adaptive``):
  extra model calls inside the step. Order 2 (Lu et al. 2022, Algorithm 1; 2022b, Algorithm 1) takes a
  DDIM step to ``λ_s + r_1 h`` and uses ``m' ≈ (m_{r_1} − m)/(r_1 h)`` with ``ρ_1`` replaced by its
  leading term ``h/2`` ("DPM-Solver-2" form): ``m̄ = m + (m_{r_1} − m)/(2 r_1)``, which for ``r_1 = 1/2``
  is ``m̄ = m_{1/2}``, a midpoint rule in λ. Order 3 (Lu et al. 2022, Algorithm 2, ``r_1 = 1/3``,
  ``r_2 = 2/3``) reaches ``λ_s + r_2 h`` with the order-2 update built on ``m_{r_1}`` and ends with
  ``m̄ = m + ρ_1(h) (m_{r_2} − m)/(r_2 h)``; the choice ``r_2 = 2/3`` makes that single difference carry
  the ``ρ_2 m''`` term to third order as well.
* **multistep** (``dpm_solver_2m``, ``dpm_solver_3m``, ``dpmpp_2m``, ``dpmpp_3m``): one call per step,
  the derivatives from the previous outputs (kept in locals). 2M (Lu et al. 2022b, Algorithm 2;
  k-diffusion's ``dpmpp_2m``) uses ``m' ≈ (m_i − m_{i−1})/h_{i−1}`` with ``ρ_1 → h/2``:
  ``m̄ = m_i + h/(2 h_{i−1}) (m_i − m_{i−1})``. 3M differentiates the quadratic through the last three
  outputs at ``λ_i`` (Newton divided differences ``d_1 = [m_i, m_{i−1}]``, ``d_2 = [m_i, m_{i−1}, m_{i−2}]``,
  so ``m' ≈ d_1 + h_{i−1} d_2`` and ``m'' ≈ 2 d_2``) and uses the exact ``ρ_1``, ``ρ_2``.

Note on 3M: the reference codes (DPM-Solver's ``multistep_dpm_solver_third_update``, k-diffusion's
``dpmpp_3m_sde`` at ``eta=0``) weigh ``d_2`` by ``ρ_2`` where the Taylor expansion asks for ``2 ρ_2``
(their ``D2 = h² d_2`` is ``h² m''/2``), which leaves an ``h³ m''/12`` local error: they converge at
second order. The full weight used here gives third order (``tests/solvers/test_dpm.py`` measures both).

Order planning and the step into σ = 0
--------------------------------------
Multistep solvers warm up with lower orders and, with ``lower_order_final=True`` (default), follow the
one rule of :mod:`._kernel.orders` (:func:`planned_orders`): runs under 15 steps end at decreasing orders,
as DPM-Solver and diffusers do, and a step more than ``1 + √2`` times longer in λ than the one before is
at most second order.

A step into σ = 0 (``λ_t = +∞``, ``e^{−h} = 0``) is always first order: the data-prediction update's
limit is ``x_t = m̄``, and ``ρ_1(h) ~ h`` (and the ``h/2`` of the DPM-Solver-2 form) diverges, because a
polynomial extrapolation of ``D`` over an infinite λ-interval has no finite limit; the noise-prediction
weights stay finite but extrapolate ε̂ over that infinite interval just the same. The only correct
finite limit is the first-order one, ``x_t = D(x_s, σ_s)`` (noise prediction: ``x_s − σ_s ε̂``, the same),
which is what every solver here returns on that step, computed without forming λ = ∞. Singlestep
solvers make no intermediate calls on it (registered with ``saves_last_eval``).

Dynamic thresholding
--------------------
The data-prediction solvers accept ``thresholding=True`` (Saharia et al. 2022, "Imagen", §2.3):
each ``x̂0`` is clipped per sample to ``[−s, s]`` with ``s`` the ``threshold_ratio`` quantile of ``|x̂0|``
(but at least ``max_value``) and rescaled by ``max_value/s``, so it lies in ``[−max_value, max_value]``.
The maths is :func:`diffsample.transforms.thresholding.dynamic_threshold` (re-exported here), the option
check and the thresholded model call are in :mod:`._kernel.threshold`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from ..contracts import Denoiser, NoiseSource
from ..errors import DiffsampleError, NonFiniteError
from ..transforms.thresholding import dynamic_threshold  # the one home of the maths; re-exported here
from ._kernel.callbacks import Callback, report
from ._kernel.exponential import advance, mix, multistep_coeffs
from ._kernel.levels import sigma_batch, sigma_list
from ._kernel.orders import planned_orders
from ._kernel.phi import rho_ratios
from ._kernel.stability import Step, warn_unstable
from ._kernel.threshold import Threshold, threshold_option, thresholded_denoise
from .registry import register

__all__ = [
    "dpm_solver_1",
    "dpm_solver_2s",
    "dpm_solver_3s",
    "dpm_solver_2m",
    "dpm_solver_3m",
    "dpm_fast",
    "dpm_adaptive",
    "dpmpp_2s",
    "dpmpp_2m",
    "dpmpp_3m",
    "dynamic_threshold",
    "threshold_option",
    "thresholded_denoise",
    "fast_orders",
    "planned_orders",
]

#: ``model(x, σ) -> m``: the model output (ε̂ or x̂0) a solver integrates.
ModelFn = Callable[[torch.Tensor, float], torch.Tensor]


def _output(x: torch.Tensor, denoised: torch.Tensor, sigma: float, data: bool) -> torch.Tensor:
    """The integrated model output: ``D`` (data prediction) or ``ε̂ = (x − D)/σ`` (noise prediction)."""
    return denoised if data else (x - denoised).div_(sigma)


def _model_fn(denoiser: Denoiser, data: bool, threshold: Threshold) -> ModelFn:
    return lambda x, sigma: _output(x, thresholded_denoise(denoiser, x, sigma, threshold), sigma, data)


def _multistep(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    order: int,
    data: bool,
    lower_order_final: bool,
    callback: Callback,
    threshold: Threshold = None,
) -> torch.Tensor:
    """Walk ``sigmas`` with the order-``order`` multistep method: one model call per step."""
    s = sigma_list(sigmas)
    orders = planned_orders(s, order, lower_order_final)
    outputs: list[torch.Tensor] = []  # newest first, at most `order`
    past: list[float] = []  # the previous steps' λ-lengths, newest first
    for i, k in enumerate(orders):
        sigma, sigma_next = s[i], s[i + 1]
        denoised = thresholded_denoise(denoiser, x, sigma, threshold)
        report(callback, i, x, sigma, sigma_next, denoised)
        if sigma_next == 0:  # the first-order limit (module docstring)
            x = denoised
            continue
        outputs.insert(0, _output(x, denoised, sigma, data))
        del outputs[order:]
        h = math.log(sigma / sigma_next)
        x = advance(x, mix(outputs[:k], multistep_coeffs(h, past[: k - 1], data)), sigma, sigma_next, data)
        past.insert(0, h)
        del past[order - 1 :]
    return x


def _single_step(
    model: ModelFn,
    x: torch.Tensor,
    m: torch.Tensor,
    sigma: float,
    sigma_next: float,
    order: int,
    data: bool,
    embedded: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One singlestep DPM-Solver step of order 1–3 from ``(x, σ)`` with model output ``m`` at ``x`` (σ_next > 0).

    Makes ``order − 1`` model calls (at ``λ + h/2``, or at ``λ + h/3`` and ``λ + 2h/3``). With ``embedded``
    it also returns the lower-order solution sharing those calls (DPM-Solver-12: DPM-Solver-1 inside
    DPM-Solver-2; DPM-Solver-23: DPM-Solver-2 with ``r_1 = 1/3`` inside DPM-Solver-3; Lu et al. 2022,
    §4 / Appendix C), else ``None``.
    """
    if order == 1:
        return advance(x, m, sigma, sigma_next, data), None
    h = math.log(sigma / sigma_next)
    if order == 2:
        sigma_mid = sigma * math.exp(-0.5 * h)
        m_mid = model(advance(x, m, sigma, sigma_mid, data), sigma_mid)
        low = advance(x, m, sigma, sigma_next, data) if embedded else None
        return advance(x, m_mid, sigma, sigma_next, data), low
    sigma_1, sigma_2 = sigma * math.exp(-h / 3), sigma * math.exp(-2 * h / 3)
    m_1 = model(advance(x, m, sigma, sigma_1, data), sigma_1)
    c_2 = rho_ratios(2 * h / 3, data)[0] / (h / 3)
    m_2 = model(advance(x, torch.lerp(m, m_1, c_2), sigma, sigma_2, data), sigma_2)
    low = advance(x, torch.lerp(m, m_1, 1.5), sigma, sigma_next, data) if embedded else None
    c_t = rho_ratios(h, data)[0] / (2 * h / 3)
    return advance(x, torch.lerp(m, m_2, c_t), sigma, sigma_next, data), low


def _singlestep_from(order: int, data: bool) -> Step:
    """A singlestep step of ``order`` from ``x`` at σ with its own call (the form :mod:`._kernel.stability` tests)."""

    def step(denoiser: Denoiser, x: torch.Tensor, sigma: float, sigma_next: float) -> torch.Tensor:
        model = _model_fn(denoiser, data, None)
        return _single_step(model, x, model(x, sigma), sigma, sigma_next, order, data)[0]

    return step


def _singlestep(
    solver: str,
    denoiser: Denoiser,
    x: torch.Tensor,
    s: Sequence[float],
    orders: Sequence[int],
    data: bool,
    callback: Callback,
    threshold: Threshold = None,
) -> torch.Tensor:
    """Walk the levels ``s`` (floats) with singlestep steps of the given ``orders``; first order into σ = 0.
    Warns once when a step is outside the method's stability region (:mod:`._kernel.stability`)."""
    warn_unstable(solver, ((i, s[i], s[i + 1], _singlestep_from(k, data)) for i, k in enumerate(orders)))
    model = _model_fn(denoiser, data, threshold)
    for i, k in enumerate(orders):
        sigma, sigma_next = s[i], s[i + 1]
        denoised = thresholded_denoise(denoiser, x, sigma, threshold)
        report(callback, i, x, sigma, sigma_next, denoised)
        if sigma_next == 0:
            x = denoised
            continue
        x = _single_step(model, x, _output(x, denoised, sigma, data), sigma, sigma_next, k, data)[0]
    return x


def _positive_end(sigmas: Sequence[float]) -> tuple[float, bool]:
    """The last positive level of a walk and whether a final step into σ = 0 follows it."""
    to_zero = sigmas[-1] == 0
    return (sigmas[-2] if to_zero else sigmas[-1]), to_zero


# --------------------------------------------------------------------------------------------------
# DPM-Solver (noise prediction)


@register("dpm_solver_1", order=1)
def dpm_solver_1(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    noise: NoiseSource | None = None,
    callback: Callback = None,
) -> torch.Tensor:
    """DPM-Solver-1 (Lu et al. 2022, eq. 3.7): ``x − (σ − σ') ε̂``, i.e. DDIM / Euler in σ; one call per step."""
    return _multistep(denoiser, x, sigmas, 1, False, False, callback)


@register("dpm_solver_2s", order=2, evals_per_step=2, saves_last_eval=True)
def dpm_solver_2s(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    noise: NoiseSource | None = None,
    callback: Callback = None,
) -> torch.Tensor:
    """DPM-Solver-2 (Lu et al. 2022, Algorithm 1, r₁ = 1/2): singlestep, two calls per step, one into σ = 0."""
    s = sigma_list(sigmas)
    return _singlestep("dpm_solver_2s", denoiser, x, s, [2] * (len(s) - 1), False, callback)


@register("dpm_solver_3s", order=3, evals_per_step=3, saves_last_eval=True)
def dpm_solver_3s(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    noise: NoiseSource | None = None,
    callback: Callback = None,
) -> torch.Tensor:
    """DPM-Solver-3 (Lu et al. 2022, Algorithm 2, r₁ = 1/3, r₂ = 2/3): singlestep, three calls a step, one into 0."""
    s = sigma_list(sigmas)
    return _singlestep("dpm_solver_3s", denoiser, x, s, [3] * (len(s) - 1), False, callback)


@register("dpm_solver_2m", order=2)
def dpm_solver_2m(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    noise: NoiseSource | None = None,
    callback: Callback = None,
    lower_order_final: bool = True,
) -> torch.Tensor:
    """Multistep DPM-Solver-2 on ε̂ (Lu et al. 2022b, §4 with noise prediction): one call per step.

    Args:
        lower_order_final: for runs under 15 steps, cap the order by the steps left (module docstring).
    """
    return _multistep(denoiser, x, sigmas, 2, False, lower_order_final, callback)


@register("dpm_solver_3m", order=3)
def dpm_solver_3m(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    noise: NoiseSource | None = None,
    callback: Callback = None,
    lower_order_final: bool = True,
) -> torch.Tensor:
    """Multistep DPM-Solver-3 on ε̂ (quadratic divided differences in λ, exact φ-weights): one call per step.

    Args:
        lower_order_final: for runs under 15 steps, cap the order by the steps left (module docstring).
    """
    return _multistep(denoiser, x, sigmas, 3, False, lower_order_final, callback)


def fast_orders(nfe: int) -> list[int]:
    """DPM-Solver-fast's order plan for ``nfe`` calls (Lu et al. 2022, §3.4; k-diffusion's ``dpm_fast``).

    ``K = ⌊nfe/3⌋ + 1`` steps: third order except ``[…, 2, 1]`` at the end when 3 divides ``nfe``,
    else a final step of order ``nfe mod 3``. A final first-order step (3 divides ``nfe``, or
    ``nfe ≡ 1 mod 3``) has an ``O(h²)`` local error, so only ``nfe ≡ 2 (mod 3)`` is globally third order.
    """
    k = nfe // 3 + 1
    return [3] * (k - 2) + [2, 1] if nfe % 3 == 0 else [3] * (k - 1) + [nfe % 3]


@register("dpm_fast", order=3)
def dpm_fast(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    noise: NoiseSource | None = None,
    callback: Callback = None,
    nfe: int | None = None,
) -> torch.Tensor:
    """DPM-Solver-fast (Lu et al. 2022, §3.4): a budget of calls split into log-SNR-uniform singlestep steps.

    Only the ends of ``sigmas`` are used: the walk spends ``nfe`` calls (default ``len(sigmas) − 1``,
    so the cost matches one call per step of ``sigmas``) on ``K = ⌊nfe/3⌋ + 1`` steps uniform in
    ``λ = −log σ`` with the orders of :func:`fast_orders`, as k-diffusion's ``sample_dpm_fast``. When
    ``sigmas`` ends in 0 the walk goes to the last positive level ``sigmas[-2]`` with ``nfe − 1`` calls
    and the last call is the final denoising step.

    Args:
        nfe: the model-call budget (>= 1).
    """
    s = sigma_list(sigmas)
    budget = len(s) - 1 if nfe is None else int(nfe)
    if budget < 1:
        raise DiffsampleError(f"dpm_fast needs an NFE budget >= 1, got {nfe!r}")
    sigma_end, to_zero = _positive_end(s)
    budget -= int(to_zero)
    levels, orders = [s[0]], []
    if budget > 0 and sigma_end < s[0]:
        orders = fast_orders(budget)
        lam0, lam1 = -math.log(s[0]), -math.log(sigma_end)
        levels += [math.exp(-(lam0 + (lam1 - lam0) * j / len(orders))) for j in range(1, len(orders))]
        levels.append(sigma_end)
    if to_zero:
        levels.append(0.0)
        orders.append(1)
    return _singlestep("dpm_fast", denoiser, x, levels, orders, False, callback)


@register("dpm_adaptive", order=3, evals_per_step=3, adaptive=True)
def dpm_adaptive(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    noise: NoiseSource | None = None,
    callback: Callback = None,
    order: int = 3,
    rtol: float = 0.05,
    atol: float = 0.0078,
    h_init: float = 0.05,
    pcoeff: float = 0.0,
    icoeff: float = 1.0,
    dcoeff: float = 0.0,
    accept_safety: float = 0.81,
    info: dict | None = None,
) -> torch.Tensor:
    """Adaptive DPM-Solver-12 / -23 (Lu et al. 2022, §4, Algorithm 4): error-controlled steps in λ.

    Only the ends of ``sigmas`` are used: the solver chooses its own steps from ``sigmas[0]`` to
    ``sigmas[-1]``; when that is 0 it adapts down to the last positive level ``sigmas[-2]`` and then
    takes the final denoising step (one call). Each trial step of length ``h`` in λ computes a pair of
    embedded singlestep solutions sharing their calls: ``order=3`` DPM-Solver-2 (``r_1 = 1/3``) and
    DPM-Solver-3, ``order=2`` DPM-Solver-1 and DPM-Solver-2. With the tolerance
    ``δ = max(atol, rtol · max(|x_low|, |x_prev|))`` (``x_prev`` the previous accepted low-order state)
    the error is ``E = max_b RMS((x_low − x_high)/δ)`` (the worst sample of the batch, as DPM-Solver).
    A PID controller (Söderlind 2003; k-diffusion's defaults ``pcoeff=0, icoeff=1, dcoeff=0``) scales
    ``h`` by ``1 + atan(f − 1)`` with ``f = E_n^{−β_1} E_{n−1}^{−β_2} E_{n−2}^{−β_3}``; the step is accepted when
    that factor is at least ``accept_safety``. The model output at the start of a step is reused after
    a rejection, so each trial costs ``order − 1`` calls plus one per accepted step. A step that comes
    within 1e-5 of the end in λ is stretched to end there exactly.

    Args:
        order: 2 (DPM-Solver-12) or 3 (DPM-Solver-23).
        rtol, atol: relative and absolute tolerances (atol > 0).
        h_init: the first trial step in λ.
        pcoeff, icoeff, dcoeff: PID gains; accept_safety: the acceptance threshold of the step factor.
        info: if a dict, it is filled with ``nfe``, ``n_accept``, ``n_reject`` and ``steps`` (trials).
    """
    if order not in (2, 3):
        raise DiffsampleError(f"dpm_adaptive: order must be 2 or 3, got {order!r}")
    if not (atol > 0 and rtol >= 0 and h_init > 0):
        raise DiffsampleError(f"dpm_adaptive needs atol > 0, rtol >= 0, h_init > 0; got {atol}, {rtol}, {h_init}")
    s = sigma_list(sigmas)
    sigma_end, to_zero = _positive_end(s)
    model = _model_fn(denoiser, False, None)
    b1, b2, b3 = (pcoeff + icoeff + dcoeff) / order, -(pcoeff + 2 * dcoeff) / order, dcoeff / order
    inv_err_1 = inv_err_2 = 0.0  # 1/E of the two previous accepted steps (set on the first trial)
    sigma, lam, lam_end, h = s[0], -math.log(s[0]), -math.log(sigma_end), float(h_init)
    nfe = n_accept = n_reject = 0
    x_prev, denoised, m = x, x, None
    while lam < lam_end:
        if m is None:
            denoised = denoiser(x, sigma_batch(x, sigma))
            m = _output(x, denoised, sigma, False)
            nfe += 1
        lam_next = lam + h
        if lam_next >= lam_end - 1e-5:
            lam_next, sigma_next = lam_end, sigma_end
        else:
            sigma_next = math.exp(-lam_next)
        x_high, x_low = _single_step(model, x, m, sigma, sigma_next, order, False, embedded=True)
        nfe += order - 1
        delta = torch.maximum(x_low.abs(), x_prev.abs()).mul_(rtol).clamp_(min=atol)
        error = float(((x_low - x_high) / delta).square().reshape(x.shape[0], -1).mean(1).sqrt().max())
        if not math.isfinite(error):
            raise NonFiniteError(f"dpm_adaptive: non-finite error estimate at sigma={sigma:.6g}")
        inv_err = 1.0 / (error + 1e-8)
        if n_accept + n_reject == 0:
            inv_err_1 = inv_err_2 = inv_err
        factor = 1.0 + math.atan(inv_err**b1 * inv_err_1**b2 * inv_err_2**b3 - 1.0)
        if factor >= accept_safety:
            report(callback, n_accept, x, sigma, sigma_next, denoised)
            inv_err_1, inv_err_2 = inv_err, inv_err_1
            x_prev, x, sigma, lam, m = x_low, x_high, sigma_next, lam_next, None
            n_accept += 1
        else:
            n_reject += 1
        h *= factor
        if lam < lam_end and h < 1e-10:
            raise DiffsampleError(f"dpm_adaptive: step size underflow at sigma={sigma:.6g} (rtol={rtol}, atol={atol})")
    if to_zero:
        denoised = denoiser(x, sigma_batch(x, sigma))
        nfe += 1
        report(callback, n_accept, x, sigma, 0.0, denoised)
        x = denoised
    if info is not None:
        info.update(nfe=nfe, n_accept=n_accept, n_reject=n_reject, steps=n_accept + n_reject)
    return x


# --------------------------------------------------------------------------------------------------
# DPM-Solver++ (data prediction)


@register("dpmpp_2s", order=2, evals_per_step=2, saves_last_eval=True)
def dpmpp_2s(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    noise: NoiseSource | None = None,
    callback: Callback = None,
    thresholding: bool = False,
    threshold_ratio: float = 0.995,
    max_value: float = 1.0,
) -> torch.Tensor:
    """DPM-Solver++(2S) (Lu et al. 2022b, Algorithm 1, r = 1/2): singlestep on x̂0, two calls per step, one into 0.

    The deterministic form of k-diffusion's ``dpmpp_2s_ancestral``: a DDIM step to the λ-midpoint
    and a DDIM step over the whole interval with the midpoint's ``x̂0``.

    Args:
        thresholding, threshold_ratio, max_value: dynamic thresholding of x̂0 (module docstring).
    """
    s = sigma_list(sigmas)
    threshold = threshold_option(thresholding, threshold_ratio, max_value)
    return _singlestep("dpmpp_2s", denoiser, x, s, [2] * (len(s) - 1), True, callback, threshold)


@register("dpmpp_2m", order=2)
def dpmpp_2m(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    noise: NoiseSource | None = None,
    callback: Callback = None,
    lower_order_final: bool = True,
    thresholding: bool = False,
    threshold_ratio: float = 0.995,
    max_value: float = 1.0,
) -> torch.Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022b, Algorithm 2; k-diffusion's ``dpmpp_2m``): multistep on x̂0, one call per step.

    Args:
        lower_order_final: for runs under 15 steps, cap the order by the steps left (module docstring).
        thresholding, threshold_ratio, max_value: dynamic thresholding of x̂0 (module docstring).
    """
    threshold = threshold_option(thresholding, threshold_ratio, max_value)
    return _multistep(denoiser, x, sigmas, 2, True, lower_order_final, callback, threshold)


@register("dpmpp_3m", order=3)
def dpmpp_3m(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    noise: NoiseSource | None = None,
    callback: Callback = None,
    lower_order_final: bool = True,
    thresholding: bool = False,
    threshold_ratio: float = 0.995,
    max_value: float = 1.0,
) -> torch.Tensor:
    """DPM-Solver++(3M): multistep on x̂0 with quadratic divided differences in λ, third order, one call per step.

    Args:
        lower_order_final: for runs under 15 steps, cap the order by the steps left (module docstring).
        thresholding, threshold_ratio, max_value: dynamic thresholding of x̂0 (module docstring).
    """
    threshold = threshold_option(thresholding, threshold_ratio, max_value)
    return _multistep(denoiser, x, sigmas, 3, True, lower_order_final, callback, threshold)
