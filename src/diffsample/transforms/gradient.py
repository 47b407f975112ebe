"""Gradient guidance: a differentiable log-potential's gradient added to the score, as a denoiser transform.

Classifier guidance (Dhariwal & Nichol 2021, "Diffusion Models Beat GANs on Image Synthesis", Alg. 1 / eq. 11;
Song et al. 2021, "Score-Based Generative Modeling through SDEs", §5) steers the score of the noised data with
the gradient of a log-potential ``f(x, σ)`` — for a noise-aware classifier ``f = log p_φ(y | x, σ)``:

    ∇ log p̃_σ(x) = ∇ log p_σ(x) + w ∇_x f(x, σ).

In σ-space Tweedie's formula ``D(x, σ) = x + σ² ∇ log p_σ(x)`` turns this into a denoiser,

    D̃(x, σ) = D(x, σ) + w σ² ∇_x f(x, σ),

so the guided model is again a denoiser and works with every solver (ODE, SDE, multistep). When ``f`` is the
exact ``log p_σ(y | x)`` of the noised data and ``w = 1``, ``D̃`` is the exact denoiser of ``p(x | y)``
(Bayes: ``p_σ(x | y) ∝ p_σ(x) p_σ(y | x)``).

Counting: each guided call costs one forward call of the potential (``auxiliary_calls``) and one backward
pass through it (``backward_passes``), per sample, besides the denoiser's own ``nfe``. The gradient is taken
in float32 at least (float64 stays float64), with the denoiser call outside the autograd graph.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from .. import contracts
from ..denoisers import append_dims
from ..errors import DiffsampleError, ShapeError
from .base import Transform, to_work

__all__ = ["ClassifierGuidance", "LogPotential", "classifier_guidance", "potential_gradient"]

LogPotential = Callable[..., torch.Tensor]
"""``f(x, sigma, **kwargs) -> (B,)``: a differentiable log-potential of the noisy sample (e.g. a noise-aware
classifier's log-probability of the target class), ``sigma`` of shape ``(B,)``."""


def potential_gradient(
    potential: LogPotential, x: torch.Tensor, sigma: torch.Tensor, **kwargs: Any
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(f(x, σ), ∇_x f(x, σ))`` for a log-potential returning one value per sample, in x's work dtype.

    The sum over the batch is differentiated, so row ``i`` of the gradient is ``∇_{x_i} f_i`` provided ``f``
    treats samples independently (a network in eval mode does). Raises a :class:`ShapeError` when ``f`` does not
    return shape ``(B,)`` and a :class:`DiffsampleError` when its value or gradient is not finite.
    """
    with torch.enable_grad():
        xg = to_work(x).detach().requires_grad_(True)
        value = potential(xg, sigma, **kwargs)
        if not isinstance(value, torch.Tensor) or value.shape != (x.shape[0],):
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise ShapeError(f"a log-potential must return shape (B,) = ({x.shape[0]},), got {shape}")
        (grad,) = torch.autograd.grad(value.sum(), xg)
    if not bool(torch.isfinite(value).all()) or not bool(torch.isfinite(grad).all()):
        raise DiffsampleError(
            f"the log-potential or its gradient is not finite at sigma in [{float(sigma.min()):.4g}, "
            f"{float(sigma.max()):.4g}]"
        )
    return value.detach(), grad.to(xg.dtype)


class ClassifierGuidance(Transform):
    """``D(x, σ) + w σ² ∇_x f(x, σ)`` (module docstring); built by :func:`classifier_guidance`."""

    def __init__(
        self,
        denoiser: contracts.Denoiser | Callable[..., torch.Tensor],
        potential: LogPotential,
        scale: float = 1.0,
        *,
        potential_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(denoiser)
        if not callable(potential):
            raise DiffsampleError(f"potential must be callable as f(x, sigma) -> (B,), got {type(potential).__name__}")
        self.potential = potential
        self.scale = float(scale)
        if not math.isfinite(self.scale):
            raise DiffsampleError(f"guidance scale must be finite, got {scale}")
        self.potential_kwargs = dict(potential_kwargs or {})

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        d = to_work(self.inner(x, sigma, **kwargs))
        if self.scale == 0:
            return d
        _, grad = potential_gradient(self.potential, x, sigma, **self.potential_kwargs)
        self.count_auxiliary()
        self.count_backward()
        s2 = append_dims(sigma.to(grad.dtype).square(), x.dim())
        return d + self.scale * s2 * grad.to(d.dtype)


def classifier_guidance(
    denoiser: contracts.Denoiser | Callable[..., torch.Tensor],
    potential: LogPotential,
    scale: float = 1.0,
    *,
    potential_kwargs: dict[str, Any] | None = None,
) -> ClassifierGuidance:
    """Guide ``denoiser`` by the gradient of a log-potential ``f(x, σ) -> (B,)`` with weight ``scale``.

    ``potential`` is typically a noise-aware classifier's ``log p(y | x, σ)`` for the wanted labels
    (``potential_kwargs`` are passed to it on every call). The result is a denoiser: use it with any solver.
    ``scale = 1`` with the exact noisy classifier samples ``p(x | y)`` exactly (module docstring).
    """
    return ClassifierGuidance(denoiser, potential, scale, potential_kwargs=potential_kwargs)
