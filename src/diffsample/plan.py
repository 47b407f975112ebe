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

The plan sits below :mod:`diffsample.sampling` and :mod:`diffsample.generate` (which run it) and below
:mod:`diffsample.tuning` (which makes it): it needs only the solver registry and the step validation.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

import torch

from . import solvers, steps
from .errors import DiffsampleError

__all__ = ["FORMAT", "Plan"]

FORMAT = "diffsample.plan"
VERSION = 1


@dataclass
class Plan:
    """Noise levels + solver + options + provenance (see the module docstring).

    Attributes:
        sigmas: the levels, strictly decreasing, ending in 0 (Python floats).
        solver: a registered solver name (``"plan"`` for tuned per-step choices).
        options: keyword options of the solver (JSON values).
        provenance: how the plan was made (model id, budget, calibration size, error vs teacher,
            teacher NFE, tuning wall time and NFE, library version, …).
    """

    sigmas: list[float]
    solver: str = "plan"
    options: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.sigmas = [float(s) for s in steps.validate(self.sigmas, name="plan sigmas").tolist()]
        solvers.spec(self.solver)  # an unknown name raises, listing the valid ones
        if not isinstance(self.options, dict) or not isinstance(self.provenance, dict):
            raise DiffsampleError("plan options and provenance must be JSON objects (dicts)")
        if self.solver == "plan":  # per-step lists: check their lengths and values now, not at the first run
            from .solvers.plan_solver import plan_options

            unknown = set(self.options) - {"prediction", "order", "corrector", "variant"}
            if unknown:
                raise DiffsampleError(f"unknown options of the plan solver: {sorted(unknown)}")
            plan_options(self.n_steps, **self.options)

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
        return {"format": FORMAT, "version": VERSION, "sigmas": list(self.sigmas), "solver": self.solver,
                "options": self.options, "provenance": self.provenance}

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise DiffsampleError(f"not a diffsample plan (expected \"format\": \"{FORMAT}\")")
        if data.get("version") != VERSION:
            raise DiffsampleError(f"unsupported plan version {data.get('version')!r} (this library reads {VERSION})")
        return cls(list(data["sigmas"]), str(data["solver"]), dict(data.get("options", {})),
                   dict(data.get("provenance", {})))

    @classmethod
    def from_json(cls, text: str) -> Plan:
        return cls.from_dict(json.loads(text))

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the plan as JSON to ``path`` (its folder is created if needed)."""
        os.makedirs(os.path.dirname(os.fspath(path)) or ".", exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(self.to_json() + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Plan:
        """Read a plan written by :meth:`save`."""
        with open(path, encoding="utf-8") as f:
            return cls.from_json(f.read())

    def describe(self) -> str:
        """One line per step: levels and the per-step choices."""
        lines = []
        for i in range(self.n_steps):
            opts = {k: (v[i] if isinstance(v, list) else v) for k, v in self.options.items()}
            text = " ".join(f"{k}={v}" for k, v in opts.items())
            lines.append(f"  {i}: {self.sigmas[i]:.4g} -> {self.sigmas[i + 1]:.4g}  {text}")
        return "\n".join(lines)
