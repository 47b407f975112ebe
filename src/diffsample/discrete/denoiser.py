"""Counting masked denoisers: logits or probabilities in, float64 ``p(x0_i | z_t)`` out, NFE counted.

:class:`CountingMaskedDenoiser` is the base class (the contract is
:class:`~diffsample.discrete.contracts.MaskedDenoiser`): a subclass implements :meth:`~CountingMaskedDenoiser.
forward` returning ``(B, L, V)`` logits (``output = "logits"``, turned into probabilities by a float64 softmax)
or probabilities (``output = "probs"``, renormalised in float64). The wrapper checks shapes, sets visible
positions to their own token (carry-over), and counts: ``nfe`` one per call (a batch evaluation, the unit the
continuous side counts; ``evaluations_per_call`` for wrappers that call several models, 2 for guidance),
``rows`` the sequences evaluated (a cached sampler evaluates only changed rows).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ..errors import ShapeError
from .contracts import MaskedDenoiser

__all__ = ["CountingMaskedDenoiser", "FunctionMaskedDenoiser", "as_masked_denoiser", "broadcast_time", "masked"]


def masked(z: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Boolean ``(B, L)``: where ``z`` holds the mask token (id ``vocab_size``)."""
    return z == vocab_size


def broadcast_time(t: torch.Tensor | float, batch: int) -> torch.Tensor:
    """``t`` as a float64 ``(B,)`` tensor (a scalar is repeated)."""
    t = torch.as_tensor(t, dtype=torch.float64)
    if t.dim() == 0 or t.shape == (1,):
        return t.reshape(1).expand(batch)
    if t.shape == (batch,):
        return t
    raise ShapeError(f"t must be a scalar or have shape ({batch},), got {tuple(t.shape)}")


class CountingMaskedDenoiser:
    """Base class: ``D(z, t) -> (B, L, V)`` float64 probabilities with call counting (module docstring)."""

    output: str = "logits"
    evaluations_per_call: int = 1

    def __init__(self, vocab_size: int, time_free: bool = False) -> None:
        self.vocab_size = int(vocab_size)
        self.time_free = bool(time_free)
        self.nfe = 0
        self.rows = 0

    def forward(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, z: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        if z.dim() != 2 or z.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
            raise ShapeError(f"z must be a (B, L) integer tensor, got {tuple(z.shape)} {z.dtype}")
        if ((z < 0) | (z > self.vocab_size)).any():
            raise ShapeError(f"tokens must lie in [0, {self.vocab_size}] (mask = {self.vocab_size})")
        self.nfe += self.evaluations_per_call
        self.rows += z.shape[0]
        out = self.forward(z, broadcast_time(t, z.shape[0])).to(torch.float64)
        if out.shape != (*z.shape, self.vocab_size):
            raise ShapeError(
                f"{type(self).__name__} returned {tuple(out.shape)}, expected "
                f"{(*z.shape, self.vocab_size)} (the vocabulary without the mask token)"
            )
        probs = torch.softmax(out, dim=-1) if self.output == "logits" else out / out.sum(-1, keepdim=True)
        visible = ~masked(z, self.vocab_size)
        if visible.any():
            own = torch.nn.functional.one_hot(z.clamp(max=self.vocab_size - 1), self.vocab_size).to(torch.float64)
            probs = torch.where(visible[..., None], own, probs)
        return probs

    def reset_counter(self) -> None:
        """Set ``nfe`` and ``rows`` back to zero."""
        self.nfe = 0
        self.rows = 0


class FunctionMaskedDenoiser(CountingMaskedDenoiser):
    """Wrap ``fn(z, t) -> (B, L, V)`` logits (``output="logits"``) or probabilities (``output="probs"``)."""

    def __init__(
        self, fn: Callable[..., torch.Tensor], vocab_size: int, *, time_free: bool = False, output: str = "logits"
    ) -> None:
        super().__init__(vocab_size, time_free)
        if output not in ("logits", "probs"):
            raise ValueError(f"output must be 'logits' or 'probs', got {output!r}")
        self.fn = fn
        self.output = output

    def forward(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.fn(z, t)


def as_masked_denoiser(
    fn: MaskedDenoiser | Callable[..., Any],
    vocab_size: int | None = None,
    *,
    time_free: bool = False,
    output: str = "logits",
) -> CountingMaskedDenoiser:
    """``fn`` itself if it already counts, else a :class:`FunctionMaskedDenoiser` around it."""
    if isinstance(fn, CountingMaskedDenoiser):
        return fn
    if vocab_size is None:
        vocab_size = getattr(fn, "vocab_size", None)
    if vocab_size is None:
        raise ShapeError("as_masked_denoiser needs vocab_size for a plain callable")
    return FunctionMaskedDenoiser(fn, vocab_size, time_free=getattr(fn, "time_free", time_free), output=output)
