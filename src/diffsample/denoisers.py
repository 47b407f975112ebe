"""The denoiser contract: ``D(x, sigma) -> x0_hat`` in σ-space, where ``x = x0 + sigma * eps``.

Every model (ε, x0, v, flow-velocity or score network on any noise schedule) is turned into this
form once (:class:`ModelDenoiser`, in :mod:`diffsample.parameterization`), and every solver,
guidance rule and tuner only sees it. The contract as a type is the protocol
:class:`diffsample.contracts.Denoiser`; this module holds the :class:`CountingDenoiser` base class
that normalises ``sigma`` to shape ``(B,)`` and counts model evaluations (also named :data:`Denoiser`,
the name users subclass; :mod:`diffsample.contracts` explains the choice), and :func:`as_denoiser`
that wraps a plain callable. Denoisers built on other denoisers are transforms
(:class:`diffsample.transforms.Transform`).

NFE accounting
--------------
``nfe`` counts model evaluations per sample: one network call on a batch adds 1, a classifier-free
guided call adds 2 whether the conditional and unconditional branches run as two calls or as one
call of double batch. ``calls`` counts network invocations (1 for a batched CFG call). Benchmarks
report ``nfe``.

Gradient guidance costs more than forward calls, and those costs are counted apart (per sample, like
``nfe``): ``backward_passes`` counts backward passes through any network (the denoiser when a gradient
is taken through ``x̂0``, a classifier or reward when its gradient is taken), ``auxiliary_calls`` counts
forward calls of networks other than the denoiser (noise-aware classifiers, rewards, verifiers).
:meth:`CountingDenoiser.cost` returns all four counters as one :class:`Cost`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from . import contracts
from .errors import ShapeError

__all__ = ["CallCounter", "Cost", "CountingDenoiser", "Denoiser", "FunctionDenoiser", "as_denoiser", "broadcast_sigma"]


COUNTER_LOCK = threading.Lock()
"""Held while a counter is incremented, so concurrent calls from many threads lose no count (``+=`` on an
attribute is not atomic). One module-level lock: the critical sections are a few additions, and a lock attribute
would make denoisers unpicklable for process executors."""


def broadcast_sigma(sigma: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
    """Return ``sigma`` as a tensor of shape ``(B,)`` on x's device (dtype float64 kept if given).

    Accepts a Python float, a 0-d tensor, or a tensor of shape ``(B,)``/``(1,)``.
    """
    if x.dim() < 1:
        raise ShapeError(f"x must have a batch dimension, got shape {tuple(x.shape)}")
    batch = x.shape[0]
    if isinstance(sigma, int | float):  # a Python number keeps its float64 precision
        s = torch.tensor(float(sigma), dtype=torch.float64, device=x.device)
    else:
        s = torch.as_tensor(sigma, device=x.device)
    if not s.is_floating_point():
        s = s.to(torch.float64)
    if s.dim() == 0 or (s.dim() == 1 and s.shape[0] == 1):
        return s.reshape(1).expand(batch)
    if s.dim() == 1 and s.shape[0] == batch:
        return s
    raise ShapeError(
        f"sigma must be a scalar or have shape (B,) = ({batch},) to match x of shape {tuple(x.shape)}, "
        f"got shape {tuple(s.shape)}"
    )


def check_output(out: object, who: str) -> torch.Tensor:
    """``out`` when it is a real floating-point tensor; else a :class:`~diffsample.errors.ShapeError` naming
    what ``who`` (the denoiser or network) returned instead (numpy array, ``None``, tuple, complex or integer
    tensor), before any solver maths touches it."""
    if not isinstance(out, torch.Tensor):
        raise ShapeError(f"{who} returned {type(out).__name__}, not a torch.Tensor (x0_hat of x's shape)")
    if out.is_complex() or not out.is_floating_point():
        raise ShapeError(f"{who} returned a {out.dtype} tensor; x0_hat must be a real floating-point tensor")
    return out


def append_dims(v: torch.Tensor, ndim: int) -> torch.Tensor:
    """Append trailing singleton dims so a per-sample ``(B,)`` tensor broadcasts against ``(B, …)``."""
    return v.reshape(v.shape + (1,) * (ndim - v.dim()))


@dataclass(frozen=True)
class Cost:
    """What a walk cost, per sample (module docstring): denoiser evaluations ``nfe``, network invocations
    ``calls``, backward passes ``backward_passes`` and forward calls of other networks ``auxiliary_calls``."""

    nfe: int = 0
    calls: int = 0
    backward_passes: int = 0
    auxiliary_calls: int = 0

    def __add__(self, other: Cost) -> Cost:
        return Cost(
            self.nfe + other.nfe,
            self.calls + other.calls,
            self.backward_passes + other.backward_passes,
            self.auxiliary_calls + other.auxiliary_calls,
        )


class CountingDenoiser:
    """Base class of the counting denoisers: ``D(x, sigma) -> x0_hat`` with an NFE counter.

    Subclasses implement :meth:`denoise` receiving ``sigma`` already shaped ``(B,)``.
    ``nfe_per_call`` is the number of model evaluations one call costs per sample (2 for CFG);
    ``network_calls_per_call`` the number of network invocations it makes.
    """

    nfe_per_call: int = 1
    network_calls_per_call: int = 1

    def __init__(self) -> None:
        self.nfe = 0
        self.calls = 0
        self.backward_passes = 0
        self.auxiliary_calls = 0

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        raise NotImplementedError

    def cost(self) -> Cost:
        """The four counters as one :class:`Cost` (per sample)."""
        return Cost(self.nfe, self.calls, self.backward_passes, self.auxiliary_calls)

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor | float, **kwargs: Any) -> torch.Tensor:
        s = broadcast_sigma(sigma, x)
        with COUNTER_LOCK:
            self.nfe += self.nfe_per_call
            self.calls += self.network_calls_per_call
        out = check_output(self.denoise(x, s, **kwargs), type(self).__name__)
        if out.shape != x.shape:
            raise ShapeError(f"{type(self).__name__} returned shape {tuple(out.shape)} for x of shape {tuple(x.shape)}")
        return out

    def reset_counter(self) -> None:
        """Set ``nfe``, ``calls``, ``backward_passes`` and ``auxiliary_calls`` back to zero."""
        self.nfe = 0
        self.calls = 0
        self.backward_passes = 0
        self.auxiliary_calls = 0


Denoiser = CountingDenoiser
"""The base class under the name users subclass (``class MyModel(diffsample.Denoiser)``)."""


class FunctionDenoiser(CountingDenoiser):
    """Wrap a plain callable ``fn(x, sigma) -> x0_hat`` (sigma of shape ``(B,)``) with NFE counting."""

    def __init__(self, fn: Callable[..., torch.Tensor], nfe_per_call: int = 1) -> None:
        super().__init__()
        self.fn = fn
        self.nfe_per_call = nfe_per_call
        self.network_calls_per_call = nfe_per_call

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        return self.fn(x, sigma, **kwargs)


class CallCounter(CountingDenoiser):
    """A private counter around a shared denoiser: ``nfe`` and ``calls`` count only the calls made through it.

    Reading a shared model's counter before and after a walk is wrong as soon as another thread walks the
    same model at the same time (the difference includes the other walk's evaluations). A function that must
    know what *its own* walk spent wraps the model in a fresh ``CallCounter`` for that walk: each call adds
    ``inner.nfe_per_call`` here (and the model still counts itself, for whoever reads its total). The output
    is ``inner``'s, unchanged.
    """

    def __init__(self, inner: contracts.Denoiser | Callable[..., torch.Tensor]) -> None:
        super().__init__()
        self.inner = as_denoiser(inner)
        self.nfe_per_call = self.inner.nfe_per_call
        self.network_calls_per_call = self.inner.network_calls_per_call

    def __getattr__(self, name: str) -> Any:  # noqa: ANN401 - reads through to the wrapped object's attributes
        """Attributes of the model (``noise_schedule``, ``name``, …) read through: the counter stands in for it."""
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        return self.inner(x, sigma, **kwargs)


def as_denoiser(fn: contracts.Denoiser | Callable[..., torch.Tensor]) -> CountingDenoiser:
    """Return ``fn`` if it already is a :class:`CountingDenoiser`, else wrap it in a counting one that keeps the
    model evaluations one call costs where ``fn`` declares them (an ``nfe_per_call`` attribute, e.g. 2 for a
    hand-written classifier-free guidance wrapper), so budgets count them as the library's own wrappers do."""
    if isinstance(fn, CountingDenoiser):
        return fn
    if not callable(fn):
        raise TypeError(f"a denoiser must be callable as D(x, sigma), got {type(fn).__name__}")
    declared = getattr(fn, "nfe_per_call", 1)
    if isinstance(declared, bool) or not isinstance(declared, (int, float)):
        return FunctionDenoiser(fn)  # not a declaration (an object answering every attribute, say)
    if not float(declared).is_integer() or declared < 1:  # also refuses inf and nan with this message
        raise TypeError(f"a denoiser's nfe_per_call must be a positive integer, got {declared!r}")
    return FunctionDenoiser(fn, nfe_per_call=int(declared))


def __getattr__(name: str) -> Any:  # noqa: ANN401 -- a module's lazy attributes are of many types
    """``WrappedDenoiser``, the former base of single-denoiser transforms, is now
    :class:`diffsample.transforms.Transform` (imported on first use: transforms build on this module)."""
    if name == "WrappedDenoiser":
        from .transforms import Transform

        return Transform
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
