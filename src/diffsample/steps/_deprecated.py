"""The old keyword ``schedule=`` for the noise schedule, accepted with a :class:`DeprecationWarning`.

Inside :mod:`diffsample.steps` the keyword that takes a :class:`~diffsample.schedules.NoiseSchedule`
(α(t), σ(t)) is ``noise_schedule=``; "schedule" alone was ambiguous next to *step* schedules.
The mechanism is :mod:`diffsample._deprecation`'s, shared with the rest of the package.
"""

from __future__ import annotations

from typing import Any

from .._deprecation import pop_renamed_keyword, renamed_keyword
from ..schedules import NoiseSchedule

OLD_KEYWORD, NEW_KEYWORD = "schedule", "noise_schedule"


def resolve_noise_schedule(
    noise_schedule: NoiseSchedule | None, options: dict[str, Any], where: str
) -> NoiseSchedule | None:
    """The noise schedule given as ``noise_schedule=``, or else as the deprecated ``options["schedule"]``
    (removed from ``options``, with a :class:`DeprecationWarning`). Giving both is a :class:`TypeError`."""
    return pop_renamed_keyword(options, OLD_KEYWORD, NEW_KEYWORD, noise_schedule, where, stacklevel=4)


accepts_old_schedule_keyword = renamed_keyword(OLD_KEYWORD, NEW_KEYWORD)
"""Let ``fn(…, noise_schedule=…)`` also be called as ``fn(…, schedule=…)`` (deprecated)."""
