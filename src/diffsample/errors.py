"""Exceptions raised by diffsample, each naming what was wrong and what is allowed."""

from __future__ import annotations


class DiffsampleError(ValueError):
    """Base class of every error diffsample raises on bad input."""


class SigmaError(DiffsampleError):
    """A step schedule (sigma array) is not usable: too short, not decreasing, negative or non-finite."""


class ShapeError(DiffsampleError):
    """A tensor's shape or dtype does not match what the call needs."""


class UnknownNameError(DiffsampleError, KeyError):
    """A solver, schedule, parameterisation or bed name that is not registered."""

    def __init__(self, kind: str, name: str, valid: list[str]) -> None:
        self.kind, self.name, self.valid = kind, name, sorted(valid)
        super().__init__(f"unknown {kind} {name!r}; valid {kind}s: {', '.join(self.valid)}")

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return self.args[0]


class NonFiniteError(DiffsampleError, FloatingPointError):
    """The model returned NaN or Inf."""


class BudgetError(DiffsampleError):
    """An NFE budget that no configuration can meet."""


class StabilityWarning(UserWarning):
    """A solver step lies outside the method's stability region (:mod:`diffsample.solvers._kernel.stability`):
    the result may be far outside the data range. Warned once per solver call."""
