"""The one base class of denoiser transforms, and the float32 work dtype they (and the sampler) compute in.

A *transform* takes one denoiser (or two, for two-network guidance) and is itself a denoiser
``D'(x, σ)``, so transforms compose with each other and with every solver. A subclass implements
:meth:`Transform.denoise` with ``sigma`` already shaped ``(B,)``; :meth:`Transform.__call__` shapes
``sigma`` and checks that the output has ``x``'s shape.

Counting
--------
A transform never counts a model evaluation itself, so each network call is counted exactly once,
by the model. Two ways to report the cost, chosen by :attr:`Transform.counts_own_calls`:

* read-through (the default): ``nfe`` and ``calls`` are ``inner``'s, and :meth:`reset_counter` resets
  ``inner`` (epsilon scaling, time shift, thresholding, the NaN guard: one ``inner`` call per call);
* own counters (``counts_own_calls = True``): the transform keeps its own ``nfe``/``calls`` and adds,
  for each inner call made through :meth:`Transform.call_inner`, what that denoiser reported
  (classifier-free guidance, whose two branches may be two networks or one call of double batch).

``backward_passes`` and ``auxiliary_calls`` (gradient guidance, classifiers, rewards) are always the
transform's own (recorded with :meth:`Transform.count_backward` / :meth:`Transform.count_auxiliary`) plus
what its inner denoisers report: read through ``inner`` by default, added per :meth:`Transform.call_inner`
with own counters.

Work dtype
----------
Transform maths and solver updates run in at least float32 (float64 stays float64), so fp16/bf16
networks do not lose small differences such as ``D_c − D_u``: :func:`work_dtype` and :func:`to_work`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from .. import contracts
from ..denoisers import COUNTER_LOCK, CountingDenoiser, as_denoiser, broadcast_sigma
from ..errors import ShapeError

__all__ = ["Transform", "to_work", "work_dtype"]


def work_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype update maths uses for a tensor of ``dtype``: float64 for float64, float32 otherwise."""
    if not dtype.is_floating_point:
        raise ShapeError(f"x must be a floating-point tensor, got dtype {dtype}")
    return torch.float64 if dtype == torch.float64 else torch.float32


def to_work(t: torch.Tensor) -> torch.Tensor:
    """``t`` in its :func:`work_dtype` (unchanged, not copied, when it already is)."""
    return t.to(work_dtype(t.dtype))


class Transform(CountingDenoiser):
    """A denoiser built on ``inner`` (module docstring): subclasses implement :meth:`denoise`.

    ``nfe_per_call`` and ``network_calls_per_call`` start as ``inner``'s (a transform that calls ``inner``
    once per call costs what ``inner`` costs); a transform with another cost sets its own.
    """

    counts_own_calls: bool = False

    def __init__(self, inner: contracts.Denoiser | Callable[..., torch.Tensor]) -> None:
        super().__init__()
        self.inner = as_denoiser(inner)
        self.nfe_per_call = self.inner.nfe_per_call
        self.network_calls_per_call = self.inner.network_calls_per_call

    @property
    def nfe(self) -> int:  # type: ignore[override]
        return self._nfe if self.counts_own_calls else self.inner.nfe

    @nfe.setter
    def nfe(self, value: int) -> None:
        self._nfe = value

    @property
    def calls(self) -> int:  # type: ignore[override]
        return self._calls if self.counts_own_calls else self.inner.calls

    @calls.setter
    def calls(self, value: int) -> None:
        self._calls = value

    @property
    def backward_passes(self) -> int:  # type: ignore[override]
        return self._backward_passes + (0 if self.counts_own_calls else self.inner.backward_passes)

    @backward_passes.setter
    def backward_passes(self, value: int) -> None:
        self._backward_passes = value

    @property
    def auxiliary_calls(self) -> int:  # type: ignore[override]
        return self._auxiliary_calls + (0 if self.counts_own_calls else self.inner.auxiliary_calls)

    @auxiliary_calls.setter
    def auxiliary_calls(self, value: int) -> None:
        self._auxiliary_calls = value

    def count_backward(self, passes: int = 1) -> None:
        """Record ``passes`` backward passes (per sample) made by this transform itself."""
        with COUNTER_LOCK:
            self._backward_passes += passes

    def count_auxiliary(self, calls: int = 1) -> None:
        """Record ``calls`` forward calls (per sample) of a network other than the denoiser (classifier, reward)."""
        with COUNTER_LOCK:
            self._auxiliary_calls += calls

    def reset_counter(self) -> None:
        """Zero the counters this transform reports: its own, and (read-through) ``inner``'s."""
        self._backward_passes = 0
        self._auxiliary_calls = 0
        if self.counts_own_calls:
            super().reset_counter()
        else:
            self.inner.reset_counter()

    def call_inner(
        self, net: CountingDenoiser, x: torch.Tensor, sigma: torch.Tensor, kwargs: Mapping[str, Any], copies: int = 1
    ) -> torch.Tensor:
        """``net(x, sigma, **kwargs)``; with own counters, add what ``net`` reports (``copies`` samples per row).

        What ``net`` reports is read as the change of its counters over the call, so when other threads call the
        same ``net`` at the same time their calls are included; wrap a shared model in a per-walk
        :class:`~diffsample.denoisers.CallCounter` to count one walk exactly (every total stays exact).
        """
        if not self.counts_own_calls:
            return net(x, sigma, **kwargs)
        before = net.cost()
        out = net(x, sigma, **kwargs)
        after = net.cost()
        with COUNTER_LOCK:
            self._nfe += copies * (after.nfe - before.nfe)
            self._calls += after.calls - before.calls
            self._backward_passes += copies * (after.backward_passes - before.backward_passes)
            self._auxiliary_calls += copies * (after.auxiliary_calls - before.auxiliary_calls)
        return out

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor | float, **kwargs: Any) -> torch.Tensor:
        out = self.denoise(x, broadcast_sigma(sigma, x), **kwargs)
        if out.shape != x.shape:
            raise ShapeError(f"{type(self).__name__} returned shape {tuple(out.shape)} for x of shape {tuple(x.shape)}")
        return out
