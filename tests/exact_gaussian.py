"""One diagonal Gaussian N(μ, diag(s²)): its exact denoiser and its exact probability-flow map (shared by tests);
and an isotropic one, whose flow is a combination of the start and one denoiser value."""

from __future__ import annotations

import torch

from diffsample.denoisers import Denoiser, FunctionDenoiser

F64 = torch.float64
MU = torch.tensor([0.5, -1.0, 0.2], dtype=F64)
VAR = torch.tensor([0.3, 0.6, 1.0], dtype=F64) ** 2


def gaussian() -> Denoiser:
    """Posterior mean of N(μ, diag(s²)): ``μ + s²/(s² + σ²) (x − μ)``."""
    return FunctionDenoiser(lambda x, s: MU + VAR / (VAR + s[:, None].to(F64) ** 2) * (x - MU))


def gaussian_flow(x: torch.Tensor, sigma: float, sigma_next: float) -> torch.Tensor:
    """The PF-ODE of one Gaussian is linear: ``x(σ') = μ + sqrt((s² + σ'²)/(s² + σ²)) (x(σ) − μ)``."""
    return MU + ((VAR + sigma_next**2) / (VAR + sigma**2)).sqrt() * (x - MU)


def isotropic_gaussian(mean: float = 0.7, std: float = 0.5) -> tuple[FunctionDenoiser, float, float]:
    """The exact denoiser of N(mean, std² I) and its law: ``x(σ) = m + √((s² + σ²)/(s² + σ_0²))·(x_0 − m)`` is
    ``α·x_0 + β·D(x_0, σ_0)`` for scalars α, β, so solvers with fitted weights can be exact in two calls."""

    def denoise(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        s2 = sigma.to(x.dtype).reshape(-1, *([1] * (x.dim() - 1))) ** 2
        return mean + std**2 / (std**2 + s2) * (x - mean)

    return FunctionDenoiser(denoise), mean, std
