"""diffsample: training-free sampling from pretrained diffusion models.

The one idea: every model is turned into a σ-space denoiser ``D(x, sigma) -> x0_hat`` (with
``x = x0 + sigma · eps``), and every solver walks a decreasing array of noise levels ``sigmas``.
"""

from __future__ import annotations

from . import guidance, noise, parameterization, schedules, solvers, steps
from .denoisers import Denoiser, as_denoiser
from .errors import (
    BudgetError,
    DiffsampleError,
    NonFiniteError,
    ShapeError,
    SigmaError,
    UnknownNameError,
)
from .generate import generate
from .guidance import cfg
from .parameterization import ModelDenoiser
from .sampling import sample
from .tuning import Plan, tune

__version__ = "0.1.0"

__all__ = [
    "BudgetError",
    "Denoiser",
    "ModelDenoiser",
    "Plan",
    "DiffsampleError",
    "NonFiniteError",
    "ShapeError",
    "SigmaError",
    "UnknownNameError",
    "as_denoiser",
    "cfg",
    "generate",
    "guidance",
    "noise",
    "parameterization",
    "schedules",
    "sample",
    "solvers",
    "steps",
    "tune",
]


def __getattr__(name: str):
    """``diffsample.DiffsampleScheduler`` on demand, so diffusers finds the scheduler class by its module
    while ``import diffsample`` itself never imports diffusers."""
    if name == "DiffsampleScheduler":
        from .integrations import DiffsampleScheduler

        return DiffsampleScheduler
    raise AttributeError(f"module 'diffsample' has no attribute {name!r}")
