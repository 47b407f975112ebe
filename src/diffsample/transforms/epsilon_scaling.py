"""Epsilon Scaling (Ning et al. 2024, "Elucidating the Exposure Bias in Diffusion Models", ICLR, §5).

During sampling, the noise predicted by a trained network has a larger norm than during training
(``‖ε_θ(x̂_t, t)‖ > ‖ε_θ(x_t, t)‖``); Epsilon Scaling divides the prediction by a factor
``λ_t = k·t + b`` (``λ_t ≥ 1``, linear in the model's time ``t``; the paper often uses the uniform
schedule ``k = 0``). In σ-space, with ``ε̂ = (x − D)/σ``, the corrected denoiser is

    D'(x, σ) = x − σ ε̂ / λ(t(σ)) = x − (x − D(x, σ)) / λ(t(σ)),

where σ cancels, so the rule is defined at σ = 0 too (where it returns ``D``: ``x − D = 0`` there for
an exact denoiser; for any other it keeps the same affine form). One model call per call: NFE unchanged.

The time ``t`` of λ: with ``noise_schedule=None``, ``t = σ`` (the VE/EDM convention where the model's time
is its noise level); with a :class:`~diffsample.schedules.NoiseSchedule`, ``t = noise_schedule.t_of_sigma_space(σ)``,
the network's native time (e.g. 0…999 for a :class:`~diffsample.schedules.DiscreteVP` table, as in the
paper's ADM/DDPM models, or ``[0, 1]`` for a continuous VP schedule).

Fitting λ (:func:`fit_epsilon_scaling`): the paper reads λ_t off the gap between the norm of the
predicted noise and the norm it should have. Here that is measured on calibration data: at each
calibration level σ_i, draws ``x = x0 + σ_i ε`` with known noise ε give

* ``method="projection"`` (default): ``λ_i = Σ‖ε̂‖² / Σ⟨ε̂, ε⟩``, the factor for which ``ε̂/λ_i`` is the
  least-squares predictor of ε along ε̂. For an inflated exact predictor ``ε̂ = (1 + γ) E[ε | x]`` this
  is exactly ``1 + γ`` in expectation, because ``E⟨E[ε|x], ε⟩ = E‖E[ε|x]‖²``;
* ``method="norm"``: ``λ_i = (Σ‖ε̂‖² / Σ‖ε‖²)^{1/2}``, the plain ratio of predicted to true noise norm. It
  is biased low where ε is not predictable from x (small σ against the data's own spread, where even
  the exact ``E[ε|x]`` is short of ‖ε‖), so it under-corrects there;

then ``(k, b)`` is the least-squares line through ``(t_i, λ_i)``. The per-level ratios are kept on the
fit (:class:`EpsilonScalingFit`) so the linear model can be judged against them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .. import contracts
from .._deprecation import RenamedAttribute, renamed_keyword
from ..denoisers import append_dims, as_denoiser
from ..errors import DiffsampleError, ShapeError
from ..schedules import NoiseSchedule
from .base import Transform, to_work

__all__ = ["EpsilonScaling", "EpsilonScalingFit", "epsilon_scaling", "fit_epsilon_scaling"]

_F64 = torch.float64


def _model_time(noise_schedule: NoiseSchedule | None, sigma: torch.Tensor) -> torch.Tensor:
    """``t(σ)`` in float64: σ itself without a noise schedule, else its native time."""
    s = sigma.detach().to("cpu", _F64)
    return s if noise_schedule is None else noise_schedule.t_of_sigma_space(s)


class EpsilonScaling(Transform):
    """``D' = x − (x − D)/λ(t(σ))`` with ``λ(t) = k·t + b`` (module docstring); built by :func:`epsilon_scaling`."""

    schedule = RenamedAttribute("noise_schedule")
    """Deprecated spelling of ``noise_schedule``."""

    @renamed_keyword("schedule", "noise_schedule")
    def __init__(
        self, denoiser: contracts.Denoiser, k: float = 0.0, b: float = 1.0, noise_schedule: NoiseSchedule | None = None
    ) -> None:
        super().__init__(denoiser)
        self.k, self.b = float(k), float(b)
        if not (math.isfinite(self.k) and math.isfinite(self.b)):
            raise DiffsampleError(f"epsilon scaling needs finite k and b, got k={k}, b={b}")
        if noise_schedule is not None and not isinstance(noise_schedule, NoiseSchedule):
            raise DiffsampleError(
                f"noise_schedule must be a diffsample NoiseSchedule, got {type(noise_schedule).__name__}"
            )
        if self.k == 0 and not self.b > 0:
            raise DiffsampleError(f"epsilon scaling factor lambda = b must be > 0, got b={b}")
        self.noise_schedule = noise_schedule

    @property
    def neutral(self) -> bool:
        """True for ``k = 0, b = 1``: the transform returns the model's output unchanged."""
        return self.k == 0 and self.b == 1

    def lam(self, sigma: torch.Tensor | float) -> torch.Tensor:
        """``λ(t(σ)) = k·t(σ) + b`` in float64 (raises where it is not > 0)."""
        lam = self.k * _model_time(self.noise_schedule, torch.as_tensor(sigma, dtype=_F64)) + self.b
        if bool((lam <= 0).any()) or not bool(torch.isfinite(lam).all()):
            raise DiffsampleError(
                f"epsilon scaling factor lambda = k*t + b must be finite and > 0; got "
                f"{float(lam.min()):.6g} (k={self.k}, b={self.b})"
            )
        return lam

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        d = self.inner(x, sigma, **kwargs)
        if self.neutral:
            return d
        d = to_work(d)
        xw = x.to(d.dtype)
        inv = append_dims((1.0 / self.lam(sigma)).to(d.device, d.dtype), x.dim())
        return xw - (xw - d) * inv

    def __repr__(self) -> str:
        return f"EpsilonScaling(k={self.k:g}, b={self.b:g}, noise_schedule={self.noise_schedule!r})"


