"""The per-step callback of every solver (k-diffusion's keys) and wrappers for solvers that call solvers."""

from __future__ import annotations

from typing import Any

import torch

from ...contracts import StepCallback

Callback = StepCallback | None
"""A solver's ``callback`` argument: a :data:`~diffsample.contracts.StepCallback` or ``None``."""


def report(
    callback: Callback, i: int, x: torch.Tensor, sigma: float, sigma_next: float, denoised: torch.Tensor
) -> None:
    """Call ``callback`` (if any) with k-diffusion's keys: i, x, sigma, sigma_hat, sigma_next, denoised."""
    if callback is not None:
        callback({"i": i, "x": x, "sigma": sigma, "sigma_hat": sigma, "sigma_next": sigma_next, "denoised": denoised})


def offset_callback(callback: Callback, offset: int) -> Callback:
    """``callback`` seeing step indices shifted by ``offset`` (a walk run on a slice of the levels)."""
    if callback is None or offset == 0:
        return callback

    def shifted(info: dict[str, Any]) -> None:
        callback({**info, "i": info["i"] + offset})

    return shifted


def tagged_callback(callback: Callback, **tags: Any) -> Callback:
    """``callback`` seeing ``tags`` added to (or replacing) every report's keys."""
    if callback is None:
        return None

    def tagged(info: dict[str, Any]) -> None:
        callback({**info, **tags})

    return tagged
