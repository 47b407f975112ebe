"""``Plan``: what the tuner finds, a small JSON document that :func:`diffsample.sample` runs again.

A plan holds the noise levels (ending in 0), a registered solver name and its options (for the tuner's
``plan`` solver, per-step lists of choices), and where it came from. Example::

    {
      "format": "diffsample.plan", "version": 1,
      "sigmas": [80.0, 9.1, 1.3, 0.21, 0.0],
      "solver": "plan",
      "options": {"prediction": ["data", …], "order": [1, 2, 2, 1], "corrector": [true, …], "variant": [...]},
      "provenance": {"model": "mixture64", "nfe": 4, "calibration_size": 64, "error": 0.031,
                     "error_metric": "rmse vs teacher at sigma = 0", "teacher_nfe": 477, …,
                     "library": "diffsample 0.1.0"}
    }

Floats are written with ``repr`` precision (JSON numbers round-trip exactly), so a loaded plan runs
bit-for-bit the walk the tuner scored.

A plan is checked when it is made or loaded, so a bad file fails at once with a
:class:`~diffsample.errors.DiffsampleError` naming what is wrong, never mid-run: the file is at most
:data:`MAX_BYTES` long and valid JSON with the keys above; the levels are numbers, finite and strictly
decreasing (ending in 0 or in a σ_min > 0), at most :data:`MAX_STEPS` steps; the solver is registered and every
option is one of its keyword options (read from the solver function's signature) with a value of the default's
type. Saving is atomic (:func:`diffsample.files.atomic_write`): a failed save leaves the old file as it was.

The plan sits below :mod:`diffsample.sampling` and :mod:`diffsample.generate` (which run it) and below
:mod:`diffsample.tuning` (which makes it): it needs only the solver registry and the step validation.
"""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from numbers import Real
from typing import IO, Any

import torch

from . import solvers, steps
from .errors import DiffsampleError
from .files import atomic_write_bytes

__all__ = ["FORMAT", "MAX_BYTES", "MAX_STEPS", "Plan"]

FORMAT = "diffsample.plan"
VERSION = 1
MAX_BYTES = 1 << 20
"""Largest plan file :meth:`Plan.load` reads (1 MiB; a tuned plan is a few kB)."""
MAX_STEPS = 10_000
"""Most steps a plan may hold."""
KEYS = ("format", "version", "sigmas", "solver", "options", "provenance")
"""The keys of a plan document."""
_WALK_ARGUMENTS = frozenset({"denoiser", "x", "sigmas", "noise", "callback"})


def _is_number(value: object) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def _check_sigmas(sigmas: object) -> None:
    """The plan's levels are a list of numbers (not strings or booleans) of at most ``MAX_STEPS`` steps."""
    if hasattr(sigmas, "tolist"):  # a torch tensor or numpy array of levels
        sigmas = sigmas.tolist()
    if not isinstance(sigmas, list | tuple):
        raise DiffsampleError(f"plan sigmas must be a list of numbers, got {type(sigmas).__name__}")
    bad = [i for i, s in enumerate(sigmas) if not _is_number(s)]
    if bad:
        raise DiffsampleError(f"plan sigmas[{bad[0]}] = {sigmas[bad[0]]!r} is not a number")
    if len(sigmas) - 1 > MAX_STEPS:
        raise DiffsampleError(f"a plan holds at most {MAX_STEPS} steps, this one {len(sigmas) - 1}")


def _check_plan_choices(n_steps: int, options: dict[str, Any]) -> None:
    from .solvers.plan_solver import plan_options

    plan_options(n_steps, **options)


def _check_fitted_weights(n_steps: int, options: dict[str, Any]) -> None:
    from .solvers.nonstationary import check_weights

    check_weights(n_steps, options.get("weights", ()))


_PER_STEP_CHECKS: dict[str, Callable[[int, dict[str, Any]], None]] = {
    "plan": _check_plan_choices,
    "nonstationary": _check_fitted_weights,
}
"""Solvers whose options hold one entry per step (tuned choices, fitted weights), with the check of those lists for
a walk of ``n_steps`` steps (imported when used: the solvers sit beside the plan, not below it)."""


def _check_options(solver: str, options: dict[str, Any]) -> None:
    """Every option is a keyword option of ``solver``'s function, with a value of its default's type.

    The valid names are read from the solver function's signature (its parameters after the walk's own), so
    a misspelt option fails when the plan is loaded, listing the valid ones, not as a ``TypeError`` mid-run.
    """
    params = inspect.signature(solvers.get(solver)).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    valid = {name: p for name, p in params.items() if name not in _WALK_ARGUMENTS}
    unknown = sorted(set(options) - set(valid))
    if unknown:
        listed = ", ".join(sorted(valid)) or "none"
        raise DiffsampleError(
            f"unknown option {unknown[0]!r} of solver {solver!r} in the plan; valid options: {listed}"
        )
    if solver in _PER_STEP_CHECKS:  # per-step lists, checked by the solver's own check
        return
    for name, value in options.items():
        default = valid[name].default
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif _is_number(default):
            ok = _is_number(value)
        elif isinstance(default, str):
            ok = isinstance(value, str)
        else:
            continue
        if not ok:
            raise DiffsampleError(
                f"plan option {name!r} of solver {solver!r} must be a {type(default).__name__} "
                f"like its default {default!r}, got {value!r}"
            )


