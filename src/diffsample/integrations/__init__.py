"""Bridges to the diffusion ecosystem: diffusers models and pipelines, and k-diffusion's sampler API.

* :func:`load_diffusers_denoiser`: a diffusers model (local directory, pipeline or model object) as a
  σ-space denoiser, with its scheduler config's schedule and parameterisation.
* :class:`DiffsampleScheduler`: a diffusers scheduler running any non-adaptive diffsample solver inside
  unmodified diffusers pipelines (imported on first access; it needs diffusers).
* :mod:`~diffsample.integrations.kdiffusion_api`: ``sample_<solver>(model, x, sigmas, extra_args=None,
  callback=None, disable=None, **options)`` for every registered solver, and ``KSAMPLER_NAMES``.

diffusers stays optional: nothing here imports it until a diffusers model is loaded or
``DiffsampleScheduler`` is accessed.
"""

from __future__ import annotations

from typing import Any

from .diffusers_model import DiffusersNetwork, load_diffusers_denoiser, parameterization_from_config
from .kdiffusion_api import KSAMPLER_NAMES, ksampler

__all__ = [
    "KSAMPLER_NAMES",
    "DiffsampleScheduler",
    "DiffusersNetwork",
    "ksampler",
    "load_diffusers_denoiser",
    "parameterization_from_config",
]


def __getattr__(name: str) -> Any:  # noqa: ANN401 -- a module's lazy attributes are of many types
    """``DiffsampleScheduler`` (and ``GeneratorNoise``) import diffusers, so they load on first access."""
    if name in ("DiffsampleScheduler", "GeneratorNoise"):
        from . import diffusers_scheduler

        return getattr(diffusers_scheduler, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
