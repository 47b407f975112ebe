"""Which kind of model a denoiser is: its noise-schedule family and prediction type, as ``generate`` needs it.

A σ-space denoiser hides how its network was trained, but a :class:`~diffsample.parameterization.ModelDenoiser`
(and so every model the diffusers loader or the digits loaders build) knows its noise schedule and its
prediction type. The family decides the span and which step grids suit it:

========================= ============================================================================
family                    models
========================= ============================================================================
``vp_eps``/``vp_x0``/     variance-preserving schedules (DDPM tables ``discrete_vp``, continuous
``vp_v``                  ``vp_linear``/``vp_cosine``) with ε, x0 or v prediction (score counts as ε)
``edm``                   EDM and VE schedules, EDM-preconditioned networks, and any σ-space denoiser
                          without a noise schedule (exact test beds, k-diffusion-style wrappers)
``flow``                  rectified flow / flow matching (``rectified_flow``, shift 1)
``flow_shift``            rectified flow with SD3's resolution shift ≠ 1 (Esser et al. 2024)
========================= ============================================================================
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .schedules import NoiseSchedule

__all__ = ["FAMILIES", "model_family", "noise_schedule_of"]

FAMILIES: tuple[str, ...] = ("vp_eps", "vp_x0", "vp_v", "edm", "flow", "flow_shift")
"""The model families :func:`model_family` tells apart (module docstring)."""

_VP = ("discrete_vp", "vp_linear", "vp_cosine")


def noise_schedule_of(denoiser: object) -> NoiseSchedule | None:
    """The denoiser's noise schedule (through counting wrappers and transforms), or ``None``."""
    seen = 0
    den: Any = denoiser
    while den is not None and seen < 16:
        schedule = getattr(den, "noise_schedule", None)
        if schedule is not None:
            return schedule
        den = getattr(den, "inner", None) or getattr(den, "denoiser", None)
        seen += 1
    return None


def _prediction_of(denoiser: object) -> str | None:
    den: Any = denoiser
    for _ in range(16):
        if den is None:
            return None
        pred = getattr(den, "prediction", None)
        if isinstance(pred, str):
            return pred
        den = getattr(den, "inner", None) or getattr(den, "denoiser", None)
    return None


def model_family(denoiser: object) -> str:
    """The family of :data:`FAMILIES` a denoiser belongs to (``"edm"`` when it has no noise schedule)."""
    schedule = noise_schedule_of(denoiser)
    if schedule is None:
        return "edm"
    name = getattr(schedule, "name", "")
    prediction = _prediction_of(denoiser)
    if name == "rectified_flow":
        return "flow" if float(getattr(schedule, "shift", 1.0)) == 1.0 else "flow_shift"
    if name in _VP:
        if prediction == "edm":
            return "edm"
        return {"x0": "vp_x0", "v": "vp_v"}.get(prediction or "eps", "vp_eps")
    return "edm"
