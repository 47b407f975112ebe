"""The contracts of diffsample as types: :class:`Denoiser`, :class:`NoiseSource`, :class:`Solver`.

These are :class:`typing.Protocol` s, so anything of the right shape satisfies them without inheriting
from a diffsample class: a plain function ``D(x, sigma)`` is a :class:`Denoiser`, k-diffusion's
``sample_euler`` is (nearly) a :class:`Solver`. Public signatures use them; ``isinstance`` checks are
cheap for :class:`Denoiser` and :class:`NoiseSource` (they only test for ``__call__``).

Naming: the *protocol* is ``diffsample.contracts.Denoiser``, the *base class* that adds NFE counting and
normalises ``sigma`` to ``(B,)`` is :class:`diffsample.denoisers.CountingDenoiser`. ``diffsample.Denoiser``
and ``diffsample.denoisers.Denoiser`` stay names of that base class, because users and the test beds
subclass them and ``isinstance(d, diffsample.Denoiser)`` has always meant "counts its calls"; turning them
into the protocol would silently drop the counting from every existing subclass. Code that only *calls* a
denoiser annotates with this module's protocol; code that *reads* ``nfe``/``calls`` first passes it through
:func:`diffsample.denoisers.as_denoiser`, which returns a counting one.

The contracts (DESIGN.md):

* **Denoiser** ``D(x, sigma) -> x0_hat``: ``x`` of shape ``(B, …)``, ``sigma`` a scalar or a
  tensor of shape ``(B,)``; returns the estimate of the clean sample ``x0`` in ``x = x0 + sigma · eps``,
  with x's shape.
* **NoiseSource** ``noise(x, sigma=None, sigma_next=None) -> z``: standard-normal noise shaped like ``x``
  for the interval ``sigma → sigma_next`` of the walk; stochastic code never calls a global RNG.
* **Solver** ``solver(denoiser, x, sigmas, *, noise=None, callback=None, **options) -> x``: walks ``x``
  from ``sigmas[0]`` to exactly ``sigmas[-1]``; its history lives in the call's locals (no state survives
  between calls).
* **StepCallback** ``callback(info)``: called by a solver with a dict of ``i, x, sigma, sigma_hat,
  sigma_next, denoised`` (k-diffusion's keys).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import torch

__all__ = ["Denoiser", "NoiseSource", "Solver", "StepCallback"]

StepCallback = Callable[[dict[str, Any]], None]
"""``callback(info)`` with k-diffusion's keys ``i, x, sigma, sigma_hat, sigma_next, denoised``."""


@runtime_checkable
class Denoiser(Protocol):
    """``D(x, sigma) -> x0_hat`` in σ-space (module docstring).

    Denoisers may take extra keywords (conditioning such as ``class_labels``); the protocol names only
    what every solver passes, so a plain two-argument function satisfies it.
    """

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor | float, /) -> torch.Tensor: ...


@runtime_checkable
class NoiseSource(Protocol):
    """Something that returns standard-normal noise shaped like ``x``.

    ``sigma`` and ``sigma_next`` say which interval of the walk the noise is for; sources that
    ignore them (the seeded streams) draw fresh noise each call, Brownian-tree sources use them.
    """

    def __call__(
        self, x: torch.Tensor, sigma: float | None = None, sigma_next: float | None = None
    ) -> torch.Tensor: ...


class Solver(Protocol):
    """``solver(denoiser, x, sigmas, *, noise=None, callback=None, **options) -> x`` (module docstring).

    Solver-specific options are further keywords with defaults, so they are not part of the protocol.

    Not runtime-checkable: every callable would pass, so a check would prove nothing; the registry
    (:mod:`diffsample.solvers`) is the place that knows which functions are solvers.
    """

    def __call__(
        self,
        denoiser: Denoiser,
        x: torch.Tensor,
        sigmas: torch.Tensor,
        /,
        *,
        noise: NoiseSource | None = None,
        callback: StepCallback | None = None,
    ) -> torch.Tensor: ...
