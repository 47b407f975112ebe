"""The old keyword ``schedule=`` for the noise schedule, accepted with a :class:`DeprecationWarning`.

Inside :mod:`diffsample.steps` the keyword that takes a :class:`~diffsample.schedules.NoiseSchedule`
(α(t), σ(t)) is ``noise_schedule=``; "schedule" alone was ambiguous next to *step* schedules.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from ..schedules import NoiseSchedule

OLD_KEYWORD, NEW_KEYWORD = "schedule", "noise_schedule"

P = ParamSpec("P")
R = TypeVar("R")


def resolve_noise_schedule(
    noise_schedule: NoiseSchedule | None, options: dict[str, Any], where: str
) -> NoiseSchedule | None:
    """The noise schedule given as ``noise_schedule=``, or else as the deprecated ``options["schedule"]``
    (removed from ``options``, with a :class:`DeprecationWarning`). Giving both is a :class:`TypeError`."""
    if OLD_KEYWORD not in options:
        return noise_schedule
    old = options.pop(OLD_KEYWORD)
    if noise_schedule is not None:
        raise TypeError(f"{where}() got both {NEW_KEYWORD}= and its deprecated spelling {OLD_KEYWORD}=")
    warnings.warn(
        f"{where}(): the keyword {OLD_KEYWORD}= is deprecated; use {NEW_KEYWORD}= (a NoiseSchedule)",
        DeprecationWarning,
        stacklevel=3,  # the caller of the function that accepts the old keyword
    )
    return old


def accepts_old_schedule_keyword(fn: Callable[P, R]) -> Callable[P, R]:
    """Let ``fn(…, noise_schedule=…)`` also be called as ``fn(…, schedule=…)`` (deprecated)."""

    @functools.wraps(fn)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        if OLD_KEYWORD in kwargs:
            kwargs[NEW_KEYWORD] = resolve_noise_schedule(kwargs.pop(NEW_KEYWORD, None), kwargs, fn.__name__)
        return fn(*args, **kwargs)

    return call
