"""The first-order exponential-integrator update and DPM-Solver's multistep weights, in ``λ = −log σ``.

Integrating the linear part of the PF-ODE exactly over ``λ_s → λ_t = λ_s + h`` and taking the model output
``m`` constant gives the DDIM step (Lu et al. 2022a, eq. 3.7; Lu et al. 2022b, eq. 9):

    x_t = (σ_t/σ_s) x_s + (1 − σ_t/σ_s) m        (data prediction, m = D)
    x_t = x_s − (σ_s − σ_t) m                    (noise prediction, m = ε̂)

Higher-order DPM-Solvers apply this update to an effective output ``m̄ = m + ρ_1(h) m' + ρ_2(h) m''``
(:func:`.phi.rho_ratios`) with the λ-derivatives estimated from earlier outputs (:func:`multistep_coeffs`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .phi import rho_ratios


def advance(x: torch.Tensor, m: torch.Tensor, sigma: float, sigma_next: float, data: bool) -> torch.Tensor:
    """The first-order exponential-integrator update with effective output ``m̄`` (σ_next > 0).

    Data prediction ``(σ'/σ) x + (1 − σ'/σ) m̄``; noise prediction ``x − (σ − σ') m̄``; both are DDIM.
    """
    if data:
        return torch.lerp(m, x, sigma_next / sigma)
    return torch.add(x, m, alpha=sigma_next - sigma)


def mix(ms: Sequence[torch.Tensor], coeffs: Sequence[float]) -> torch.Tensor:
    """``Σ_j c_j m_j`` for float coefficients summing to one (a single lerp for two terms)."""
    if len(ms) == 1:
        return ms[0]
    if len(ms) == 2:
        return torch.lerp(ms[1], ms[0], coeffs[0])
    out = ms[0] * coeffs[0]
    for m, c in zip(ms[1:], coeffs[1:], strict=True):
        out.add_(m, alpha=c)
    return out


def multistep_coeffs(h: float, past: Sequence[float], data: bool) -> list[float]:
    """Coefficients of ``m̄`` on ``(m_i, m_{i−1}, m_{i−2})``: next step ``h``, past steps ``(h_{i−1}, h_{i−2})``.

    Order 2 (DPM-Solver++(2M), Lu et al. 2022b, Algorithm 2): ``m̄ = m_i + h/(2 h_{i−1}) (m_i − m_{i−1})``.
    Order 3: ``m̄ = m_i + ρ_1 (d_1 + h_{i−1} d_2) + 2 ρ_2 d_2`` with the Newton divided differences
    ``d_1 = (m_i − m_{i−1})/h_{i−1}``, ``e_1 = (m_{i−1} − m_{i−2})/h_{i−2}``, ``d_2 = (d_1 − e_1)/(h_{i−1} + h_{i−2})``,
    rewritten as ``m_i + α d_1 + β e_1`` (the full Taylor weight ``2 ρ_2``, see :mod:`diffsample.solvers.dpm`).
    """
    if not past:
        return [1.0]
    if len(past) == 1:
        c = 0.5 * h / past[0]
        return [1.0 + c, -c]
    h0, h1 = past
    rho1, rho2 = rho_ratios(h, data)
    on_d2 = (rho1 * h0 + 2.0 * rho2) / (h0 + h1)
    alpha, beta = rho1 + on_d2, -on_d2
    return [1.0 + alpha / h0, beta / h1 - alpha / h0, -beta / h1]
