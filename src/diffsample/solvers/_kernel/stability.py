"""Stability of one step on the Gaussian test problem, and the :class:`~diffsample.errors.StabilityWarning`.

The test problem
----------------
Data ``N(0, s²)`` (the Gaussian bed with one component; per coordinate of any Gaussian bed) have the exact
denoiser ``D(x, σ) = s²/(s² + σ²)·x``, so the σ-space PF-ODE ``dx/dσ = (x − D)/σ`` is linear,

    x(σ') = sqrt((s² + σ'²)/(s² + σ²)) · x(σ),

the analogue of Dahlquist's ``y' = λy`` for diffusion samplers: it contracts as σ falls and its rate
``σ/(s² + σ²)`` ranges over ``(0, 1/(2s)]`` as the data scale ``s`` varies, so a step that is accurate for
every ``s`` is accurate wherever a mixture's components sit. A step σ → σ' maps ``x = sqrt(s² + σ²)``
(one standard deviation of the noised data) to some ``x'``; its **relative error**

    E(σ, σ') = max_s |x' − sqrt(s² + σ'²)| / sqrt(s² + σ'²)

is the error it leaves in units of the scale the state should have, on the worst data scale
(:func:`gaussian_step_error`; ``s`` on a log grid two decades beyond ``[σ', σ]`` each way, where ``E``
has its maximum). The ``D(x, σ) = 0`` problem (all data at one point) is the ``s → 0`` end of it.

Which steps are stable
----------------------
The Euler (DDIM) step gives ``x' = (s² + σσ')/(s² + σ²)·x``, whose ratio to the exact value is
``(s² + σσ')/sqrt((s² + σ²)(s² + σ'²)) ∈ (0, 1]`` (Cauchy–Schwarz): ``E < 1`` for **every** step, however
long; DPM-Solver++'s singlestep updates (``dpmpp_2s``) stay below 1 too (measured, table below). Methods
that evaluate the model again inside the step and combine *slopes* or *noise predictions* do not:

* Heun (trapezoid on ``d = (x − D)/σ``, used by ``heun``, ``edm``, ``restart``): over a long step the
  slope at σ' of data resolved there is far smaller than at σ, and averaging the two keeps about half
  of the noise, ``x' ≈ x/2`` instead of ``x·s/σ``: ``E ≈ σ/(2σ')``;
* DPM-Solver-2/3 (noise prediction, singlestep: ``dpm_solver_2s``, ``dpm_solver_3s``, ``dpm_fast``):
  the update ``x − (σ − σ') ε̄`` uses ε̂ at an intermediate level ``σ^{1−r}σ'^{r}``; for data resolved
  there ε̂ is small and the noise is kept: ``E ≈ (σ/σ')^{r}``-like.

Measured ``E`` of the worst step of ``karras(n, 0.002, 80)``:

    n           2       3      4      5      6      8     10     20
    euler    0.99    0.94   0.87   0.79   0.70   0.55   0.43   0.16
    heun     7700     241     44   15.5    7.4    2.7    1.3   0.15
    edm         -       -     63   22.3   10.8      -      -      -     (Heun from σ̂ = 1.41σ, S_churn = 40)
    dpm-2s     99    16.3    6.2    3.2    1.9   0.88   0.47   0.06
    dpm-3s     59     6.8    2.1   0.92   0.48   0.17   0.08  0.005
    dpmpp-2s  0.86   0.67   0.52   0.41   0.32   0.21   0.15  0.035

and on ring2d, ``n = 2`` returns ``|x|`` up to 156 (Heun), 187 (DPM-Solver-2), 441 (DPM-Solver-3) for data on
the unit circle. A step is outside the stability region when ``E >`` :data:`STABILITY_LIMIT` (30): thirty
times the scale the step should reach, where Euler never exceeds one. The limit sits above every step of
≥ 5 Karras steps on the default span (EDM's 22.3 is the largest) so ordinary runs never warn; a warned
run would be better served by more steps or by Euler / DPM-Solver++(2S), whose steps stay below ``E = 1``.
The solvers warn rather than change their steps: results stay exactly what the method defines.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable

import torch

from ...errors import StabilityWarning

__all__ = ["STABILITY_LIMIT", "Step", "gaussian_step_error", "gaussian_variances", "relative_error", "warn_unstable"]

#: The largest relative error :func:`gaussian_step_error` a step may have before the solver warns.
STABILITY_LIMIT = 30.0

#: ``step(denoiser, x, σ, σ') -> x'``: one step of a method, calling ``denoiser(x, σ_batch)`` as solvers do.
Step = Callable[[Callable[[torch.Tensor, torch.Tensor], torch.Tensor], torch.Tensor, float, float], torch.Tensor]

_SCALES_PER_DECADE = 20
_MARGIN_DECADES = 2


def gaussian_variances(sigma_lo: float, sigma_hi: float) -> torch.Tensor:
    """The data variances ``s²`` of the test problem, a ``(M, 1)`` float64 column: ``s`` log-spaced from two
    decades below ``sigma_lo`` to two above ``sigma_hi``, 20 per decade."""
    lo, hi = math.log10(sigma_lo) - _MARGIN_DECADES, math.log10(sigma_hi) + _MARGIN_DECADES
    scales = torch.logspace(lo, hi, int((hi - lo) * _SCALES_PER_DECADE) + 1, dtype=torch.float64).unsqueeze(1)
    return scales.square()


def relative_error(out: torch.Tensor, variance: torch.Tensor, sigma_next: float) -> float:
    """``max_s |x' − sqrt(s² + σ'²)| / sqrt(s² + σ'²)``: the step's result ``out`` against the exact state."""
    target = (variance + sigma_next**2).sqrt()
    return float(((out - target).abs() / target).max())


def gaussian_step_error(step: Step, sigma: float, sigma_next: float) -> float:
    """``E(σ, σ')`` of the module docstring: the worst relative error of ``step`` on Gaussian data ``N(0, s²)``.

    All data scales are one float64 batch (row ``j`` has its own ``s_j``); the caller's denoiser is never called.
    """
    variance = gaussian_variances(sigma_next, sigma)

    def gaussian_denoiser(x: torch.Tensor, sigma_batch: torch.Tensor) -> torch.Tensor:
        return variance / (variance + sigma_batch.reshape(-1, 1).square()) * x

    return relative_error(
        step(gaussian_denoiser, (variance + sigma**2).sqrt(), sigma, sigma_next), variance, sigma_next
    )


def warn_unstable(solver: str, steps: Iterable[tuple[int, float, float, Step]]) -> None:
    """Warn once (:class:`StabilityWarning`) if any ``(i, σ, σ', step)`` has ``E > STABILITY_LIMIT``,
    naming the worst step, its σ, σ' and its ratio σ/σ'. Steps into σ' = 0 (the final denoising) are skipped."""
    worst: tuple[float, int, float, float] | None = None
    for i, sigma, sigma_next, step in steps:
        if sigma_next <= 0:
            continue
        error = gaussian_step_error(step, sigma, sigma_next)
        if error > STABILITY_LIMIT and (worst is None or error > worst[0]):
            worst = (error, i, sigma, sigma_next)
    if worst is not None:
        error, i, sigma, sigma_next = worst
        warnings.warn(
            f"{solver}: step {i} (sigma {sigma:.6g} -> {sigma_next:.6g}, ratio {sigma / sigma_next:.4g}) is outside "
            f"the method's stability region (relative error {error:.3g} on the Gaussian test problem, limit "
            f"{STABILITY_LIMIT:g}); the result may lie far outside the data range: use more steps, or euler or "
            f"dpmpp_2s, whose steps stay stable at any length",
            StabilityWarning,
            stacklevel=3,
        )
