"""The walk a denoiser is evaluated in: step-aware and stateful transforms read it, solvers stay unchanged.

Solvers are stateless functions that call ``D(x, σ)``; a few guidance methods need more than ``(x, σ)``:

* **CFG++** weighs the guidance by the *step* the evaluation is used for (its x-coefficient ``r``);
* **APG**'s reverse momentum is state carried from one evaluation to the next *within one walk*.

:func:`diffsample.sample` therefore runs every walk inside :func:`walk_context`, which makes a
:class:`Walk` (the levels, the solver function, its options and a per-walk state store) current in a
:class:`contextvars.ContextVar` for the duration of the call. A transform anywhere in the denoiser chain reads
it with :func:`current_walk`; no solver is edited, and the state dies with the walk (a new ``sample()`` call
starts empty, two walks in two threads do not share it).

The x-coefficient of a step
---------------------------
Every first-order step of the solvers here, deterministic or stochastic, has the form
``x' = r x + (1 − r) D + noise`` in σ-space: DDIM/Euler ``r = σ'/σ``; Euler ancestral / DDPM / DDIM(η)
``r = σ_down/σ``; SDE-DPM-Solver++ ``r = e^{−(1+η)h}``, ``h = log(σ/σ')``; the DPM-Solver++ and UniPC data
predictions and the ε-form multistep methods (DEIS, iPNDM) start with the DDIM step ``r = σ'/σ``.
:meth:`Walk.x_coefficient` finds ``r`` for *any* solver without a table: it runs the solver itself for the one
step ``σ → σ'`` on ``x = 1`` with the zero denoiser and zero noise, whose output is exactly ``r``
(with ``D ≡ 0`` the PF-ODE solution is ``x ∝ σ``, which every consistent one-step method reproduces exactly).
Results are cached per walk.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from .. import contracts
from ..errors import DiffsampleError

__all__ = ["Walk", "current_walk", "walk_context"]

_CURRENT: contextvars.ContextVar[Walk | None] = contextvars.ContextVar("diffsample_walk", default=None)


def _zero_denoiser(x: torch.Tensor, sigma: torch.Tensor | float, **kwargs: Any) -> torch.Tensor:
    return torch.zeros_like(x)


def _zero_noise(x: torch.Tensor, sigma: float | None = None, sigma_next: float | None = None) -> torch.Tensor:
    return torch.zeros_like(x)


@dataclass
class Walk:
    """One walk of a solver down ``sigmas`` (module docstring): what step-aware transforms may ask about it.

    ``state`` holds per-walk state of stateful transforms, keyed by the transform (:meth:`state_of`).
    """

    sigmas: torch.Tensor
    solver: contracts.Solver
    options: Mapping[str, Any] = field(default_factory=dict)
    state: dict[int, dict[str, Any]] = field(default_factory=dict)
    _levels: list[float] = field(default_factory=list, repr=False)
    _coefficients: dict[tuple[float, float], float] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._levels = [float(s) for s in self.sigmas.reshape(-1).tolist()]

    def state_of(self, owner: object) -> dict[str, Any]:
        """The per-walk state dict of ``owner`` (a transform), empty at the start of each walk."""
        return self.state.setdefault(id(owner), {})

    def next_level(self, sigma: float) -> float | None:
        """The first level of the walk strictly below ``σ`` (float32 round-off allowed), ``None`` at the last."""
        for level in self._levels:
            if level < sigma * (1 - 1e-6):
                return level
        return None

    def x_coefficient(self, sigma: float, sigma_next: float) -> float:
        """``r`` of the solver's first-order step ``σ → σ'``: its output for ``x = 1``, ``D ≡ 0``, zero noise."""
        key = (float(sigma), float(sigma_next))
        r = self._coefficients.get(key)
        if r is None:
            levels = torch.tensor(key, dtype=torch.float64)
            one = torch.ones(1, 1, dtype=torch.float64)
            try:
                out = self.solver(_zero_denoiser, one, levels, noise=_zero_noise, callback=None, **dict(self.options))
            except Exception as err:  # a solver that cannot take one step cannot say what its step is
                name = getattr(self.solver, "__name__", type(self.solver).__name__)
                raise DiffsampleError(
                    f"a step-aware transform (CFG++) needs the x-coefficient of solver {name!r}'s step "
                    f"{key[0]:g} -> {key[1]:g}, but one step of it with a zero denoiser failed: {err}"
                ) from err
            r = self._coefficients[key] = float(out.reshape(-1)[0])
        return r

    def step_coefficient(self, sigma: float) -> float:
        """``r`` of the step an evaluation at ``σ`` is used for: from ``σ`` to the next level below it.

        An evaluation at the last level (a second stage that ends there) belongs to no further step: ``r = 0``.
        """
        nxt = self.next_level(sigma)
        return 0.0 if nxt is None else self.x_coefficient(sigma, nxt)


def current_walk() -> Walk | None:
    """The walk being run (set by :func:`diffsample.sample`), or ``None`` outside one."""
    return _CURRENT.get()


@contextlib.contextmanager
def walk_context(
    sigmas: torch.Tensor, solver: contracts.Solver | Callable[..., torch.Tensor], **options: Any
) -> Iterator[Walk]:
    """Make a fresh :class:`Walk` of ``solver`` down ``sigmas`` current for the ``with`` block.

    :func:`diffsample.sample` does this for every walk; call it yourself only to run a solver function
    directly with a step-aware transform (CFG++) or a stateful one (APG with momentum).
    """
    walk = Walk(sigmas=sigmas.detach().to("cpu", torch.float64), solver=solver, options=options)
    token = _CURRENT.set(walk)
    try:
        yield walk
    finally:
        _CURRENT.reset(token)
