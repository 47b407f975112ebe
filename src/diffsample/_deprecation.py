"""Renamed keywords and attributes, still accepted under their old names with a :class:`DeprecationWarning`.

"schedule" alone was ambiguous: the keyword for α(t), σ(t) (a :class:`~diffsample.schedules.NoiseSchedule`) is
``noise_schedule``, the one for the σ array a solver walks (or its registered name) ``step_schedule``. Where a
public keyword or attribute changed, the old spelling keeps working through one of these helpers:

* :func:`renamed_keyword` — a decorator: ``fn(…, old=v)`` is called as ``fn(…, new=v)``;
* :func:`pop_renamed_keyword` — the same for a function that gathers its options in ``**options``;
* :class:`RenamedAttribute` — a class attribute: ``obj.old`` reads and writes ``obj.new``.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


def warn_renamed(where: str, old: str, new: str, *, stacklevel: int) -> None:
    """Warn that ``where`` was used with its deprecated name ``old`` (now ``new``)."""
    warnings.warn(f"{where}: {old} is deprecated; use {new}", DeprecationWarning, stacklevel=stacklevel + 1)


def pop_renamed_keyword(options: dict[str, Any], old: str, new: str, value: T, where: str, *, stacklevel: int = 3) -> T:
    """``value`` (given as ``new=``), or else ``options[old]`` (removed from ``options``, with a
    :class:`DeprecationWarning`). Giving both (``new`` not ``None``) is a :class:`TypeError`.

    ``stacklevel`` 3 points the warning at the caller of the function that calls this one."""
    if old not in options:
        return value
    old_value = options.pop(old)
    if value is not None:
        raise TypeError(f"{where}() got both {new}= and its deprecated spelling {old}=")
    warn_renamed(f"{where}()", f"the keyword {old}=", f"{new}=", stacklevel=stacklevel)
    return old_value


def renamed_keyword(old: str, new: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """A decorator letting ``fn(…, new=…)`` also be called as ``fn(…, old=…)`` (deprecated)."""

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        where = fn.__qualname__.removesuffix(".__init__")

        @functools.wraps(fn)
        def call(*args: P.args, **kwargs: P.kwargs) -> R:
            if old in kwargs:
                kwargs[new] = pop_renamed_keyword(kwargs, old, new, kwargs.pop(new, None), where)
            return fn(*args, **kwargs)

        return call

    return decorate


class RenamedAttribute:
    """A class attribute ``old`` that reads and writes the attribute ``new`` (deprecated)."""

    def __init__(self, new: str) -> None:
        self.new = new
        self.old = ""
        self.owner = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.old, self.owner = name, owner.__name__

    def __get__(self, obj: object, objtype: type | None = None) -> Any:  # noqa: ANN401 -- the attribute's value
        if obj is None:
            return self
        warn_renamed(f"{self.owner}.{self.old}", f"the attribute {self.old}", self.new, stacklevel=2)
        return getattr(obj, self.new)

    def __set__(self, obj: object, value: object) -> None:
        warn_renamed(f"{self.owner}.{self.old}", f"the attribute {self.old}", self.new, stacklevel=2)
        object.__setattr__(obj, self.new, value)
