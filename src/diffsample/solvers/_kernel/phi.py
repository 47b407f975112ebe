"""φ-functions of exponential integrators, computed in float64 host arithmetic with ``expm1``.

``φ_0(z) = e^z``, ``φ_{k+1}(z) = (φ_k(z) − 1/k!)/z = ∫_0^1 e^{(1−θ)z} θ^k/k! dθ`` (Hochbruck & Ostermann 2010,
"Exponential integrators", §2). Over a step ``λ_s → λ_s + h`` in ``λ = −log σ`` the σ-space PF-ODE
``dx/dλ = D − x`` gives exactly (Lu et al. 2022b, "DPM-Solver++", §3 with α = 1; Lu et al. 2022a, §3.1)

    x_t = e^{−h} x_s + Σ_{k≥0} h^{k+1} φ_{k+1}(−h) D^{(k)}(λ_s)                 (data prediction)
    x_t = x_s − σ_s Σ_{k≥0} h^{k+1} e^{−h} φ_{k+1}(h) ε̂^{(k)}(λ_s)            (noise prediction)

so the weights of every exponential-integrator solver here are φ-values at ``∓h``. Each function below is
the form one family needs, with the numerics its step sizes need (no cancellation for small ``h``, no
overflow for large ``h``).
"""

from __future__ import annotations

import math

_SERIES_BELOW = 1.0  # |h| below which φ_k(±h) comes from its power series
_SERIES_TERMS = 18  # relative truncation error below 1/19! ≈ 8e-18 there


def rho_ratios(h: float, data: bool) -> tuple[float, float]:
    """DPM-Solver's Taylor weight ratios ``(ρ_1(h), ρ_2(h))`` of a step of log-SNR length ``h > 0``.

    ``ρ_k(h) = h^{k+1} φ_{k+1}(−h) / (h φ_1(−h))`` (data prediction) or ``h^{k+1} φ_{k+1}(h) / (h φ_1(h))``
    (noise prediction): the effective model output of a first-order update is ``m + ρ_1 m' + ρ_2 m''``
    (:mod:`diffsample.solvers.dpm`). Closed forms ``ρ_1 = h/(1 − e^{−h}) − 1``, ``ρ_2 = h²/(2(1 − e^{−h})) − ρ_1``
    (data) and ``ρ_1 = 1 − h/(e^h − 1)``, ``ρ_2 = ρ_1 − h²/(2(e^h − 1))`` (noise).
    """
    if data:
        e = -math.expm1(-h)  # 1 − e^{−h} = h φ_1(−h) ∈ (0, 1]
        rho1 = h / e - 1.0
        return rho1, 0.5 * h * h / e - rho1
    e = math.expm1(min(h, 700.0))  # e^h − 1 = h φ_1(h); the ratios below are exact limits past 700
    rho1 = 1.0 - h / e
    return rho1, rho1 - 0.5 * h * h / e


def phi_integrals(h: float, q: int, noise: bool) -> list[float]:
    """``[I_0(h), …, I_q(h)]``: ``φ_{k+1}(−h)`` (data) or ``e^{−h} φ_{k+1}(h)`` (noise), for ``h > 0``.

    ``φ_{k+1}(−h) = (1/k! − φ_k(−h))/h`` and ``e^{−h} φ_{k+1}(h) = ∫_0^1 e^{−hθ} θ^k/k! dθ =
    (e^{−h} φ_k(h) − e^{−h}/k!)/h`` (never overflows). For ``h ≥ 1`` these run upwards from
    ``I_0 = (1 − e^{−h})/h``; for small ``h`` that would cancel, so ``I_q`` comes from the series
    ``φ_{q+1}(z) = Σ_j z^j/(j+q+1)!`` and the recurrences run downwards, where errors shrink by ``h``.
    """
    decay = math.exp(-h)
    if h >= _SERIES_BELOW:
        out = [-math.expm1(-h) / h]
        for k in range(1, q + 1):
            inv = 1.0 / math.factorial(k)
            out.append((out[-1] - decay * inv) / h if noise else (inv - out[-1]) / h)
        return out
    z = h if noise else -h
    term, top = 1.0 / math.factorial(q + 1), 0.0
    for j in range(_SERIES_TERMS):
        top += term
        term *= z / (j + q + 2)
    down = [top * decay if noise else top]
    for k in range(q, 0, -1):
        inv = 1.0 / math.factorial(k)
        down.append(h * down[-1] + decay * inv if noise else inv - h * down[-1])
    return down[::-1]


def sde_weights(h: float, eta: float) -> tuple[float, float, float, float]:
    """``(e^{−κh}, w_0, w_1, w_2)`` of the SDE-DPM-Solver++ update for ``κ = 1 + η`` (:mod:`..sde_dpmpp`).

    With ``z = κh``: ``w_0 = 1 − e^{−z} = z φ_1(−z)``, ``w_1 = h(1 − φ_1(−z)) = h z φ_2(−z)`` and
    ``w_2 = h²(1/2 − (1 − φ_1(−z))/z) = h² z φ_3(−z)``, from their Taylor series below ``z = 1e-3`` (the
    closed forms cancel there).
    """
    z = (1.0 + eta) * h
    decay = math.exp(-z)
    w0 = -math.expm1(-z)
    if z < 1e-3:
        a1 = z / 2 - z * z / 6 + z**3 / 24 - z**4 / 120
        a2 = z / 6 - z * z / 24 + z**3 / 120
    else:
        a1 = 1.0 - w0 / z
        a2 = 0.5 - a1 / z
    return decay, w0, h * a1, h * h * a2
