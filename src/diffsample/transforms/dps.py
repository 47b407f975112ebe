"""Diffusion posterior sampling (DPS) as a denoiser transform: measurement guidance through the denoiser.

Chung, Kim, Mccann, Klasky & Ye 2023, "Diffusion Posterior Sampling for General Noisy Inverse Problems" (ICLR),
approximate the intractable likelihood of a noisy sample by that of its Tweedie estimate (their eq. 16),

    ∇_x log p(y | x_σ) ≈ −ζ ∇_x ‖y − A(D(x, σ))‖²,

with ``ζ = 1/σ_y²`` for Gaussian measurement noise (up to the factor ½), and in practice (their Alg. 1,
Gaussian case) the normalised step ``ζ = ζ' / ‖y − A(x̂0)‖``. The gradient runs *through the denoiser* (one
backward pass through the network per call). In σ-space the corrected score becomes a denoiser by Tweedie's
formula, so DPS is a transform that works with every solver:

    D̃(x, σ) = D(x, σ) − ζ σ² ∇_x ‖y − A(D(x, σ))‖².

Since ``σ² ∇_x D = Cov[x0 | x]`` (Tweedie's second-order identity), the correction is
``−2 ζ Cov[x0 | x] J_Aᵀ (A(x̂0) − y)``: bounded at every σ, largest where the posterior of x0 is wide. The
original algorithm applies ``−ζ ∇`` to the state after each ancestral step instead; on a schedule of step
``σ → σ'`` the two agree up to the per-step factor ``(σ − σ') σ`` that the score form puts in.

``A`` may be any differentiable map (a matrix product for masking, blur or downsampling, a pointwise
nonlinearity, a classifier's logits). Costs: the denoiser's own ``nfe``, one ``backward_passes`` per call, and
one ``auxiliary_calls`` per call when ``A`` is a network (``measurement_is_network``; default: ``A`` is a
``torch.nn.Module``).
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

__all__ = ["DiffusionPosteriorSampling", "Measurement", "dps"]

Measurement = Callable[[torch.Tensor], torch.Tensor]
"""``A(x0) -> y_hat``: a differentiable forward operator, ``(B, …) -> (B, …)`` with the measurement's shape."""


class DiffusionPosteriorSampling(Transform):
    """``D − ζ σ² ∇_x ‖y − A(D(x, σ))‖²`` (module docstring); built by :func:`dps`."""

    def __init__(
        self,
        denoiser: contracts.Denoiser | Callable[..., torch.Tensor],
        measurement: Measurement,
        y: torch.Tensor,
        step_size: float,
        *,
        normalize: bool = True,
        measurement_is_network: bool | None = None,
    ) -> None:
        super().__init__(denoiser)
        if not callable(measurement):
            raise DiffsampleError(f"measurement must be callable as A(x0) -> y_hat, got {type(measurement).__name__}")
        self.step_size = float(step_size)
        if not (math.isfinite(self.step_size) and self.step_size >= 0):
            raise DiffsampleError(f"step_size (ζ) must be finite and non-negative, got {step_size}")
        self.measurement = measurement
        self.y = torch.as_tensor(y)
        self.normalize = bool(normalize)
        network = isinstance(measurement, torch.nn.Module) if measurement_is_network is None else measurement_is_network
        self.measurement_is_network = bool(network)

    def residual(self, x0: torch.Tensor) -> torch.Tensor:
        """``y − A(x0)`` flattened per sample, ``(B, m)`` (``y`` broadcast over the batch if it has none)."""
        y_hat = self.measurement(x0)
        if not isinstance(y_hat, torch.Tensor) or y_hat.shape[0] != x0.shape[0]:
            raise ShapeError("the measurement A(x0) must return a tensor with the batch dimension of x0")
        y = self.y.to(device=y_hat.device, dtype=y_hat.dtype)
        if y.shape != y_hat.shape:
            if y.shape != y_hat.shape[1:] and y.numel() != y_hat[0].numel():
                raise ShapeError(f"y has shape {tuple(self.y.shape)}, A(x0) gives {tuple(y_hat.shape)}")
            y = y.reshape(1, *y_hat.shape[1:])
        return (y - y_hat).reshape(x0.shape[0], -1)

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        if self.step_size == 0:
            return to_work(self.inner(x, sigma, **kwargs))
        with torch.enable_grad():
            xg = to_work(x).detach().requires_grad_(True)
            x0 = to_work(self.inner(xg, sigma, **kwargs))
            resid = self.residual(x0)
            loss = resid.square().sum(1)
            (grad,) = torch.autograd.grad(loss.sum(), xg)
        self.count_backward()
        if self.measurement_is_network:
            self.count_auxiliary()
        if not bool(torch.isfinite(grad).all()):
            raise DiffsampleError(
                f"the DPS gradient is not finite at sigma in [{float(sigma.min()):.4g}, {float(sigma.max()):.4g}]"
            )
        zeta = torch.full((x.shape[0],), self.step_size, dtype=grad.dtype, device=grad.device)
        if self.normalize:
            zeta = zeta / resid.detach().norm(dim=1).to(grad.dtype).clamp_min(1e-12)
        s2 = sigma.to(grad.dtype).square()
        return x0.detach() - append_dims(zeta * s2, x.dim()) * grad


def dps(
    denoiser: contracts.Denoiser | Callable[..., torch.Tensor],
    measurement: Measurement,
    y: torch.Tensor,
    step_size: float = 1.0,
    *,
    normalize: bool = True,
    measurement_is_network: bool | None = None,
) -> DiffusionPosteriorSampling:
    """Guide ``denoiser`` towards ``p(x0 | y)`` for a measurement ``y ≈ A(x0)`` (Chung et al. 2023).

    ``normalize=True`` uses the paper's step ``ζ / ‖y − A(x̂0)‖`` (``step_size`` = ζ); ``normalize=False`` the
    plain weight ``ζ`` (``1 / (2 s²)`` is the Gaussian likelihood of noise std ``s``). The result is a denoiser:
    use it with any solver. Example::

        guided = dps(model, lambda x0: x0[:, mask], y, step_size=0.5)
        x = diffsample.sample(guided, sigmas[0] * z, sigmas, solver="dpmpp_2m")
    """
    return DiffusionPosteriorSampling(
        denoiser, measurement, y, step_size, normalize=normalize, measurement_is_network=measurement_is_network
    )
