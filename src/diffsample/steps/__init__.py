"""Step schedules: the decreasing arrays of noise levels ``[σ_max, …, σ_min, 0]`` a solver walks.

Schedules are values (1-D float64 tensors), not flags. Every constructor returns ``n`` noise levels
from ``sigma_max`` down to ``sigma_min`` followed by a trailing ``0`` (``append_zero=False`` drops
it and ends at ``sigma_min``), so ``n`` is the number of solver steps; any array a user brings is
accepted after :func:`validate` (:func:`from_array`).

Modules, by kind:

* :mod:`~diffsample.steps.sigma_space`, spans in σ: :func:`karras`, :func:`logsnr` (= :func:`exponential`),
  :func:`polyexponential`, :func:`kl_optimal`, :func:`laplace`, :func:`beta_schedule`, :func:`linear_quadratic`;
* :mod:`~diffsample.steps.time_space`, in a noise schedule's own time: :func:`time_uniform` (with diffusers'
  ``linspace`` / ``leading`` / ``trailing`` timestep spacings on DDPM tables), :func:`time_quadratic`,
  :func:`vp_continuous`;
* :mod:`~diffsample.steps.published`, published tables: :func:`align_your_steps`, :func:`gits`;
* :mod:`~diffsample.steps.composition`: :func:`truncate`, :func:`shift`, :func:`insert_sigma_min`,
  :func:`to_timesteps`;
* :mod:`~diffsample.steps.validation`: :func:`validate`, :func:`from_array`;
* :mod:`~diffsample.steps.registry`: :data:`SCHEDULES` maps names to :class:`StepScheduleSpec` entries
  ``entry(n, sigma_min=None, sigma_max=None, *, noise_schedule=None, append_zero=True, trailing=False,
  **options)``; :func:`get` looks one up (``get("logsnr+trailing")``: walks that skip the call at σ_min,
  :data:`TRAILING`).

The keyword that takes a :class:`~diffsample.schedules.NoiseSchedule` (α(t), σ(t)) is ``noise_schedule=``;
the old spelling ``schedule=`` still works and raises a :class:`DeprecationWarning`.
"""

from __future__ import annotations

from .composition import insert_sigma_min, shift, to_timesteps, truncate
from .published import AYS_TIMESTEPS, align_your_steps, gits
from .registry import SCHEDULES, TRAILING, StepSchedule, StepScheduleSpec, get
from .sigma_space import (
    beta_schedule,
    exponential,
    karras,
    kl_optimal,
    laplace,
    linear_quadratic,
    logsnr,
    polyexponential,
)
from .time_space import SPACINGS, ZERO_SNR_SIGMA, time_quadratic, time_uniform, vp_continuous
from .validation import from_array, validate

__all__ = [
    "AYS_TIMESTEPS",
    "SCHEDULES",
    "SPACINGS",
    "TRAILING",
    "ZERO_SNR_SIGMA",
    "StepSchedule",
    "StepScheduleSpec",
    "align_your_steps",
    "beta_schedule",
    "exponential",
    "from_array",
    "get",
    "gits",
    "insert_sigma_min",
    "karras",
    "kl_optimal",
    "laplace",
    "linear_quadratic",
    "logsnr",
    "polyexponential",
    "shift",
    "time_quadratic",
    "time_uniform",
    "to_timesteps",
    "truncate",
    "validate",
    "vp_continuous",
]
