"""What every masked sampler does before and around its loop: check ``z``, pick the uniform source, the cached
evaluator and the categorical transform."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import ShapeError
from ._evaluate import Evaluator
from .contracts import MaskedDenoiser, UniformSource
from .random import uniform_source
from .schedules import MaskingSchedule, linear

__all__ = ["Transform", "Walk", "all_masked", "start_walk"]

Transform = Callable[[torch.Tensor], torch.Tensor]
"""A categorical transform ``probs -> probs`` applied before each token draw (:mod:`.categorical`)."""

Callback = Callable[[dict[str, Any]], None]


@dataclass
class Walk:
    """The per-call context of one sampler run (its state lives in the sampler's locals)."""

    z: torch.Tensor
    vocab_size: int
    evaluate: Evaluator
    uniforms: UniformSource
    schedule: MaskingSchedule
    transform: Transform | None
    callback: Callback | None

    @property
    def mask(self) -> int:
        return self.vocab_size

    def masked(self, z: torch.Tensor) -> torch.Tensor:
        return z == self.vocab_size

    def draw_distribution(self, p: torch.Tensor) -> torch.Tensor:
        """The distribution tokens are drawn from: ``transform(p)`` or ``p``."""
        return p if self.transform is None else self.transform(p)

    def report(self, **info: Any) -> None:
        if self.callback is not None:
            self.callback(info)


def start_walk(
    denoiser: MaskedDenoiser,
    z: torch.Tensor,
    *,
    schedule: MaskingSchedule | None,
    seed: int | Sequence[int] | torch.Tensor | None,
    uniforms: UniformSource | None,
    transform: Transform | None,
    cache: bool,
    callback: Callback | None,
) -> Walk:
    """Validate ``z`` (a ``(B, L)`` integer tensor of tokens and masks) and set up a :class:`Walk` on a copy."""
    vocab = int(denoiser.vocab_size)
    if z.dim() != 2 or z.is_floating_point():
        raise ShapeError(f"z must be a (B, L) integer tensor of tokens and masks, got {tuple(z.shape)} {z.dtype}")
    if ((z < 0) | (z > vocab)).any():
        raise ShapeError(f"z holds ids outside [0, {vocab}] (mask = {vocab})")
    return Walk(
        z.to(torch.int64).clone(),
        vocab,
        Evaluator(denoiser, cache),
        uniform_source(uniforms, seed),
        schedule or linear(),
        transform,
        callback,
    )


def all_masked(batch: int, length: int, vocab_size: int) -> torch.Tensor:
    """A ``(batch, length)`` start of masks only."""
    return torch.full((batch, length), int(vocab_size), dtype=torch.int64)
