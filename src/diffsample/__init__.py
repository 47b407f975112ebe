"""diffsample: training-free sampling from pretrained diffusion models.

The one idea: every model is turned into a σ-space denoiser ``D(x, sigma) -> x0_hat`` (with
``x = x0 + sigma · eps``), and every solver walks a decreasing array of noise levels ``sigmas``.
"""

from __future__ import annotations

import importlib
from typing import Any

from . import contracts, guidance, noise, parameterization, schedules, solvers, steps
from ._version import __version__
from .denoisers import CountingDenoiser, Denoiser, as_denoiser
from .errors import (
    BudgetError,
    DiffsampleError,
    NonFiniteError,
    ShapeError,
    SigmaError,
    StabilityWarning,
    UnknownNameError,
)
from .generate import generate
from .guidance import cfg
from .model_family import model_family
from .parameterization import ModelDenoiser
from .plan import Plan
from .sampling import sample
from .transforms.autoguidance import autoguidance

__all__ = [
    "BudgetError",
    "CountingDenoiser",
    "Denoiser",
    "ModelDenoiser",
    "Plan",
    "DiffsampleError",
    "NonFiniteError",
    "ShapeError",
    "SigmaError",
    "StabilityWarning",
    "UnknownNameError",
    "__version__",
    "as_denoiser",
    "autoguidance",
    "cfg",
    "contracts",
    "generate",
    "guidance",
    "model_family",
    "noise",
    "parameterization",
    "schedules",
    "sample",
    "solvers",
    "steps",
    "tune",
]

#: Submodules reachable as attributes of ``diffsample`` but imported on first use, so that
#: ``import diffsample`` needs torch alone (the test beds need scipy/scikit-learn, the integrations
#: diffusers or k-diffusion, the tuner is large).
LAZY_SUBMODULES = (
    "corrections",
    "discrete",
    "generate_set",
    "integrations",
    "models",
    "parallel",
    "testbeds",
    "transforms",
    "tuning",
)


def __getattr__(name: str) -> Any:  # noqa: ANN401 -- a module's lazy attributes are of many types
    """The lazy submodules (:data:`LAZY_SUBMODULES`), :func:`tune`, and ``DiffsampleScheduler``, on first use.

    ``diffsample.DiffsampleScheduler`` lets diffusers find the scheduler class by its module while
    ``import diffsample`` itself never imports diffusers.
    """
    if name in LAZY_SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    if name == "tune":
        from .tuning import tune

        return tune
    if name == "DiffsampleScheduler":
        from .integrations import DiffsampleScheduler

        return DiffsampleScheduler
    raise AttributeError(f"module 'diffsample' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__) | set(LAZY_SUBMODULES) | {"DiffsampleScheduler"})
