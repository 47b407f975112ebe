"""Bridges to the diffusion ecosystem: diffusers models and pipelines, and k-diffusion's sampler API.

* :func:`load_diffusers_denoiser`: a diffusers model (local directory, pipeline or model object) as a
  σ-space denoiser, with its scheduler config's schedule and parameterisation.
* :class:`DiffsampleScheduler`: a diffusers scheduler running any non-adaptive diffsample solver inside
  unmodified diffusers pipelines (imported on first access; it needs diffusers).
* :func:`pag` / :func:`sag`: perturbed-attention and self-attention guidance of a diffusers denoiser, as
  transforms (:mod:`.attention_guidance`; attention processors swapped per call, :mod:`.attention_layers`).
* :mod:`~diffsample.integrations.kdiffusion_api`: ``sample_<solver>(model, x, sigmas, extra_args=None,
  callback=None, disable=None, **options)`` for every registered solver, and ``KSAMPLER_NAMES``.

diffusers stays optional: nothing here imports it until a diffusers model is loaded or
``DiffsampleScheduler`` is accessed.
"""

from __future__ import annotations

from typing import Any

from .attention_guidance import PerturbedAttentionGuidance, SelfAttentionGuidance, pag, sag
from .attention_layers import self_attention_layers
from .diffusers_model import DiffusersNetwork, load_diffusers_denoiser, parameterization_from_config
from .kdiffusion_api import KSAMPLER_NAMES, ksampler

__all__ = [
    "KSAMPLER_NAMES",
    "DiffsampleScheduler",
    "DiffusersNetwork",
    "PerturbedAttentionGuidance",
    "SelfAttentionGuidance",
    "ksampler",
    "load_diffusers_denoiser",
    "pag",
    "parameterization_from_config",
    "sag",
    "self_attention_layers",
]


def __getattr__(name: str) -> Any:  # noqa: ANN401 -- a module's lazy attributes are of many types
    """``DiffsampleScheduler`` (and ``GeneratorNoise``) import diffusers, so they load on first access."""
    if name in ("DiffsampleScheduler", "GeneratorNoise"):
        from . import diffusers_scheduler

        return getattr(diffusers_scheduler, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
