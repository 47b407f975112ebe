"""Published step schedules: Align Your Steps (Sabour, Fidler & Kreis 2024) and GITS (Chen et al. 2024),
resampled log-linearly to other step counts and, on request, moved to another ``[σ_min, σ_max]``."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ..errors import UnknownNameError
from ._common import check_n, check_span, pin_ends, ramp
from .validation import validate

__all__ = ["AYS_TIMESTEPS", "align_your_steps", "gits"]

# Published tables below keep their rows as published (not one number per line).
# fmt: off
_AYS_PROJECT_PAGE: dict[str, tuple[float, ...]] = {
    "sd15": (14.615, 6.475, 3.861, 2.697, 1.886, 1.396, 0.963, 0.652, 0.399, 0.152, 0.029),
    "sdxl": (14.615, 6.315, 3.771, 2.181, 1.342, 0.862, 0.555, 0.380, 0.234, 0.113, 0.029),
    "svd": (700.00, 54.5, 15.886, 7.977, 4.248, 1.789, 0.981, 0.403, 0.173, 0.034, 0.002),
}
_AYS_HOWTO: dict[str, tuple[float, ...]] = {
    "sd15": (
        14.6146412293, 6.4745760956, 3.8636745985, 2.6946151520, 1.8841921177, 1.3943805092,
        0.9642583904, 0.6523686016, 0.3977456272, 0.1515232662, 0.0291671582,
    ),
    "sdxl": (
        14.6146412293, 6.3184485287, 3.7681790315, 2.1811480769, 1.3405244945, 0.8620721141,
        0.5550693289, 0.3798540708, 0.2332364134, 0.1114188177, 0.0291671582,
    ),
    "svd": _AYS_PROJECT_PAGE["svd"],
}
AYS_TIMESTEPS: dict[str, tuple[int, ...]] = {
    "sd15": (999, 850, 736, 645, 545, 455, 343, 233, 124, 24),
    "sdxl": (999, 845, 730, 587, 443, 310, 193, 116, 53, 13),
}
"""The published 10-step AYS timesteps on SD's 1000-step ``scaled_linear`` table (for diffusers' ``timesteps=``)."""

# GITS (Chen et al. 2024), coefficient 1.20, SD1.5: row k is the (k + 2)-step schedule (k + 3 levels).
_GITS_SD15_120: tuple[tuple[float, ...], ...] = (
    (14.61464119, 0.803307, 0.02916753),
    (14.61464119, 1.56271636, 0.52423614, 0.02916753),
    (14.61464119, 2.36326075, 0.92192322, 0.36617002, 0.02916753),
    (14.61464119, 2.84484982, 1.24153244, 0.59516323, 0.25053367, 0.02916753),
    (14.61464119, 5.85520077, 2.05039096, 0.95350921, 0.45573691, 0.17026083, 0.02916753),
    (14.61464119, 5.85520077, 2.45070267, 1.24153244, 0.64427125, 0.29807833, 0.09824532, 0.02916753),
    (14.61464119, 5.85520077, 2.45070267, 1.36964464, 0.803307, 0.45573691, 0.25053367, 0.09824532, 0.02916753),
    (
        14.61464119, 5.85520077, 2.84484982, 1.61558151, 0.95350921, 0.59516323, 0.36617002, 0.19894916,
        0.09824532, 0.02916753,
    ),
    (
        14.61464119, 5.85520077, 2.84484982, 1.67050016, 1.08895338, 0.74807048, 0.50118381, 0.32104823,
        0.19894916, 0.09824532, 0.02916753,
    ),
    (
        14.61464119, 5.85520077, 2.95596409, 1.84880662, 1.24153244, 0.83188516, 0.59516323, 0.41087446,
        0.27464288, 0.17026083, 0.09824532, 0.02916753,
    ),
    (
        14.61464119, 5.85520077, 3.07277966, 1.98035145, 1.36964464, 0.95350921, 0.69515091, 0.50118381,
        0.36617002, 0.25053367, 0.17026083, 0.09824532, 0.02916753,
    ),
    (
        14.61464119, 6.77309084, 3.46139455, 2.36326075, 1.56271636, 1.08895338, 0.803307, 0.59516323,
        0.45573691, 0.34370604, 0.25053367, 0.17026083, 0.09824532, 0.02916753,
    ),
    (
        14.61464119, 6.77309084, 3.46139455, 2.45070267, 1.61558151, 1.162866, 0.86115354, 0.64427125,
        0.50118381, 0.38853383, 0.29807833, 0.22545385, 0.17026083, 0.09824532, 0.02916753,
    ),
    (
        14.61464119, 7.49001646, 4.65472794, 3.07277966, 2.12350607, 1.51179266, 1.08895338, 0.83188516,
        0.64427125, 0.50118381, 0.38853383, 0.29807833, 0.22545385, 0.17026083, 0.09824532, 0.02916753,
    ),
    (
        14.61464119, 7.49001646, 4.65472794, 3.07277966, 2.12350607, 1.51179266, 1.08895338, 0.83188516,
        0.64427125, 0.50118381, 0.41087446, 0.32104823, 0.25053367, 0.19894916, 0.13792117, 0.09824532,
        0.02916753,
    ),
    (
        14.61464119, 7.49001646, 4.65472794, 3.07277966, 2.12350607, 1.51179266, 1.08895338, 0.83188516,
        0.64427125, 0.50118381, 0.41087446, 0.34370604, 0.27464288, 0.22545385, 0.17026083, 0.13792117,
        0.09824532, 0.02916753,
    ),
    (
        14.61464119, 7.49001646, 4.65472794, 3.07277966, 2.19988537, 1.61558151, 1.20157266, 0.92192322,
        0.72133851, 0.57119018, 0.45573691, 0.36617002, 0.29807833, 0.25053367, 0.19894916, 0.17026083,
        0.13792117, 0.09824532, 0.02916753,
    ),
    (
        14.61464119, 7.49001646, 4.65472794, 3.07277966, 2.19988537, 1.61558151, 1.24153244, 0.95350921,
        0.74807048, 0.59516323, 0.4783645, 0.38853383, 0.32104823, 0.27464288, 0.22545385, 0.19894916,
        0.17026083, 0.13792117, 0.09824532, 0.02916753,
    ),
    (
        14.61464119, 7.49001646, 4.65472794, 3.07277966, 2.19988537, 1.61558151, 1.24153244, 0.95350921,
        0.74807048, 0.59516323, 0.50118381, 0.41087446, 0.34370604, 0.29807833, 0.25053367, 0.22545385,
        0.19894916, 0.17026083, 0.13792117, 0.09824532, 0.02916753,
    ),
)
# fmt: on
_GITS: dict[tuple[str, float], tuple[tuple[float, ...], ...]] = {("sd15", 1.20): _GITS_SD15_120}


def _loglinear_resample(levels: torch.Tensor, m: int) -> torch.Tensor:
    """AYS's recipe for other step counts: interpolate ``log σ`` linearly over the normalised index
    (``np.interp(linspace(0, 1, m), linspace(0, 1, L), log σ)``), keeping both end points."""
    count = levels.numel()
    if m == count:
        return levels.clone()
    logs = levels.log()
    pos = ramp(m) * (count - 1)
    lo = pos.floor().long().clamp(max=count - 2)
    out = torch.lerp(logs[lo], logs[lo + 1], pos - lo.to(torch.float64)).exp()
    return pin_ends(out, float(levels[0]), float(levels[-1]))


def _table_schedule(
    table: Sequence[float], m: int, sigma_min: float | None, sigma_max: float | None, append_zero: bool
) -> torch.Tensor:
    """``m`` levels resampled from a published table, optionally moved to another span, then finished."""
    levels = _loglinear_resample(torch.tensor(table, dtype=torch.float64), m)
    if sigma_min is not None or sigma_max is not None:
        top, bottom = float(table[0]), float(table[-1])
        new_top = top if sigma_max is None else float(sigma_max)
        new_bottom = bottom if sigma_min is None else float(sigma_min)
        check_span(m, new_bottom, new_top)
        scale = math.log(new_top / new_bottom) / math.log(top / bottom)
        levels = pin_ends(torch.exp(math.log(new_top) + (levels.log() - math.log(top)) * scale), new_top, new_bottom)
    if append_zero:
        levels[-1] = 0.0  # the published lists end at σ_min; the last step goes to 0 instead
    return validate(levels)


def align_your_steps(
    n: int,
    model: str = "sd15",
    *,
    source: str = "project_page",
    sigma_min: float | None = None,
    sigma_max: float | None = None,
    append_zero: bool = True,
) -> torch.Tensor:
    """The published Align-Your-Steps schedules (Sabour, Fidler & Kreis 2024, "Align Your Steps:
    Optimizing Sampling Schedules in Diffusion Models"): 10-step lists of 11 levels ``σ_max … σ_min``
    for ``model`` in ``"sd15"``, ``"sdxl"``, ``"svd"``.

    ``source="project_page"`` gives the 3-decimal lists of the AYS project page (also diffusers'
    ``AysSchedules``); ``source="howto"`` the 10-digit lists of the AYS "how to" page (used by ComfyUI),
    which are exactly SD's ``scaled_linear`` table at the published timesteps :data:`AYS_TIMESTEPS`
    and timestep 0. The two differ by up to 1.5% (SDXL's 0.113 vs 0.1114); SVD has one list.

    ``n`` follows this module's convention: with ``append_zero=True`` the list is resampled to
    ``n + 1`` levels and the last (σ_min) becomes 0, as diffusers and ComfyUI do, so ``n = 10`` gives
    the first 10 published values then 0; with ``append_zero=False`` it is resampled to ``n`` levels
    ending at σ_min, so ``n = 11`` is the published list. Other lengths use AYS's log-linear
    interpolation (:func:`_loglinear_resample`). ``sigma_min``/``sigma_max`` move the published shape
    to another span by the affine map of ``log σ`` that takes the list's ends there.
    """
    n = check_n(n)
    tables = {"project_page": _AYS_PROJECT_PAGE, "howto": _AYS_HOWTO}
    if source not in tables:
        raise UnknownNameError("AYS source", source, list(tables))
    if model not in tables[source]:
        raise UnknownNameError("AYS model", model, list(tables[source]))
    return _table_schedule(tables[source][model], n + 1 if append_zero else n, sigma_min, sigma_max, append_zero)


def gits(
    n: int,
    model: str = "sd15",
    *,
    coeff: float = 1.20,
    sigma_min: float | None = None,
    sigma_max: float | None = None,
    append_zero: bool = True,
) -> torch.Tensor:
    """The published GITS schedules (Chen et al. 2024, "On the Trajectory Regularity of ODE-based Diffusion
    Sampling"): for Stable Diffusion 1.5 and coefficient 1.20 (the authors' setting for SD), one list per
    step count 2–20, each a subset of a 301-point time-uniform grid on SD's table found by their
    dynamic programme (tables as distributed with ComfyUI's ``GITSScheduler``).

    Step counts as in :func:`align_your_steps`: ``m = n + 1`` levels with ``append_zero`` (last
    replaced by 0), else ``m = n``; ``m − 1`` steps between 2 and 20 use that list, more steps resample
    the 20-step list log-linearly (ComfyUI's rule), and 1 step resamples the 2-step list.
    """
    n = check_n(n)
    key = (model, round(float(coeff), 2))
    if key not in _GITS:
        valid = [f"{m} coeff={c:.2f}" for m, c in _GITS]
        raise UnknownNameError("GITS table", f"{model} coeff={coeff}", valid)
    rows = _GITS[key]
    m = n + 1 if append_zero else n
    row = rows[min(max(m - 1, 2), 20) - 2]
    return _table_schedule(row, m, sigma_min, sigma_max, append_zero)
