"""Run several independent solver steps in threads and merge their model calls into one batched call.

Each step is an ordinary solver call on its own rows and its own two noise levels. Its denoiser is a proxy
(:meth:`Lockstep.proxy`) that hands ``(x, σ)`` to the shared :class:`Lockstep` and waits: once every step still
running has handed in a call, the rows are concatenated (σ per row, shape ``(rows,)``) and the real denoiser is
called once; each step gets its own rows back. A solver whose stages depend on the previous stage's output
(Heun, DPM-Solver-2S) thus costs one batched call per stage, whatever the number of steps. A step that finishes
early (Heun's last step into σ = 0 needs one stage) leaves the group, so the others never wait for it.

The denoiser sees every row at its own σ; conditioning keywords are not split per step, so the proxy refuses
them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import torch

from .. import contracts
from ..errors import DiffsampleError

__all__ = ["Lockstep"]


class Lockstep:
    """The meeting point of ``members`` solver steps running in threads (module docstring).

    ``calls`` counts the batched denoiser calls made, ``rows`` the rows evaluated in all.
    """

    def __init__(self, denoiser: contracts.Denoiser, members: int) -> None:
        self.denoiser = denoiser
        self.calls = 0
        self.rows = 0
        self._alive = members
        self._pending: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self._results: dict[int, torch.Tensor] = {}
        self._error: BaseException | None = None
        self._cond = threading.Condition()

    def proxy(self, member: int) -> Callable[..., torch.Tensor]:
        """The denoiser that member ``member``'s solver step calls."""

        def call(x: torch.Tensor, sigma: torch.Tensor | float, **kwargs: Any) -> torch.Tensor:
            if kwargs:
                raise DiffsampleError(f"Picard sampling cannot split conditioning keywords per step: {sorted(kwargs)}")
            s = torch.as_tensor(sigma)
            return self._submit(member, x, s.expand(x.shape[0]) if s.dim() == 0 else s.reshape(-1))

        return call

    def run(self, member: int, step: Callable[[], torch.Tensor]) -> torch.Tensor:
        """Run ``step()`` as member ``member``; it leaves the group when it returns or raises."""
        try:
            return step()
        finally:
            with self._cond:
                self._alive -= 1
                self._flush_if_ready()

    def _submit(self, member: int, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        with self._cond:
            self._pending[member] = (x, sigma)
            self._flush_if_ready()
            while member not in self._results and self._error is None:
                self._cond.wait()
            if member not in self._results:
                raise DiffsampleError("another step's batched model call failed") from self._error
            return self._results.pop(member)

    def _flush_if_ready(self) -> None:
        """With the lock held: one batched call once every running member waits for one."""
        if not self._pending or len(self._pending) < self._alive:
            return
        members = sorted(self._pending)
        xs = [self._pending[m][0] for m in members]
        sigmas = [self._pending[m][1] for m in members]
        self._pending.clear()
        try:
            out = self.denoiser(torch.cat(xs), torch.cat(sigmas))
        except BaseException as exc:
            self._error = exc
            self._cond.notify_all()
            raise
        self.calls += 1
        self.rows += out.shape[0]
        for m, part in zip(members, out.split([len(x) for x in xs]), strict=True):
            self._results[m] = part
        self._cond.notify_all()