@dataclass
class Plan:
    """Noise levels + solver + options + provenance (see the module docstring).

    Attributes:
        sigmas: the levels, strictly decreasing, ending in 0 (Python floats).
        solver: a registered solver name (``"plan"`` for tuned per-step choices, ``"nonstationary"`` for tuned
            solver weights).
        options: keyword options of the solver (JSON values).
        provenance: how the plan was made (model id, budget, calibration size, error vs teacher,
            teacher NFE, tuning wall time and NFE, library version, …).
    """

    sigmas: list[float]
    solver: str = "plan"
    options: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_sigmas(self.sigmas)
        self.sigmas = [float(s) for s in steps.validate(self.sigmas, name="plan sigmas").tolist()]
        if not isinstance(self.solver, str):
            raise DiffsampleError(f"plan solver must be a registered solver name, got {self.solver!r}")
        solvers.spec(self.solver)  # an unknown name raises, listing the valid ones
        if not isinstance(self.options, dict) or not isinstance(self.provenance, dict):
            raise DiffsampleError("plan options and provenance must be JSON objects (dicts)")
        _check_options(self.solver, self.options)
        check = _PER_STEP_CHECKS.get(self.solver)
        if check is not None:  # per-step lists: check their lengths and values now, not at the first run
            check(self.n_steps, self.options)

    @property
    def n_steps(self) -> int:
        return len(self.sigmas) - 1

    @property
    def nfe(self) -> int:
        """Model evaluations one walk of this plan costs (the solver's registered cost on these levels with
        these options: exact also for solvers whose cost depends on them, such as ``restart``)."""
        return solvers.spec(self.solver).nfe_on(self.sigma_tensor(), **self.options)

    def sigma_tensor(self) -> torch.Tensor:
        """The levels as a float64 tensor (what :func:`diffsample.sample` walks)."""
        return torch.tensor(self.sigmas, dtype=torch.float64)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "sigmas": list(self.sigmas),
            "solver": self.solver,
            "options": self.options,
            "provenance": self.provenance,
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        """The plan a :meth:`to_dict` document describes, checked (module docstring)."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise DiffsampleError(f'not a diffsample plan (expected "format": "{FORMAT}")')
        if data.get("version") != VERSION:
            raise DiffsampleError(f"unsupported plan version {data.get('version')!r} (this library reads {VERSION})")
        unknown = sorted(set(data) - set(KEYS))
        if unknown:
            raise DiffsampleError(f"unknown key {unknown[0]!r} in the plan; valid keys: {', '.join(KEYS)}")
        missing = [k for k in ("sigmas", "solver") if k not in data]
        if missing:
            raise DiffsampleError(f"the plan has no {missing[0]!r}")
        return cls(data["sigmas"], data["solver"], data.get("options", {}), data.get("provenance", {}))

    @classmethod
    def from_json(cls, text: str) -> Plan:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise DiffsampleError(f"the plan is not valid JSON: {err}") from None
        return cls.from_dict(data)

    def to_bytes(self) -> bytes:
        """The file content: the JSON document in UTF-8 with one trailing newline."""
        return (self.to_json() + "\n").encode("utf-8")

    def write(self, handle: IO[bytes]) -> None:
        """Write :meth:`to_bytes` to a binary file object (e.g. one from :func:`diffsample.files.atomic_write`)."""
        handle.write(self.to_bytes())

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the plan as JSON to ``path`` atomically (its folder is created if needed; a symbolic link is
        refused). The content is serialised first: if that fails, an existing file at ``path`` is untouched."""
        atomic_write_bytes(path, self.to_bytes())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Plan:
        """Read a plan written by :meth:`save` (at most :data:`MAX_BYTES`), checked (module docstring)."""
        try:
            with open(path, "rb") as f:
                raw = f.read(MAX_BYTES + 1)
        except OSError as err:
            raise DiffsampleError(f"cannot read the plan file {os.fspath(path)}: {err.strerror or err}") from None
        if len(raw) > MAX_BYTES:
            raise DiffsampleError(f"the plan file {os.fspath(path)} is larger than {MAX_BYTES} bytes")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise DiffsampleError(f"the plan file {os.fspath(path)} is not UTF-8 text") from None
        return cls.from_json(text)

    def describe(self) -> str:
        """One line per step: levels and the per-step choices (fitted weights to 4 significant digits)."""

        def shown(value: object) -> object:
            if isinstance(value, list) and all(_is_number(v) for v in value):
                return "[" + ", ".join(f"{v:.4g}" for v in value) + "]"
            return value

        lines = []
        for i in range(self.n_steps):
            opts = {k: shown(v[i] if isinstance(v, list) else v) for k, v in self.options.items()}
            text = " ".join(f"{k}={v}" for k, v in opts.items())
            lines.append(f"  {i}: {self.sigmas[i]:.4g} -> {self.sigmas[i + 1]:.4g}  {text}")
        return "\n".join(lines)
