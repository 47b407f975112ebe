"""Provenance of a tuned plan: which model it was tuned for and with which library version."""

from __future__ import annotations

from .._version import __version__
from ..contracts import Denoiser


def model_name(den: Denoiser, given: str | None) -> str:
    """``given`` when set, else the denoiser's ``name`` attribute, else its class name."""
    if given:
        return str(given)
    name = getattr(den, "name", None)
    return str(name) if isinstance(name, str) and name else type(den).__name__


def library_version() -> str:
    """``"diffsample <version>"``, recorded in every plan."""
    return f"diffsample {__version__}"
