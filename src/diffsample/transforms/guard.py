"""The NaN guard of :func:`diffsample.sample`: model outputs in the work dtype, and finite.

Every walk of :func:`diffsample.sample` (and of the tuner's scored walks) sees the model through
:class:`GuardedDenoiser`: its outputs are cast to the walk's work dtype (float32 for fp16/bf16
networks, so solver updates never run in half precision) and a NaN/Inf output raises
:class:`~diffsample.errors.NonFiniteError` naming the step index, σ and the offending samples.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from .. import contracts
from ..errors import NonFiniteError
from .base import Transform

__all__ = ["GuardedDenoiser", "GuardedNoise", "all_finite", "step_index"]


def all_finite(t: torch.Tensor) -> bool:
    """True when no element of ``t`` is NaN or ±Inf.

    One sum reduction (no full-size boolean tensor): NaN and ±Inf propagate through a sum, so a
    finite sum proves every element finite; a non-finite sum (possibly an overflow of huge finite
    values) is confirmed element-wise.
    """
    return math.isfinite(float(t.sum())) or bool(torch.isfinite(t).all())


def step_index(sigmas: torch.Tensor, sigma: float) -> int:
    """Index i of the step σ_i ≥ σ > σ_{i+1} of ``sigmas`` that an evaluation at σ belongs to.

    σ reaches the model in x's dtype, so the comparison allows float32 round-off (1e-6 relative);
    an evaluation at the last level (a second stage ending at σ_n) is named as the last step.
    """
    above = (sigmas >= sigma * (1 - 1e-6)).nonzero()
    return min(int(above[-1]), len(sigmas) - 2) if len(above) else 0


class GuardedNoise:
    """Wraps a noise source for one walk down ``sigmas``: a NaN/Inf draw raises naming the step and σ.

    Without it a bad draw would surface one model call later as a NaN *model output*, blaming the model.
    The draws are the source's own, unchanged; other attributes (``interval_noise``, …) read through.
    """

    def __init__(self, source: contracts.NoiseSource, sigmas: torch.Tensor) -> None:
        self.source = source
        self.sigmas = sigmas

    def __getattr__(self, name: str) -> Any:  # noqa: ANN401 - reads through to the wrapped object's attributes
        if name == "source":
            raise AttributeError(name)
        return getattr(self.source, name)

    def __call__(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        z = self.source(x, *args, **kwargs)
        if isinstance(z, torch.Tensor) and not all_finite(z):
            sigma = args[0] if args else kwargs.get("sigma")
            if sigma is None:
                raise NonFiniteError("the noise source returned NaN/Inf")
            s = float(sigma)
            raise NonFiniteError(
                f"the noise source returned NaN/Inf at step {step_index(self.sigmas, s)} (sigma={s:.6g})"
            )
        return z


class GuardedDenoiser(Transform):
    """Wraps a denoiser for one walk down ``sigmas``: casts its output to ``dtype`` and checks it is finite.

    Read-through counters (:class:`~diffsample.transforms.Transform`), so NFE is counted once, by the model.
    """

    def __init__(
        self,
        inner: contracts.Denoiser | Callable[..., torch.Tensor],
        sigmas: torch.Tensor,
        dtype: torch.dtype,
        check_finite: bool = True,
    ) -> None:
        super().__init__(inner)
        self.sigmas = sigmas
        self.dtype = dtype
        self.check_finite = check_finite

    def _step_of(self, sigma: float) -> int:
        """The step of ``sigmas`` an evaluation at σ belongs to (:func:`step_index`)."""
        return step_index(self.sigmas, sigma)

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor | float, **kwargs: Any) -> torch.Tensor:
        out = self.inner(x, sigma, **kwargs).to(self.dtype)
        if self.check_finite and not all_finite(out):
            s = float(torch.as_tensor(sigma).reshape(-1)[0])
            bad = (~torch.isfinite(out)).reshape(out.shape[0], -1).any(1).nonzero().flatten().tolist()
            raise NonFiniteError(
                f"the model returned NaN/Inf at step {self._step_of(s)} (sigma={s:.6g}) "
                f"for batch indices {bad[:8]}{' …' if len(bad) > 8 else ''}"
            )
        return out

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor | float, **kwargs: Any) -> torch.Tensor:
        """:meth:`denoise` without the base's sigma shaping and shape check: ``inner``, a counting
        denoiser, does both, and the guard sits on every model call of a walk, so it adds nothing twice."""
        return self.denoise(x, sigma, **kwargs)
