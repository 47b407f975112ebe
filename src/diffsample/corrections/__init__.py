"""Sampling-time corrections against exposure bias, as denoiser transforms (take a denoiser, return one).

* :func:`epsilon_scaling` / :func:`fit_epsilon_scaling` — Epsilon Scaling (Ning et al. 2024): divide the
  noise prediction by ``λ(t) = k·t + b``, given or fitted from calibration data.
* :func:`time_shift` — time-shift sampling (Li et al. 2024, TS-DDIM): evaluate the network at the level,
  within a window around the nominal one, whose noise variance matches the current sample's.

Both cost exactly the wrapped model's calls (one per call), so they compose with every solver at equal NFE.
They live in :mod:`diffsample.transforms`; this module keeps the names importable here.
"""

from __future__ import annotations

from ..transforms.epsilon_scaling import EpsilonScaling, EpsilonScalingFit, epsilon_scaling, fit_epsilon_scaling
from ..transforms.time_shift import TimeShift, data_stats, time_shift, training_levels

__all__ = [
    "EpsilonScaling",
    "EpsilonScalingFit",
    "TimeShift",
    "data_stats",
    "epsilon_scaling",
    "fit_epsilon_scaling",
    "time_shift",
    "training_levels",
]
