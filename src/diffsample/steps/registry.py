"""The step-schedule registry: names mapped to :class:`StepScheduleSpec` entries with one calling convention.

Every entry is called as ``entry(n, sigma_min=None, sigma_max=None, *, noise_schedule=None, append_zero=True,
**options)`` and returns ``n`` levels from ``sigma_max`` down to ``sigma_min``, then 0 (``options`` go to the
constructor). The spec's ``span`` says how that request reaches the constructor, so adding a step schedule
is its function in one module plus one line in :data:`SCHEDULES`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, get_args

import torch

from ..errors import SigmaError, UnknownNameError
from ..schedules import NoiseSchedule
from ._deprecated import resolve_noise_schedule
from ._noise_time import sampling_time_of_sigma
from .published import align_your_steps, gits
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
from .time_space import time_quadratic, time_uniform, vp_continuous_between

__all__ = ["SCHEDULES", "TRAILING", "Span", "StepSchedule", "StepScheduleSpec", "get"]

StepSchedule = Callable[..., torch.Tensor]
"""A step-schedule constructor (or a registry entry): returns a 1-D float64 tensor of decreasing levels."""

Span = Literal["sigma", "sigma_max", "time", "published"]
"""How a registry call's ``[sigma_min, sigma_max]`` reaches the constructor (:class:`StepScheduleSpec`)."""


@dataclass(frozen=True)
class StepScheduleSpec:
    """One registered step schedule: its name, its constructor ``build`` and how the common call reaches it.

    ``span`` (``n`` and ``options`` are always passed on; ``append_zero=`` too):

    * ``"sigma"``: ``build(n, sigma_min, sigma_max, …)``; a missing bound is the noise schedule's;
    * ``"sigma_max"``: ``build(n, sigma_max, …)``; ``sigma_min`` is not used (the shape sets the last level);
    * ``"time"``: ``build(n, noise_schedule, t_min=…, t_max=…, …)`` with the bounds as the noise schedule's
      sampling times (``None``: its own span); a noise schedule is required;
    * ``"published"``: ``build(n, sigma_min=…, sigma_max=…, …)`` with the bounds as given (``None``: the
      published levels); the noise schedule is not used.

    ``passes_noise_schedule``: ``build`` also gets ``noise_schedule=`` (``None`` when not given).

    ``trailing``: every call ends its walk the trailing way (``trailing=True`` of :meth:`__call__`); the entry
    ``get("<name>+trailing")`` returns.
    """

    name: str
    build: StepSchedule
    span: Span = "sigma"
    passes_noise_schedule: bool = False
    trailing: bool = False

    def __post_init__(self) -> None:
        if self.span not in get_args(Span):
            raise ValueError(f"step schedule {self.name!r}: span must be one of {get_args(Span)}, got {self.span!r}")
        if self.passes_noise_schedule and self.span in ("time", "published"):
            raise ValueError(f"step schedule {self.name!r}: span={self.span!r} decides the noise schedule's use")

    @property
    def needs_noise_schedule(self) -> bool:
        """Whether a call must give ``noise_schedule=``."""
        return self.span == "time"

    @property
    def summary(self) -> str:
        """The first line of the constructor's docstring."""
        doc = (self.build.__doc__ or "").strip().splitlines()
        return doc[0] if doc else ""

    def __call__(
        self,
        n: int,
        sigma_min: float | None = None,
        sigma_max: float | None = None,
        *,
        noise_schedule: NoiseSchedule | None = None,
        append_zero: bool = True,
        trailing: bool = False,
        **options: Any,
    ) -> torch.Tensor:
        """``n`` levels from ``sigma_max`` to ``sigma_min`` (then 0 with ``append_zero``) by ``build``, the
        request passed on as ``span`` says (class docstring). ``schedule=`` is a deprecated ``noise_schedule=``.

        ``trailing=True``: the first ``n`` of the schedule's ``n + 1`` levels, then 0 — the walk's last step goes
        from the level before ``sigma_min`` straight to 0, so no model call is spent at ``sigma_min``, where the
        denoiser returns almost its input. That is how diffusers' ``"trailing"`` timestep spacing (Lin et al.
        2024, "Common Diffusion Noise Schedules and Sample Steps are Flawed", Table 2) and its flow-matching
        sigmas end; at small budgets it buys one more useful call (measured on the digits networks at 4–6 calls: the
        best trailing walk has 0.51–0.83× the error of the best walk ending at ``sigma_min`` on 7 of 8 networks,
        0.76–1.05× on the eighth), at 15 calls and more the longer last step usually costs accuracy.
        """
        noise_schedule = resolve_noise_schedule(noise_schedule, options, self.name)
        if trailing or self.trailing:
            levels = self._levels(n + 1, sigma_min, sigma_max, noise_schedule, True, options)
            kept = torch.cat([levels[:n], levels.new_zeros(1)])
            return kept if append_zero else kept[:n]
        return self._levels(n, sigma_min, sigma_max, noise_schedule, append_zero, options)

    def _levels(
        self,
        n: int,
        sigma_min: float | None,
        sigma_max: float | None,
        noise_schedule: NoiseSchedule | None,
        append_zero: bool,
        options: dict[str, Any],
    ) -> torch.Tensor:
        if self.passes_noise_schedule:
            options["noise_schedule"] = noise_schedule
        if self.span == "sigma":
            lo, hi = self._sigma_span(sigma_min, sigma_max, noise_schedule)
            return self.build(n, lo, hi, append_zero=append_zero, **options)
        if self.span == "sigma_max":
            if sigma_max is None:
                if noise_schedule is None:
                    raise SigmaError(
                        f"step schedule {self.name!r} needs sigma_max (or noise_schedule= to take it from)"
                    )
                sigma_max = noise_schedule.sigma_max
            return self.build(n, sigma_max, append_zero=append_zero, **options)
        if self.span == "time":
            if noise_schedule is None:
                raise SigmaError(f"step schedule {self.name!r} needs noise_schedule=<a NoiseSchedule>")
            t_min = None if sigma_min is None else sampling_time_of_sigma(noise_schedule, sigma_min)
            t_max = None if sigma_max is None else sampling_time_of_sigma(noise_schedule, sigma_max)
            return self.build(n, noise_schedule, t_min=t_min, t_max=t_max, append_zero=append_zero, **options)
        return self.build(n, sigma_min=sigma_min, sigma_max=sigma_max, append_zero=append_zero, **options)

    def _sigma_span(
        self, sigma_min: float | None, sigma_max: float | None, noise_schedule: NoiseSchedule | None
    ) -> tuple[float, float]:
        if sigma_min is None or sigma_max is None:
            if noise_schedule is None:
                raise SigmaError(
                    f"step schedule {self.name!r} needs sigma_min and sigma_max (or noise_schedule= to take them from)"
                )
            sigma_min = noise_schedule.sigma_min if sigma_min is None else sigma_min
            sigma_max = noise_schedule.sigma_max if sigma_max is None else sigma_max
        return float(sigma_min), float(sigma_max)


