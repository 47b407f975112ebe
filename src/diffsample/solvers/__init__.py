"""Solvers: plain functions ``solver(denoiser, x, sigmas, *, noise=None, callback=None, **options)``.

Importing this package imports every solver-family module in it (each registers its solvers with
:func:`register`); :func:`available` lists their names. A family module is any module here other
than ``registry``; the maths several families share lives in the private ``_kernel`` package.
"""

from __future__ import annotations

import importlib
import pkgutil

from .registry import SolverSpec, available, describe, get, register, spec

_SUPPORT_MODULES = {"registry"}

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if _info.name not in _SUPPORT_MODULES and not _info.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_info.name}")

__all__ = ["SolverSpec", "available", "describe", "get", "register", "spec"]