@renamed_keyword("schedule", "noise_schedule")
def epsilon_scaling(
    denoiser: contracts.Denoiser, k: float = 0.0, b: float = 1.0, *, noise_schedule: NoiseSchedule | None = None
) -> EpsilonScaling:
    """Epsilon Scaling of ``denoiser`` with ``λ(t) = k·t + b`` (``t = σ``, or ``noise_schedule``'s time), as a new
    denoiser.

    ``k = 0, b = 1`` returns the model's output unchanged; the paper's uniform schedule is ``k = 0``,
    ``b`` slightly above 1 (e.g. 1.017 for ADM on CIFAR-10 at 100 steps).
    """
    return EpsilonScaling(denoiser, k, b, noise_schedule)


@dataclass(frozen=True)
class EpsilonScalingFit:
    """A fitted ``λ(t) = k·t + b`` with the per-level measurements ``(sigmas, times, ratios)`` behind it."""

    k: float
    b: float
    sigmas: tuple[float, ...]
    times: tuple[float, ...]
    ratios: tuple[float, ...]
    method: str
    noise_schedule: NoiseSchedule | None = None

    schedule = RenamedAttribute("noise_schedule")
    """Deprecated spelling of ``noise_schedule``."""

    def lam(self, sigma: torch.Tensor | float) -> torch.Tensor:
        """The fitted line at ``t(σ)``."""
        return self.k * _model_time(self.noise_schedule, torch.as_tensor(sigma, dtype=_F64)) + self.b

    def apply(self, denoiser: contracts.Denoiser) -> EpsilonScaling:
        """:func:`epsilon_scaling` of ``denoiser`` with this fit's ``k``, ``b`` and noise schedule."""
        return EpsilonScaling(denoiser, self.k, self.b, self.noise_schedule)


@renamed_keyword("schedule", "noise_schedule")
def fit_epsilon_scaling(
    denoiser: contracts.Denoiser,
    data: torch.Tensor,
    sigmas: Sequence[float] | torch.Tensor,
    *,
    noise_schedule: NoiseSchedule | None = None,
    method: str = "projection",
    repeats: int = 1,
    generator: torch.Generator | None = None,
) -> EpsilonScalingFit:
    """Fit ``λ(t) = k·t + b`` from calibration samples ``data`` (N, …) at the levels ``sigmas`` (module docstring).

    Each level costs ``2·repeats`` model calls on a batch of N (so ``2·len(sigmas)·repeats`` NFE, counted by
    the model): every noise draw ε is used with its antithetic copy −ε. At σ small against the data's
    spread, ``⟨ε̂, ε⟩`` is dominated by a term odd in ε (``∝ σ⟨x0 − μ, ε⟩``) whose mean is zero but whose
    spread swamps the even signal ``∝ σ²‖ε‖²``; the pair cancels it exactly where the model is locally
    linear in x, which makes the small-σ ratios usable with a few thousand samples.
    Levels equal to 0 are skipped (ε̂ is undefined there). With a single level the fit is the
    constant ``b = λ_1`` (``k = 0``).
    """
    if method not in ("projection", "norm"):
        raise DiffsampleError(f"method must be 'projection' or 'norm', got {method!r}")
    if not isinstance(data, torch.Tensor) or data.dim() < 2 or data.shape[0] < 2:
        raise ShapeError("calibration data must be a tensor (N, …) with N >= 2 samples")
    if int(repeats) < 1:
        raise DiffsampleError(f"repeats must be >= 1, got {repeats}")
    levels = torch.as_tensor(sigmas, dtype=_F64).detach().cpu().flatten()
    if levels.numel() == 0 or not bool(torch.isfinite(levels).all()) or bool((levels < 0).any()):
        raise DiffsampleError("calibration sigmas must be finite and >= 0")
    levels = levels[levels > 0]
    if levels.numel() == 0:
        raise DiffsampleError("calibration sigmas need at least one level > 0")
    model = as_denoiser(denoiser)
    x0 = data.detach().to(_F64)
    ratios = []
    for s in levels.tolist():
        num = den = 0.0
        for _ in range(int(repeats)):
            draw = torch.randn(x0.shape, generator=generator, dtype=_F64).to(x0.device)
            for eps in (draw, -draw):  # antithetic pair (see the docstring)
                x = x0 + s * eps
                e_hat = (x - model(x, s).to(_F64)) / s
                num += float(e_hat.square().sum())
                den += float((e_hat * eps).sum()) if method == "projection" else float(eps.square().sum())
        if not den > 0:
            raise DiffsampleError(
                f"the model's noise prediction at sigma={s:g} is uncorrelated with the noise "
                "(or zero); cannot fit epsilon scaling there"
            )
        ratios.append(num / den if method == "projection" else math.sqrt(num / den))
    times = _model_time(noise_schedule, levels)
    lam = torch.tensor(ratios, dtype=_F64)
    if levels.numel() == 1 or float(times.max() - times.min()) == 0:
        k, b = 0.0, float(lam.mean())
    else:
        design = torch.stack([times, torch.ones_like(times)], dim=1)
        sol = torch.linalg.lstsq(design, lam[:, None]).solution[:, 0]
        k, b = float(sol[0]), float(sol[1])
    return EpsilonScalingFit(k, b, tuple(levels.tolist()), tuple(times.tolist()), tuple(ratios), method, noise_schedule)
