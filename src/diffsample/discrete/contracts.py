"""The contracts of masked (absorbing-state) discrete diffusion as types.

A sequence of ``L`` tokens from a vocabulary of ``V`` tokens ``0 … V-1`` is noised by replacing tokens with a
mask token, independently per position: at time ``t ∈ [0, 1]`` a token is still visible with probability
``α_t`` (:mod:`~diffsample.discrete.schedules`). The mask token's id is ``V`` (:func:`mask_id`), one past the
vocabulary (MDLM's convention; adapters for models whose mask id lies inside their vocabulary remap it).

* **MaskedDenoiser** ``D(z, t) -> probs``: ``z`` a ``(B, L)`` integer tensor of tokens and masks, ``t`` a scalar
  or a ``(B,)`` tensor of times; returns ``(B, L, V)`` float64 probabilities ``p(x0_i | z_t)`` over the vocabulary
  *without* the mask token (so no sampler can ever draw it). Visible positions carry their own token (MDLM's
  "carry-over" parameterisation). ``time_free = True`` declares that the output does not depend on ``t`` (then a
  sampler may reuse an output while ``z`` is unchanged); the exact denoiser of absorbing diffusion is time-free
  (Ou et al. 2024, "Your absorbing discrete diffusion secretly models the conditional distributions of clean
  data"). The counting base class is :class:`~diffsample.discrete.denoiser.CountingMaskedDenoiser`.
* **UniformSource** ``u(batch, size) -> (batch, size)`` float64 uniforms in the open interval ``(0, 1)``; row
  ``i`` comes from sample ``i``'s own stream (:class:`~diffsample.discrete.random.SeededUniforms`).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

__all__ = ["MaskedDenoiser", "UniformSource", "mask_id"]


def mask_id(vocab_size: int) -> int:
    """The id of the mask token for a vocabulary of ``vocab_size`` tokens: ``vocab_size`` itself."""
    return int(vocab_size)


@runtime_checkable
class MaskedDenoiser(Protocol):
    """``D(z, t) -> p(x0 | z_t)`` of shape ``(B, L, V)`` in float64 (module docstring)."""

    vocab_size: int
    time_free: bool

    def __call__(self, z: torch.Tensor, t: torch.Tensor | float, /) -> torch.Tensor: ...


@runtime_checkable
class UniformSource(Protocol):
    """``u(batch, size)``: float64 uniforms in ``(0, 1)``, row ``i`` from sample ``i``'s stream."""

    def __call__(self, batch: int, size: int) -> torch.Tensor: ...
