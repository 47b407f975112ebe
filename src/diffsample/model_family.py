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

Within the VP families the span matters too: Stable Diffusion's scaled-linear table ends at σ_max ≈ 14.6, DDPM's
linear table at ≈ 157 and cosine or continuous tables higher still, and the best walk over ``[0.03, 14.6]`` is not
the best over ``[0.01, 157]`` (issue #13, session 8: no one configuration was within the best peer on networks of
both tables). :func:`short_span` tells the short spans apart (σ_max ≤ :data:`SHORT_VP_SIGMA_MAX`); ``generate`` and
automatic mode keep a table of their own for them (``"<family>+short"``). So does a σ-space denoiser without a noise
schedule (``edm``) walked from σ_max ≤ 40: that is how a k-diffusion ``CompVisDenoiser`` or ComfyUI presents a Stable
Diffusion model, and the short-span rows were chosen on that span with σ-space test beds (no family at all) and
networks, where the EDM rows, chosen on ``[0.002, 80]``, were up to 2.4× worse (issue #13, session 12).

:func:`model_span` reads the span a model declares: its noise schedule's, or, for a σ-space wrapper without one, its
``sigma_min``/``sigma_max`` attributes (k-diffusion's discrete wrappers, ``DiscreteSchedule``, carry them: Stable
Diffusion's ``[0.0292, 14.61]``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .schedules import NoiseSchedule

__all__ = [
    "FAMILIES",
    "SHORT_SPAN_FAMILIES",
    "SHORT_SPAN_SUFFIX",
    "SHORT_VP_SIGMA_MAX",
    "VP_FAMILIES",
    "model_family",
    "model_span",
    "noise_schedule_of",
    "short_span",
]

FAMILIES: tuple[str, ...] = ("vp_eps", "vp_x0", "vp_v", "edm", "flow", "flow_shift")
"""The model families :func:`model_family` tells apart (module docstring)."""

_VP = ("discrete_vp", "vp_linear", "vp_cosine")

VP_FAMILIES: tuple[str, ...] = ("vp_eps", "vp_x0", "vp_v")
"""The variance-preserving families of :data:`FAMILIES`."""

SHORT_VP_SIGMA_MAX = 40.0
"""A VP model whose span ends at most here has a short span (:func:`short_span`): Stable Diffusion's scaled-linear
table (β 0.00085 → 0.012, σ_max 14.6; SD 1.x, 2.x and SDXL share it) does, DDPM's linear table (β 1e-4 → 0.02,
σ_max 157), cosine tables and continuous VP (β_max 20: σ_max ≈ 152) do not. The bound sits between the two tables
measured (geometric middle ≈ 48, rounded down)."""

SHORT_SPAN_SUFFIX = "+short"
"""Key suffix of a VP family's short-span table and candidate set (``"vp_eps+short"``)."""


SHORT_SPAN_FAMILIES: tuple[str, ...] = (*VP_FAMILIES, "edm")
"""The families with short-span defaults (:func:`short_span`): the VP ones, and ``edm``, which holds every σ-space
denoiser without a noise schedule (module docstring)."""


def short_span(family: str | None, sigma_max: float | None) -> bool:
    """Whether a model of ``family`` walked from ``sigma_max`` takes the short-span defaults: a family of
    :data:`SHORT_SPAN_FAMILIES` and ``sigma_max`` ≤ :data:`SHORT_VP_SIGMA_MAX` (``False`` when either is unknown)."""
    return family in SHORT_SPAN_FAMILIES and sigma_max is not None and float(sigma_max) <= SHORT_VP_SIGMA_MAX


_WRAPPED_ATTRIBUTES = ("inner", "denoiser", "inner_model", "fn")
"""Where a wrapper keeps the model it wraps: this library's transforms and counters (``inner``, ``denoiser``), a
counting wrapper around a plain callable (``fn``), k-diffusion's wrappers (``inner_model``)."""


def _chain(denoiser: object) -> Iterator[Any]:
    """The denoiser, then each model it wraps in turn (at most 16 deep)."""
    den: Any = denoiser
    for _ in range(16):
        if den is None:
            return
        yield den
        den = next((w for w in (getattr(den, a, None) for a in _WRAPPED_ATTRIBUTES) if w is not None), None)


def noise_schedule_of(denoiser: object) -> NoiseSchedule | None:
    """The denoiser's noise schedule (through counting wrappers and transforms), or ``None``."""
    return next((s for s in (getattr(d, "noise_schedule", None) for d in _chain(denoiser)) if s is not None), None)


def _declared_level(denoiser: object, name: str) -> float | None:
    """A positive finite ``sigma_min``/``sigma_max`` attribute (float or one-element tensor) on the denoiser or a
    model it wraps, or ``None``."""
    for den in _chain(denoiser):
        value = getattr(den, name, None)
        if value is None or callable(value):
            continue
        try:
            level = float(value)
        except (TypeError, ValueError, RuntimeError):
            continue
        if math.isfinite(level) and level > 0:
            return level
    return None


def model_span(
    denoiser: object, sigma_min: float | None = None, sigma_max: float | None = None
) -> tuple[float | None, float | None]:
    """``(sigma_min, sigma_max)``, those not given taken from what the model declares: its noise schedule's span
    (also through wrappers: a guided model's is its network's), else, for a σ-space wrapper without a schedule, its
    ``sigma_min``/``sigma_max`` attributes (k-diffusion's ``CompVisDenoiser`` and other ``DiscreteSchedule``
    wrappers); ``None`` where neither says."""
    schedule = noise_schedule_of(denoiser)
    if schedule is not None:
        lo, hi = float(schedule.sigma_min), float(schedule.sigma_max)
    else:
        lo, hi = _declared_level(denoiser, "sigma_min"), _declared_level(denoiser, "sigma_max")
    return (lo if sigma_min is None else sigma_min), (hi if sigma_max is None else sigma_max)


def _prediction_of(denoiser: object) -> str | None:
    return next((p for p in (getattr(d, "prediction", None) for d in _chain(denoiser)) if isinstance(p, str)), None)


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