SCHEDULES: dict[str, StepScheduleSpec] = {
    spec.name: spec
    for spec in (
        StepScheduleSpec("karras", karras),
        StepScheduleSpec("logsnr", logsnr),
        StepScheduleSpec("exponential", exponential),
        StepScheduleSpec("polyexponential", polyexponential),
        StepScheduleSpec("kl_optimal", kl_optimal),
        StepScheduleSpec("laplace", laplace),
        StepScheduleSpec("beta", beta_schedule, passes_noise_schedule=True),
        StepScheduleSpec("vp_continuous", vp_continuous_between),
        StepScheduleSpec("linear_quadratic", linear_quadratic, span="sigma_max"),
        StepScheduleSpec("time_uniform", time_uniform, span="time"),
        StepScheduleSpec("time_quadratic", time_quadratic, span="time"),
        StepScheduleSpec("align_your_steps", align_your_steps, span="published"),
        StepScheduleSpec("gits", gits, span="published"),
    )
}
"""Step schedules by name (:class:`StepScheduleSpec`). ``time_uniform`` and ``time_quadratic`` need
``noise_schedule=``; ``beta`` uses it when given (steps in its time); ``linear_quadratic`` uses only
``sigma_max``; ``align_your_steps`` and ``gits`` are published tables."""


TRAILING = "+trailing"
"""Suffix of a step-schedule name whose walk ends the trailing way (``StepScheduleSpec.__call__``'s ``trailing``):
``get("logsnr+trailing")``."""


def get(name: str) -> StepScheduleSpec:
    """The registry entry named ``name`` (see :data:`SCHEDULES`), or with the suffix :data:`TRAILING` an entry
    whose walks end the trailing way; the error lists the valid names."""
    base = name[: -len(TRAILING)] if name.endswith(TRAILING) else name
    try:
        spec = SCHEDULES[base]
    except KeyError:
        err = UnknownNameError("step schedule", name, list(SCHEDULES))
        err.args = (f"{err.args[0]} (each also as '<name>{TRAILING}')",)
        raise err from None
    return spec if base == name else dataclasses.replace(spec, name=name, trailing=True)
