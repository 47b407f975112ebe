"""The one place the library's version is written: read by ``diffsample.__version__``, the tuner's plan
provenance and the package metadata (pyproject's dynamic version)."""

from __future__ import annotations

__version__ = "0.1.0"
